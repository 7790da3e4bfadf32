"""Probe results -> checks (pure logic)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

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
    assert ok.status == "passed" and "every replica answered (replicas on 2 node(s))" in ok.detail
    missing = serve_result(
        replies=[{"status": 404, "body": "Path '/x' not found", "proxy": "http://h"}],
        answers=[],
        replica_nodes=["a"],
    )
    bad = checks.serve(missing, expected, "/x")
    assert bad.status == "failed" and "GET http://h/x answered 404" in bad.detail
    one = serve_result(answers=[{"python": "3.11.2", "ray": "2.60.0", "node": "a"}])
    assert (
        "replicas run on 2 node(s) but 1 of them answered"
        in checks.serve(one, expected, "/r").detail
    )
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


def test_serve_without_the_replicas_placement_is_not_a_pass() -> None:
    """The dashboard's list of replicas is the evidence that every replica answered: an
    unreadable or empty list fails the check instead of skipping the comparison."""
    expected = {"python": "3.11.2", "ray": "2.60.0"}
    nodes: list[str] | None
    for nodes in ([], None):
        unread = serve_result(replica_nodes=nodes, applications={"status": 500, "body": "x"})
        out = checks.serve(unread, expected, "/raycompat")
        assert out.status == "failed", out.detail
        assert "which nodes run replicas could not be read" in out.detail
        assert "answered 500" in out.detail


def test_serve_through_one_proxy_says_what_it_proved() -> None:
    """A backend that reaches the head's proxy only cannot ask every replica: the detail
    says how many replica nodes answered and that the others were not asked."""
    expected = {"python": "3.11.2", "ray": "2.60.0"}
    head_only = serve_result(
        replies=[{"status": 200, "body": "{}", "proxy": "http://h"}],
        answers=[{"python": "3.11.2", "ray": "2.60.0", "node": "a"}],
    )
    out = checks.serve(head_only, expected, "/raycompat")
    assert out.status == "passed"
    assert "1 proxy(ies) asked: 1 replica node(s) answered, the others not asked" in out.detail
    assert "every replica answered" not in out.detail


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


REFUSED = "AuthenticationError: Authentication required: Missing authentication token"


def auth_round(accepted: bool) -> dict[str, object]:
    answer = {"ok": accepted, "detail": "fine" if accepted else REFUSED}
    return {
        "ok": True,
        "http": {
            "status": 200 if accepted else 401,
            "body": "[]" if accepted else "Unauthorized: Missing authentication token",
        },
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
    finding = checks.auth_token(open_gcs, REFUSED, [], 12, token)
    assert finding.status == "failed" and "finding: GCS accepts a client with none token" in (
        finding.detail
    )
    joined = checks.auth_token(good, None, [], 12, token)
    assert "finding: a node without the token joined" in joined.detail
    refused = {**good, "token": auth_round(False)}
    assert (
        "Ray Client refused the cluster's token"
        in checks.auth_token(refused, REFUSED, [], 12, token).detail
    )
    # the token itself never appears in what the check reports
    echoed = {**good, "token": {**auth_round(False), "jobs": {"ok": False, "detail": token}}}
    out = checks.auth_token(echoed, REFUSED, [], 1, token)
    assert token not in out.detail and token not in str(out.data)
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "gcs_server.out").write_text(f"loaded {token}\n")
    (tmp_path / "head.log").write_text("nothing here\n")
    leaks, searched = checks.files_with(token, [tmp_path])
    assert leaks == ["ray/gcs_server.out"] and searched == 2
    assert (
        "the token is written in ray/gcs_server.out"
        in checks.auth_token(good, REFUSED, leaks, 2, token).detail
    )


def test_auth_token_wants_rays_refusal_not_any_failure() -> None:
    """A crashed server or a closed port also "refuses" a client: only Ray's refusal for a
    missing or wrong token counts, on every path and for the joining node."""
    token = "s3cr3t-token-value"
    good = {"token": auth_round(True), "none": auth_round(False), "wrong": auth_round(False)}
    crashed = {"ok": False, "detail": "ConnectionError: [Errno 111] Connection refused"}
    for path in ("jobs", "gcs", "ray_client"):
        broken = {**good, "none": {**auth_round(False), path: crashed}}
        out = checks.auth_token(broken, REFUSED, [], 12, token)
        assert out.status == "failed", path
        assert "not with Ray's refusal for the token" in out.detail and "Errno 111" in out.detail
    gone = {**good, "wrong": {**auth_round(False), "http": {"status": 502, "body": "Bad Gateway"}}}
    assert checks.auth_token(gone, REFUSED, [], 12, token).status == "failed"
    unauthorized = {"status": 401, "body": "no"}  # a 401 without Ray's words: not Ray's
    other = {**good, "none": {**auth_round(False), "http": unauthorized}}
    assert checks.auth_token(other, REFUSED, [], 12, token).status == "failed"
    node = checks.auth_token(good, "ray start: Connection refused to ray-head:6379", [], 12, token)
    assert node.status == "failed" and "a node without the token failed to join" in node.detail
    assert checks.auth_token(good, REFUSED, [], 12, token).status == "passed"


@pytest.mark.parametrize(
    ("scanned", "unread", "fragment"),
    [
        (0, [], "no log file was searched"),
        (12, ["Ray's session logs: 1 of 2 node(s)"], "not every node's logs could be read"),
    ],
)
def test_auth_token_without_the_logs_is_an_error(
    scanned: int, unread: list[str], fragment: str
) -> None:
    token = "s3cr3t-token-value"
    good = {"token": auth_round(True), "none": auth_round(False), "wrong": auth_round(False)}
    out = checks.auth_token(good, REFUSED, [], scanned, token, unread)
    assert out.status == "error" and fragment in out.detail


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


# Every check that can be `skipped` (for a stated reason) is judged on its evidence when it
# runs: empty or malformed evidence is `failed` or `error`, never `passed`.
def _kuberay_cell() -> Any:
    from harness.matrix import BaseSpec, Cell, Variant

    return Cell("2.60.0", "3.11.2", Variant.CPU, BaseSpec("debian", "bookworm"))


KERNEL_OK = Check("notebook:execute", PASSED, "PARITY_OK")
TOKEN = "s3cr3t-token-value"
SKIPPABLE: dict[str, Any] = {
    "driver:connect": lambda e: checks.connect("driver:connect", e, expect_nodes=3)[0],
    "driver:parity": lambda e: checks.parity("driver:parity", e, e.get("nodes") or []),
    "kubeflow:contract": lambda e: checks.kubeflow_contract(e, KERNEL_OK),
    "gpu:e2e": checks.gpu,
    "auth:token": lambda e: checks.auth_token(e, e.get("refused"), [], e.get("scanned", 0), TOKEN),
    "serve:http": lambda e: checks.serve(e, {"python": "3.11.2", "ray": "2.60.0"}, "/r"),
    # its evidence is a listing: an empty one is "none published"; the unread one is this
    "security:no-published-ports": lambda e: checks.no_published_ports(_unread),
}


def _unread() -> dict[str, list[str]]:
    from harness.errors import EngineError

    raise EngineError("container rh-x-head could not be inspected")


def _image_check(name: str) -> Any:
    from harness import image_checks

    cell = _kuberay_cell()
    if name == "kuberay-shell":
        return lambda e: image_checks.kuberay_check(cell, "image:head", e)
    if name == "base-layer":
        return lambda e: image_checks.base_layer_check("image:head", e, e.get("labels") or {})
    return lambda e: image_checks.bytecode_check("image:head", e)


SKIPPABLE.update(
    {f"image:head:{n}": _image_check(n) for n in ("kuberay-shell", "base-layer", "bytecode")}
)
MALFORMED: list[dict[str, Any]] = [
    {},
    {"ok": True},
    {"ok": None, "nodes": "x", "connect": {}, "facts": [], "login_shell": "ray", "bytecode": []},
    {"ok": True, "replies": [], "answers": [], "column_tables": None, "RootFS": {"Layers": []}},
]


@pytest.mark.parametrize(
    "evidence", MALFORMED, ids=["empty", "ok-only", "wrong-types", "empty-lists"]
)
@pytest.mark.parametrize("name", sorted(SKIPPABLE))
def test_a_skippable_check_never_passes_on_empty_or_malformed_evidence(
    name: str, evidence: dict[str, Any]
) -> None:
    try:
        check = SKIPPABLE[name](evidence)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        # the caller's probe always hands a dict; a shape it cannot read must not pass
        pytest.fail(f"{name} raised {type(exc).__name__} on malformed evidence: {exc}")
    assert check.status in ("failed", "error"), (name, check.status, check.detail)
