"""Probe results -> checks (pure logic)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import cluster_checks as checks
from harness.results import FAILED, PASSED, Check

CLIENT = {"python": "3.11.2", "ray": "2.60.0", "commit": "abc"}


def node(host: str, **facts: str) -> dict[str, Any]:
    return {"hostname": host, "node_id": host + "-id", "facts": {**CLIENT, **facts}}


def test_parity_passes_when_everything_matches() -> None:
    c = checks.parity(
        "p", CLIENT, [node("head"), node("worker")], {"python": "3.11.2", "ray": "2.60.0"}
    )
    assert c.status == "passed"
    assert "2 node(s)" in c.detail


def test_parity_names_the_node_and_the_difference() -> None:
    c = checks.parity("p", CLIENT, [node("head"), node("worker", python="3.11.7")])
    assert c.status == "failed"
    assert "worker: python 3.11.7 != client 3.11.2" in c.detail


def test_parity_fails_when_client_is_not_the_cell() -> None:
    c = checks.parity("p", CLIENT, [node("head")], {"python": "3.11.9", "ray": "2.60.0"})
    assert c.status == "failed" and "client python 3.11.2 != cell 3.11.9" in c.detail


def test_parity_fails_on_silent_or_missing_nodes() -> None:
    assert checks.parity("p", CLIENT, []).status == "failed"
    c = checks.parity("p", CLIENT, [{"hostname": "w", "error": "timeout"}])
    assert c.status == "failed" and "w: no answer (timeout)" in c.detail


def test_connect_failure_keeps_rays_message() -> None:
    r = {"address": "h:6379", "connect": {"ok": False, "error": "RuntimeError: Version mismatch"}}
    [c] = checks.connect("driver:connect", r, expect_nodes=2)
    assert c.status == "failed" and "Version mismatch" in c.detail


def test_connect_counts_nodes_and_reports_warnings() -> None:
    r = {
        "address": "ray://h:10001",
        "alive_nodes": 1,
        "connect": {"ok": True, "warnings": ["Python patch version mismatch"]},
    }
    conn, nodes = checks.connect("client:connect", r, expect_nodes=2)
    assert conn.status == "passed" and "patch version mismatch" in conn.detail
    assert nodes.status == "failed" and nodes.detail == "1 alive node(s), expected 2"


def test_a_connect_that_needed_a_retry_says_so_with_the_first_error() -> None:
    first = "ConnectionError: ray client connection timeout"
    r = {"address": "ray://h:10001", "alive_nodes": 2}
    r["connect"] = {"ok": True, "attempts": 2, "first_error": first, "warnings": []}
    conn, _ = checks.connect("client:connect", r, expect_nodes=2)
    assert conn.status == "passed" and conn.data["retries"] == 1
    assert conn.data["first_error"] == first and f"on attempt 2; the first failed: {first}" in (
        conn.detail
    )
    r["connect"] = {"ok": True, "attempts": 1, "warnings": []}
    conn, _ = checks.connect("client:connect", r, expect_nodes=2)
    assert "retries" not in conn.data and conn.detail == "ray://h:10001 connected"


def test_workload_requires_tasks_on_every_node() -> None:
    r = {
        "workload": {
            "ok": True,
            "tasks": {"count": 24, "sum_ok": True, "nodes": ["a"]},
            "actor": {"ok": True, "values": [1, 3, 6]},
            "object": {"ok": True, "bytes": 4, "writer": "a", "reader": "b"},
        }
    }
    by_name = {c.name: c for c in checks.workload(r, ["a", "b"])}
    tasks, actor, obj = (by_name[f"workload:{n}"] for n in ("tasks", "actor", "object"))
    assert tasks.status == "failed" and "1 of 2 nodes" in tasks.detail
    assert actor.status == "passed" and obj.status == "passed"
    # a probe that did not run these parts never passes them
    assert by_name["workload:placement-group"].status == "failed"
    assert checks.workload({}, ["a"])[0].status == "failed"


def test_placement_group() -> None:
    base: dict[str, Any] = {
        "ok": True,
        "tasks": {"count": 24, "sum_ok": True, "nodes": ["a", "b"]},
        "actor": {"ok": True, "values": [1, 3, 6]},
        "object": {"ok": True, "bytes": 4, "writer": "a", "reader": "b"},
    }
    pg: dict[str, Any] = {"ok": True, "bundles": 2, "nodes": ["a", "b"], "spread": True}
    good = {**base, "placement_group": pg}
    by_name = {c.name: c for c in checks.workload({"workload": good}, ["a", "b"])}
    assert by_name["workload:placement-group"].status == "passed"
    packed = {**good, "placement_group": {**pg, "nodes": ["a", "a"], "spread": False}}
    assert {c.name: c for c in checks.workload({"workload": packed}, ["a", "b"])}[
        "workload:placement-group"
    ].status == "failed"


FACTS = {"python": "3.11.2", "ray": "2.60.0", "commit": "c1"}


def job_result(status: str, facts: dict[str, object] | None = None) -> dict[str, object]:
    return {
        "ok": True,
        "client": FACTS,
        "dashboard": {"ray_version": "2.60.0", "ray_commit": "c1", "version": "4"},
        "job": {
            "id": "raysubmit_1",
            "token": "t",
            "status": status,
            "log_tail": "Traceback\nboom",
            "facts": facts or {},
        },
    }


def test_jobs_and_dashboard() -> None:
    expected = {"python": "3.11.2", "ray": "2.60.0"}
    tasks = [{**FACTS, "node": n, "env": "t", "module": "t"} for n in ("a", "b")]
    ok = checks.jobs(
        job_result("SUCCEEDED", {"driver": FACTS, "tasks": tasks}), expected, ["a", "b"]
    )
    assert ok.status == "passed" and "SUCCEEDED" in ok.detail
    failed = checks.jobs(job_result("FAILED"), expected, ["a", "b"])
    assert failed.status == "failed" and "FAILED" in failed.detail and "boom" in failed.detail
    drifted = [{**tasks[0], "python": "3.11.7"}, tasks[1]]
    wrong = checks.jobs(
        job_result("SUCCEEDED", {"driver": FACTS, "tasks": drifted}), expected, ["a", "b"]
    )
    assert wrong.status == "failed" and "python 3.11.7" in wrong.detail
    assert checks.dashboard(job_result("SUCCEEDED"), "2.60.0").status == "passed"
    assert checks.dashboard(job_result("SUCCEEDED"), "2.51.2").status == "failed"
    assert checks.dashboard({"ok": False, "error": "refused"}, "2.60.0").status == "failed"


def serve_result(**changes: object) -> dict[str, object]:
    answer = {"python": "3.11.2", "ray": "2.60.0", "commit": "abc"}
    doc: dict[str, object] = {
        "ok": True,
        "deploy": {"status": "SUCCEEDED", "log_tail": "RAYCOMPAT_SERVE deployed"},
        "replies": [{"status": 200, "body": "{}", "proxy": p} for p in ("http://h", "http://w")],
        "answers": [{**answer, "node": "a"}, {**answer, "node": "b"}],
        "replica_nodes": ["a", "b"],
        "healthz": {"status": 200, "body": "success"},
        "routes": {"status": 200, "body": '{"/raycompat": "raycompat"}'},
        "shutdown": {"status": 200, "body": ""},
    }
    return {**doc, **changes}


def test_serve_needs_answers_from_the_cells_interpreter_health_routes_and_shutdown() -> None:
    expected = {"python": "3.11.2", "ray": "2.60.0"}
    ok = checks.serve(serve_result(), expected, "/raycompat")
    assert ok.status == "passed" and "from replicas on 2 node(s)" in ok.detail
    missing = serve_result(
        replies=[{"status": 404, "body": "Path '/x' not found", "proxy": "http://h"}],
        answers=[],
        replica_nodes=["a"],
    )
    bad = checks.serve(missing, expected, "/x")
    assert bad.status == "failed" and "GET http://h/x answered 404" in bad.detail
    one = serve_result(answers=[{"python": "3.11.2", "ray": "2.60.0", "node": "a"}])
    assert "replicas run on 2 node(s) but 1 answered" in checks.serve(one, expected, "/r").detail
    assert "does not list /x" in bad.detail
    drift = serve_result(answers=[{"python": "3.11.7", "ray": "2.60.0", "node": "a"}])
    assert "a replica reports python 3.11.7" in checks.serve(drift, expected, "/raycompat").detail
    failed = serve_result(deploy={"status": "FAILED", "log_tail": "No module named 'starlette'"})
    out = checks.serve(failed, expected, "/raycompat")
    assert out.status == "failed" and "starlette" in out.detail
    unhealthy = serve_result(healthz={"status": 503}, shutdown={"status": 500})
    out = checks.serve(unhealthy, expected, "/raycompat")
    assert "/-/healthz answered 503" in out.detail and "shutting Serve down" in out.detail
    assert checks.serve({"ok": False, "error": "refused"}, expected, "/r").status == "failed"


def test_notebook_needs_the_marker_and_strips_colour() -> None:
    ok = checks.notebook(
        {"ok": True, "stdout": 'PARITY_OK {"nodes": 2}\n'}, "the Kubeflow notebook"
    )
    assert ok.status == "passed"
    assert (
        ok.detail == 'parity.ipynb ran in nbclient in the Kubeflow notebook: PARITY_OK {"nodes": 2}'
    )
    bad = checks.notebook({"ok": False, "error": "\x1b[31mAssertionError\x1b[0m: parity broken"})
    assert bad.status == "failed" and bad.detail == "AssertionError: parity broken"
    assert checks.notebook({"ok": True, "stdout": "nothing"}).status == "failed"


def test_jupyterlab() -> None:
    assert checks.jupyterlab({"ok": True, "lab_page": True, "status": {}}).status == "passed"
    assert checks.jupyterlab({"ok": False, "error": "refused"}).status == "failed"


def test_runtime_env_must_reach_every_node() -> None:
    tasks = [{**FACTS, "node": n, "env": "t", "module": "t"} for n in ("a", "b")]
    good = job_result("SUCCEEDED", {"driver": FACTS, "tasks": tasks})
    assert checks.runtime_env(good, ["a", "b"]).status == "passed"
    missing = [tasks[0], {**tasks[1], "module": "ModuleNotFoundError: No module named 'x'"}]
    bad = checks.runtime_env(
        job_result("SUCCEEDED", {"driver": FACTS, "tasks": missing}), ["a", "b"]
    )
    assert bad.status == "failed" and "ModuleNotFoundError" in bad.detail
    assert checks.runtime_env(job_result("FAILED"), ["a", "b"]).status == "failed"


def auth_round(accepted: bool) -> dict[str, object]:
    answer = {"ok": accepted, "detail": "fine" if accepted else "AuthenticationError: refused"}
    return {
        "ok": True,
        "http": {"status": 200 if accepted else 401, "body": ""},
        "jobs": answer,
        "gcs": answer,
        "ray_client": answer,
    }


def test_auth_token_passes_only_when_every_path_enforces_it(tmp_path: Path) -> None:
    token = "s3cr3t-token-value"
    good = {"token": auth_round(True), "none": auth_round(False), "wrong": auth_round(False)}
    ok = checks.auth_token(good, "refused: AuthenticationError", [], 12, token)
    assert ok.status == "passed" and "12 log file(s)" in ok.detail
    # a path that lets a tokenless client in is a finding, never a pass
    open_gcs = {**good, "none": {**auth_round(False), "gcs": {"ok": True, "detail": "Ray 2.60.0"}}}
    finding = checks.auth_token(open_gcs, "refused", [], 12, token)
    assert finding.status == "failed" and "finding: GCS accepts a client with none token" in (
        finding.detail
    )
    joined = checks.auth_token(good, None, [], 12, token)
    assert "finding: a node without the token joined" in joined.detail
    refused = {**good, "token": auth_round(False)}
    assert (
        "Ray Client refused the cluster's token"
        in checks.auth_token(refused, "refused", [], 12, token).detail
    )
    # the token itself never appears in what the check reports
    echoed = {**good, "token": {**auth_round(False), "jobs": {"ok": False, "detail": token}}}
    out = checks.auth_token(echoed, "refused", [], 1, token)
    assert token not in out.detail and token not in str(out.data)
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "gcs_server.out").write_text(f"loaded {token}\n")
    (tmp_path / "head.log").write_text("nothing here\n")
    leaks, searched = checks.files_with(token, [tmp_path])
    assert leaks == ["ray/gcs_server.out"] and searched == 2
    assert (
        "the token is written in ray/gcs_server.out"
        in checks.auth_token(good, "refused", leaks, 2, token).detail
    )


def kubeflow_result(**changes: object) -> dict[str, object]:
    ok = {"status": 200, "csp": "frame-ancestors 'self' *", "xfo": None, "acao": "*"}
    doc: dict[str, object] = {
        "ok": True,
        "prefix": "/notebook/ns/nb",
        "api_status": {**ok, "body": '{"started": "x"}'},
        "lab": {**ok, "body": "<title>JupyterLab</title>"},
        "user": {
            "name": "jovyan",
            "uid": 1000,
            "gid": 100,
            "home": "/home/jovyan",
            "passwd_home": "/home/jovyan",
            "home_writable": True,
        },
    }
    return {**doc, **changes}


def test_kubeflow_contract_names_each_broken_promise() -> None:
    kernel = Check("notebook:execute", PASSED, "PARITY_OK")
    ok = checks.kubeflow_contract(kubeflow_result(), kernel)
    assert ok.status == "passed" and "NB_PREFIX=/notebook/ns/nb" in ok.detail
    # the image as it was: token asked, prefix ignored, Jupyter's default framing policy
    old = kubeflow_result(
        api_status={"status": 404, "acao": None, "csp": None, "body": "Not Found"},
        lab={"status": 404, "csp": "frame-ancestors 'self'; report-uri /api/security/csp"},
        user={"name": "ray", "uid": 1000, "home": "/home/ray", "passwd_home": "/home/ray"},
    )
    bad = checks.kubeflow_contract(old, kernel)
    assert bad.status == "failed"
    for words in (
        "GET /notebook/ns/nb/api/status without a token answered 404",
        "framing blocked by Content-Security-Policy: frame-ancestors 'self'",
        "name is 'ray', not 'jovyan'",
        "home is '/home/ray', not '/home/jovyan'",
        "is not writable",
    ):
        assert words in bad.detail, words
    xfo = kubeflow_result(lab={"status": 200, "body": "JupyterLab", "xfo": "SAMEORIGIN"})
    assert "X-Frame-Options: SAMEORIGIN" in checks.kubeflow_contract(xfo, kernel).detail
    no_cors = kubeflow_result(api_status={"status": 200, "acao": None})
    assert "Access-Control-Allow-Origin is None" in checks.kubeflow_contract(no_cors, kernel).detail
    broken_kernel = Check("notebook:execute", FAILED, "ConnectionError")
    out = checks.kubeflow_contract(kubeflow_result(), broken_kernel)
    assert "a kernel there did not pass parity: ConnectionError" in out.detail
