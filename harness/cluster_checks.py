"""Turn probe results into checks. Pure functions: no Docker, so they are unit-tested."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import EngineError
from harness.inside.probe import SERVE_APP
from harness.inside.probe import SERVE_PORT as SERVE_PORT  # the checks and tests name it here
from harness.results import ERROR, Check

PARITY_KEYS = ("python", "ray", "commit")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def plain(text: object) -> str:
    """Text without terminal colour codes (IPython tracebacks carry them)."""
    return _ANSI.sub("", str(text))


def _fmt(facts: Mapping[str, Any]) -> str:
    return f"Python {facts.get('python')}, Ray {facts.get('ray')} ({str(facts.get('commit'))[:10]})"


def parity(
    name: str,
    client: Mapping[str, Any],
    nodes: Sequence[Mapping[str, Any]],
    expected: Mapping[str, str] | None = None,
) -> Check:
    """Every node's (Python micro, Ray version, Ray commit) equals the client's (and the cell's)."""
    problems: list[str] = []
    if expected:
        for key, want in expected.items():
            if client.get(key) != want:
                problems.append(f"client {key} {client.get(key)} != cell {want}")
    if not nodes or not isinstance(nodes, Sequence) or isinstance(nodes, str):
        problems.append("no node answered")
        nodes = []
    nodes = [
        n if isinstance(n, Mapping) else {"error": f"unreadable answer {n!r:.40}"} for n in nodes
    ]
    for node in nodes:
        label = node.get("hostname") or str(node.get("node_id", "?"))[:12]
        facts = node.get("facts")
        if not facts:
            problems.append(f"{label}: no answer ({node.get('error', 'probe failed')})")
            continue
        for key in PARITY_KEYS:
            if facts.get(key) != client.get(key):
                problems.append(f"{label}: {key} {facts.get(key)} != client {client.get(key)}")
    detail = (
        f"client and {len(nodes)} node(s): {_fmt(client)}" if not problems else "; ".join(problems)
    )
    return Check.of(
        name,
        not problems,
        detail,
        # the wire libraries too: what `grid` needs to judge a pair this check proved
        client={k: client.get(k) for k in (*PARITY_KEYS, "libs")},
        nodes=[
            {
                "host": n.get("hostname"),
                **{k: (n.get("facts") or {}).get(k) for k in (*PARITY_KEYS, "libs")},
            }
            for n in nodes
        ],
    )


def no_published_ports(read: Callable[[], Mapping[str, Sequence[str]]]) -> Check:
    """`security:no-published-ports` from what `read` (a backend's published_ports) found;
    `error` when it could not be read: an unread list is no evidence of none."""
    name = "security:no-published-ports"
    try:
        published = {k: list(v) for k, v in read().items() if v}
    except EngineError as exc:
        return Check(name, ERROR, f"what the cluster publishes could not be read: {exc}")
    return Check.of(
        name,
        not published,
        "no container publishes a port; the client reaches the head on a private network"
        if not published
        else f"published: {published}",
    )


def connect(name: str, result: Mapping[str, Any], expect_nodes: int) -> list[Check]:
    """The connect check, and a node-count check when the connection worked."""
    conn = result.get("connect") or {"ok": False, "error": result.get("error", "probe failed")}
    if not conn.get("ok"):
        return [
            Check.of(
                name,
                False,
                f"{result.get('address')}: {conn.get('error')}",
                warnings=conn.get("warnings", []),
            )
        ]
    warnings = conn.get("warnings") or []
    detail = f"{result.get('address')} connected"
    data: dict[str, Any] = {"warnings": warnings}
    attempts = int(conn.get("attempts") or 1)
    if attempts > 1:  # recorded, never hidden: the benchmark counts every retry as a flake
        data.update(retries=attempts - 1, first_error=conn.get("first_error", ""))
        detail += f" on attempt {attempts}; the first failed: {data['first_error'][:200]}"
    if warnings:
        detail += f"; Ray warned: {warnings[0][:200]}"
    checks = [Check.of(name, True, detail, **data)]
    alive = int(result.get("alive_nodes") or 0)
    checks.append(
        Check.of(
            f"{name}:nodes",
            alive >= expect_nodes,
            f"{alive} alive node(s), expected {expect_nodes}",
        )
    )
    return checks


def workload(result: Mapping[str, Any], node_ids: Sequence[str]) -> list[Check]:
    wl = result.get("workload")
    if not wl:
        return [Check.of("workload", False, "no workload result (connect failed?)")]
    if not wl.get("ok"):
        return [Check.of("workload", False, str(wl.get("error")))]
    tasks, actor, obj = wl["tasks"], wl["actor"], wl["object"]
    spread = set(tasks["nodes"]) >= set(node_ids) and bool(node_ids)
    pg = wl.get("placement_group") or {"ok": False, "error": "not run"}
    return [
        Check.of(
            "workload:placement-group",
            bool(pg.get("ok")) and bool(pg.get("spread")),
            f"STRICT_SPREAD: {pg.get('bundles')} bundle(s) ran on "
            f"{len(set(pg.get('nodes') or []))} node(s)"
            if pg.get("ok")
            else plain(pg.get("error"))[-600:],
        ),
        Check.of(
            "workload:tasks",
            tasks["sum_ok"] and spread,
            f"{tasks['count']} tasks ran on {len(tasks['nodes'])} of {len(node_ids)} nodes"
            + ("" if tasks["sum_ok"] else "; wrong results"),
        ),
        Check.of("workload:actor", bool(actor["ok"]), f"counter returned {actor['values']}"),
        Check.of(
            "workload:object",
            bool(obj.get("ok")),
            f"{obj.get('bytes', 0)} bytes written on {str(obj.get('writer'))[:8]} read on "
            f"{str(obj.get('reader'))[:8]}"
            if obj.get("ok")
            else str(obj.get("error", obj)),
        ),
    ]


def runtime_env(result: Mapping[str, Any], node_ids: Sequence[str]) -> Check:
    """The job's runtime_env (env_vars, and a working_dir holding a module) reached a task
    pinned to every node."""
    job = result.get("job") or {}
    tasks = (job.get("facts") or {}).get("tasks") or []
    if not tasks:
        why = result.get("error") or f"job {job.get('status')}: no task ran"
        return Check.of("workload:runtime-env", False, plain(why)[-600:])
    token = job.get("token")
    env_ok = [t.get("node") for t in tasks if t.get("env") == token]
    module_ok = [t.get("node") for t in tasks if t.get("module") == token]
    reached = set(env_ok) & set(module_ok)
    ok = bool(node_ids) and reached >= set(node_ids)
    wrong = [str(t.get("module")) for t in tasks if t.get("module") != token][:1]
    return Check.of(
        "workload:runtime-env",
        ok,
        f"env_vars reached {len(env_ok)}, the working_dir module {len(module_ok)} of "
        f"{len(node_ids)} node(s)" + (f"; {plain(wrong[0])[:300]}" if wrong else ""),
    )


def dashboard(result: Mapping[str, Any], ray_version: str) -> Check:
    """The dashboard answers /api/version with the cell's Ray version (and commit)."""
    doc = result.get("dashboard") or {}
    if not doc:
        return Check.of("dashboard:api", False, plain(result.get("error") or "no answer")[-600:])
    ok = doc.get("ray_version") == ray_version
    return Check.of(
        "dashboard:api",
        ok,
        f"/api/version: Ray {doc.get('ray_version')} ({str(doc.get('ray_commit'))[:12]}), "
        f"API {doc.get('version')}" + ("" if ok else f"; the cell is Ray {ray_version}"),
        dashboard=dict(doc),
    )


def jobs(result: Mapping[str, Any], expected: Mapping[str, str], node_ids: Sequence[str]) -> Check:
    """A job through the Jobs API reached SUCCEEDED; its driver and a task on every node
    report the cell's Python micro, Ray version and commit; its runtime_env reached them."""
    job = result.get("job") or {}
    if not result.get("ok") or not job:
        return Check.of("jobs:submit", False, plain(result.get("error") or "no job")[-800:])
    status = job.get("status")
    tail = plain(job.get("log_tail") or "")[-800:]
    if status != "SUCCEEDED":
        return Check.of("jobs:submit", False, f"job {job.get('id')} {status}: {tail}", job=job)
    found = job.get("facts") or {}
    tasks = found.get("tasks") or []
    everyone = [found.get("driver") or {}, *tasks]
    commit = (result.get("client") or {}).get("commit")
    wrong = [
        f"{k} {f.get(k)}"
        for f in everyone
        for k in ("python", "ray")
        if f.get(k) != expected.get(k)
    ] + [f"commit {f.get('commit')}" for f in everyone if commit and f.get("commit") != commit]
    reached = {t.get("node") for t in tasks}
    env_ok = all(t.get("env") == job.get("token") for t in tasks)
    ok = bool(tasks) and not wrong and reached >= set(node_ids) and env_ok
    detail = (
        f"job {job.get('id')} SUCCEEDED: driver and {len(tasks)} node task(s) on Python "
        f"{expected.get('python')}, Ray {expected.get('ray')}; runtime_env reached "
        f"{len(reached)} node(s)"
        if ok
        else f"job {job.get('id')} SUCCEEDED but: {', '.join(wrong) or 'not every node'}"
        f"{'' if env_ok else '; env_vars did not reach every task'}; {tail}"
    )
    return Check.of("jobs:submit", ok, detail, job=job)


SERVE_ROUTE = "/" + SERVE_APP  # the route the probe's application is deployed at


def serve(result: Mapping[str, Any], expected: Mapping[str, str], route: str) -> Check:
    """A Serve application deployed through the Jobs API answered HTTP at `route` from the
    notebook through every node's proxy, and the replica of every node that runs one
    answered, on the cell's Python micro and Ray version; the head proxy's /-/healthz and
    /-/routes answered (listing the route); Serve shut down after."""
    name = "serve:http"
    deploy = result.get("deploy") or {}
    if not result.get("ok") or not deploy:
        return Check.of(name, False, plain(result.get("error") or "no deployment")[-800:])
    if deploy.get("status") != "SUCCEEDED":
        tail = plain(deploy.get("log_tail") or "")[-800:]
        return Check.of(name, False, f"deploy job {deploy.get('status')}: {tail}", serve=result)
    replies = result.get("replies") or []
    answers = result.get("answers") or []
    problems = [
        f"GET {r.get('proxy', '')}{route} answered {r.get('status')}: {plain(r.get('body'))[:200]}"
        for r in replies
        if r.get("status") != 200
    ]
    if not replies:
        problems.append(f"no proxy was asked for {route}")
    replica_nodes = set(result.get("replica_nodes") or [])
    answered = {str(a.get("node")) for a in answers}
    # With a proxy asked on every node that runs a replica, every replica must have answered
    # (newer Rays route to the proxy's own node first; older ones at random, and the probe
    # asks again until each node answered). A backend that reaches the head only (one proxy,
    # which prefers its own node's replica) proves the replicas that answered, and says so.
    every_node_asked = len(replies) >= len(replica_nodes)
    if not replica_nodes:
        apps = result.get("applications") or {}
        problems.append(
            "which nodes run replicas could not be read from the dashboard "
            f"(/api/serve/applications/ answered {apps.get('status', '?')}): that every "
            "replica answered is not proven"
        )
    elif every_node_asked and not replica_nodes <= answered:
        problems.append(
            f"replicas run on {len(replica_nodes)} node(s) but {len(replica_nodes & answered)} "
            "of them answered through their node's proxy"
        )
    wrong = sorted(
        {f"{k} {a.get(k)}" for a in answers for k in ("python", "ray") if a.get(k) != expected[k]}
    )
    problems += [f"a replica reports {w}" for w in wrong]
    healthz, routes = result.get("healthz") or {}, result.get("routes") or {}
    if healthz.get("status") != 200:
        problems.append(f"/-/healthz answered {healthz.get('status')}")
    if routes.get("status") != 200 or route not in str(routes.get("body")):
        problems.append(f"/-/routes ({routes.get('status')}) does not list {route}")
    shutdown = result.get("shutdown") or {}
    if shutdown.get("status") != 200:
        problems.append(f"shutting Serve down answered {shutdown.get('status')}")
    proven = (
        f"every replica answered (replicas on {len(replica_nodes)} node(s))"
        if every_node_asked
        else f"replicas on {len(replica_nodes)} node(s), {len(replies)} proxy(ies) asked: "
        f"{len(replica_nodes & answered)} replica node(s) answered, the others not asked"
    )
    detail = (
        f"GET :{SERVE_PORT}{route} at {len(replies)} node proxy(ies): {proven}, all Python "
        f"{expected['python']}, Ray {expected['ray']}; /-/healthz and /-/routes answered; "
        "Serve shut down through the REST API"
        if not problems
        else "; ".join(problems)
    )
    return Check.of(name, not problems, detail, serve=dict(result))


AUTH_PATHS = ("http", "jobs", "gcs", "ray_client")  # as the `auth` probe names them
AUTH_PATH_NAMES = {
    "http": "Jobs API over HTTP",
    "jobs": "JobSubmissionClient",
    "gcs": "GCS",
    "ray_client": "Ray Client",
    "driver": "a node joining to run a driver",
}


def _accepted(path: str, answer: Mapping[str, Any]) -> bool:
    if path == "http":
        return answer.get("status") == 200
    return bool(answer.get("ok"))


# How Ray refuses a client or node without the cluster's token, on every path (read from
# Ray 2.60.0's answers: HTTP 401 "Missing authentication token" / 403 "Invalid
# authentication token"; JobSubmissionClient's AuthenticationError; GCS's
# "InvalidAuthToken: Authentication token is missing or incorrect"; Ray Client's server
# "Invalid or missing authentication token"). Anything else (a connection refused, a
# crashed server, a timeout) is not a refusal for want of the token, and proves nothing.
TOKEN_REFUSAL = re.compile(r"authentication token|InvalidAuthToken|AuthenticationError", re.I)


def token_refused(path: str, answer: Mapping[str, Any]) -> bool:
    """Whether `answer` is Ray's own refusal of a missing or wrong token on `path`."""
    if path == "http":
        return answer.get("status") in (401, 403) and bool(
            TOKEN_REFUSAL.search(str(answer.get("body") or ""))
        )
    return not answer.get("ok") and bool(TOKEN_REFUSAL.search(str(answer.get("detail") or "")))


def files_with(secret: str, roots: Sequence[Path]) -> tuple[list[str], int]:
    """Every file under `roots` whose bytes contain `secret` (paths relative to a root),
    and how many files were searched."""
    needle = secret.encode()
    found, searched = [], 0
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            searched += 1
            if needle in path.read_bytes():
                found.append(str(path.relative_to(root)))
    return found, searched


def auth_token(
    answers: Mapping[str, Mapping[str, Any]],
    driver_refused: str | None,
    leaks: Sequence[str],
    scanned: int,
    token: str,
    unread: Sequence[str] = (),
) -> Check:
    """Token authentication, per client path: with the cluster's token every path is
    accepted; without it and with a wrong one every path is refused with Ray's refusal for
    the token (TOKEN_REFUSAL: any other failure proves nothing); the token is in none of
    the containers' output or Ray's session logs. `answers`: the `auth` probe's result for
    the keys "token", "none" and "wrong"; `scanned`: how many files were searched for the
    token, `unread`: what of the nodes' logs could not be read. Searching nothing, or not
    every node's logs, is an `error`: no evidence of no leak."""

    def say(answer: Mapping[str, Any]) -> str:
        if "status" in answer:  # a plain HTTP answer
            text = f"HTTP {answer.get('status')} {answer.get('body') or ''}".strip()
        else:
            text = str(answer.get("detail") or "no answer")
        return plain(text).replace(token, "<token>")[:160]

    problems: list[str] = []
    for who in ("token", "none", "wrong"):
        result = answers.get(who) or {}
        if not result.get("ok"):
            problems.append(f"the {who} round gave no answer: {say(result)}")
            continue
        for path in AUTH_PATHS:
            answer = result.get(path) or {}
            accepted = _accepted(path, answer)
            if who == "token" and not accepted:
                problems.append(
                    f"{AUTH_PATH_NAMES[path]} refused the cluster's token: {say(answer)}"
                )
            elif who != "token" and accepted:
                problems.append(
                    f"finding: {AUTH_PATH_NAMES[path]} accepts a client with {who} token: "
                    f"{say(answer)}"
                )
            elif who != "token" and not token_refused(path, answer):
                problems.append(
                    f"{AUTH_PATH_NAMES[path]} with {who} token failed, but not with Ray's "
                    f"refusal for the token: {say(answer)}"
                )
    if driver_refused is None:
        problems.append("finding: a node without the token joined the cluster")
    elif not TOKEN_REFUSAL.search(driver_refused):
        problems.append(
            "a node without the token failed to join, but not with Ray's refusal for the "
            f"token: {plain(driver_refused).replace(token, '<token>')[-200:]}"
        )
    if leaks:
        problems.append(f"the token is written in {', '.join(leaks[:5])}")
    no_evidence = []
    if not scanned:
        no_evidence.append("no log file was searched for the token")
    if unread:
        no_evidence.append(f"not every node's logs could be read ({'; '.join(unread)})")
    refusal = say((answers.get("none") or {}).get("jobs") or {})
    detail = (
        "with the cluster's token: Jobs API (HTTP and JobSubmissionClient), GCS and Ray "
        "Client accepted; with no token and with a wrong one all refused, and so was a node "
        f"joining without it (Jobs API said: {refusal}); the token is in none of "
        f"{scanned} log file(s)"
        if not problems
        else "; ".join(problems)
    )
    evidence = {
        who: {p: say((answers.get(who) or {}).get(p) or {}) for p in AUTH_PATHS}
        for who in ("token", "none", "wrong")
    }
    seconds = {who: (answers.get(who) or {}).get("seconds") for who in ("token", "none", "wrong")}
    if no_evidence and not problems:
        why = "; ".join(no_evidence) + ": that the token leaked nowhere is not proven"
        return Check("auth:token", ERROR, why, data={"paths": evidence, "seconds": seconds})
    detail = "; ".join([*problems, *no_evidence]) if problems else detail
    return Check.of("auth:token", not problems, detail, paths=evidence, seconds=seconds)


def notebook(
    result: Mapping[str, Any], where: str = "the notebook image", marker: str = "PARITY_OK"
) -> Check:
    """`notebook:execute`: parity.ipynb ran in nbclient (in `where`) and printed `marker`."""
    ok = bool(result.get("ok")) and marker in str(result.get("stdout", ""))
    if ok:
        line = next(ln for ln in str(result["stdout"]).splitlines() if marker in ln)
        return Check.of(
            "notebook:execute", True, f"parity.ipynb ran in nbclient in {where}: {line[:200]}"
        )
    return Check.of(
        "notebook:execute",
        False,
        plain(result.get("error") or result.get("stdout") or "no output")[-800:],
    )


def jupyterlab(result: Mapping[str, Any]) -> Check:
    if result.get("ok") and result.get("lab_page"):
        status = result.get("status") or {}
        return Check.of(
            "notebook:jupyterlab",
            True,
            f"/api/status answered (started {status.get('started', '?')}), /lab serves JupyterLab",
        )
    return Check.of("notebook:jupyterlab", False, str(result.get("error") or "no JupyterLab page"))


KUBEFLOW_USER = {"name": "jovyan", "uid": 1000, "home": "/home/jovyan"}


def _frame_blockers(answer: Mapping[str, Any]) -> list[str]:
    """Why a page on another origin could not embed this response in an iframe."""
    out = []
    xfo = answer.get("xfo")
    if xfo:
        out.append(f"X-Frame-Options: {xfo}")
    csp = str(answer.get("csp") or "")
    for directive in csp.split(";"):
        words = directive.split()
        if words and words[0] == "frame-ancestors" and "*" not in words[1:]:
            out.append(f"Content-Security-Policy: {directive.strip()}")
    return out


def kubeflow_contract(result: Mapping[str, Any], kernel: Check) -> Check:
    """The notebook image as a Kubeflow custom image: started with NB_PREFIX and an empty
    volume at /home/jovyan, it serves ${NB_PREFIX}/api/status and /lab without a token,
    lets a dashboard on another origin frame it (Access-Control-Allow-Origin: *, no
    frame-ancestors or X-Frame-Options that forbid it), runs as jovyan (uid 1000) with a
    writable /home/jovyan, and a kernel there passes parity against the cluster."""
    name = "kubeflow:contract"
    if not result.get("ok"):
        return Check.of(name, False, plain(result.get("error") or "no answer")[-600:])
    prefix = result.get("prefix")
    status, lab = result.get("api_status") or {}, result.get("lab") or {}
    problems = []
    if status.get("status") != 200:
        problems.append(
            f"GET {prefix}/api/status without a token answered {status.get('status')} "
            "(a token asked for, or NB_PREFIX ignored)"
        )
    elif lab.get("status") != 200 or "JupyterLab" not in str(lab.get("body")):
        problems.append(f"GET {prefix}/lab answered {lab.get('status')}, not JupyterLab")
    if status.get("status") == 200 and status.get("acao") != "*":
        problems.append(f"Access-Control-Allow-Origin is {status.get('acao')!r}, not '*'")
    problems += [f"framing blocked by {b}" for b in _frame_blockers(lab)] if lab else []
    user = result.get("user") or {}
    for key, want in KUBEFLOW_USER.items():
        if user.get(key) != want:
            problems.append(f"{key} is {user.get(key)!r}, not {want!r}")
    if user.get("passwd_home") != KUBEFLOW_USER["home"]:
        problems.append(f"the passwd home is {user.get('passwd_home')!r}")
    if not user.get("home_writable"):
        problems.append(f"{user.get('home')} is not writable: {result.get('home_error')}")
    if kernel.status != "passed":
        problems.append(f"a kernel there did not pass parity: {kernel.detail[:300]}")
    detail = (
        f"NB_PREFIX={prefix}: /api/status and /lab answered without a token, "
        "Access-Control-Allow-Origin: *, framing allowed; jovyan (uid 1000), /home/jovyan "
        "(an empty volume) writable; a kernel passed parity against the cluster"
        if not problems
        else "; ".join(problems)
    )
    return Check.of(name, not problems, detail, kubeflow=dict(result))


def gpu(result: Mapping[str, Any]) -> Check:
    """`gpu:e2e`: Ray sees the host's GPUs and a num_gpus=1 task got one."""
    found = result.get("task")
    task: Mapping[str, Any] = found if isinstance(found, dict) else {}
    gpus = result.get("cluster_gpus")
    seen = isinstance(gpus, (int, float)) and gpus > 0 and bool(task.get("CUDA_VISIBLE_DEVICES"))
    return Check.of(
        "gpu:e2e",
        bool(result.get("ok")) and seen,
        f"cluster GPUs {result.get('cluster_gpus')}, task CUDA_VISIBLE_DEVICES="
        f"{task.get('CUDA_VISIBLE_DEVICES')!r}"
        + (f"; {result.get('error')}" if result.get("error") else ""),
        probe=dict(result),
    )
