"""End-to-end test of one cell: start a cluster from its images, run every check, tear down.

Order: while the nodes come up and the Ray Client checks run, what needs no Ray cluster
(JupyterLab's /api/status in the notebook, the notebook image started as a Kubeflow
notebook and its server probed). Once the cluster is ready, a Serve application deployed
through the Jobs API (the longest chain) and, beside it, Ray Client (`ray://`) from the
notebook container with parity and the workload (tasks, actor, object, placement group).
Then three more lanes side by side: a real .ipynb executed with nbclient (in the notebook
started as a Kubeflow notebook when there is one); token authentication's attempts; over
HTTP, the dashboard and a job through the Jobs API (runtime env). Last, the notebook
container joins as a 0-CPU node so a real driver can run (`ray.init(address="ray-head:6379")`
needs a local raylet) and parity is checked again; then the token is searched in every log."""

from __future__ import annotations

import contextlib
import secrets
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from harness import cluster_checks as checks
from harness import raylogs
from harness.backends import JUPYTER_TOKEN_PATH, Cluster, ClusterStartFailed, ray_logs_dir
from harness.errors import EngineError
from harness.matrix import Cell
from harness.probe_client import Probe
from harness.progress import log, step
from harness.results import ERROR, FAILED, SKIPPED, Check
from harness.timeouts import DEFAULT, Timeouts
from harness.turns import Alone, Turn

NOTEBOOK_PATH = "/tmp/parity.ipynb"
# Why the driver checks are skipped under QEMU (measured 2026-11-30, Ray 2.60.0, 3 of 3).
EMULATED_DRIVER_SKIP = (
    "not run under QEMU emulation: a joining node's raylet waits a fixed 15 s for its "
    "agents to write their port files, then aborts (Ray's node_manager.cc: `Timed out "
    "waiting for file .../metrics_agent_port_*`; giving the ports only moves the wait to "
    "the next file); the notebook container's emulated dashboard agent took 18 s. Parity "
    "on every node is proven by client:parity and jobs:submit (a driver in the head)"
)


def _expected(cell: Cell) -> dict[str, str]:
    """What every client and node of the cell must report."""
    return {"python": cell.python, "ray": cell.ray}


def _notebook_source() -> str:
    return resources.files("harness").joinpath("assets/parity.ipynb").read_text(encoding="utf-8")


def _lost_node(cluster: Cluster, results: list[Check], phase: str) -> bool:
    """Record a failure naming every node container that died; True if any did."""
    dead = cluster.dead_nodes()
    if not dead:
        return False
    detail = "; ".join(f"{name} {why} (noticed during {phase})" for name, why in dead.items())
    results.append(Check.of("cluster:nodes-alive", False, detail, dead=dead))
    return True


def test_cell(
    cell: Cell,
    log_dir: Path,
    timeouts: Timeouts,
    make_cluster: Callable[[], Cluster],
    turn: Turn | None = None,
) -> tuple[list[Check], dict[str, float]]:
    """All runtime checks of a cell on the cluster `make_cluster` starts (from whichever
    backend), each recorded separately; never raises for a failed check. `turn` says when
    the checks may begin and when the last phase does (see harness.turns); the timings
    leave out the time spent waiting for the turn (`waited`). Ray's token of the cluster
    is in nothing this returns or leaves under the cell's log directory."""
    secrets_seen: list[str] = []

    def make() -> Cluster:
        cluster = make_cluster()
        if cluster.auth_token:
            secrets_seen.append(cluster.auth_token)
        return cluster

    try:
        results, timings = _test_cell(cell, log_dir, timeouts, make, turn)
    finally:
        for secret in secrets_seen:  # the saved logs too, however the cell ended
            raylogs.redact_tree(log_dir.parent, secret)
    for secret in secrets_seen:
        results = [c.redacted(secret) for c in results]
    return results, timings


def _test_cell(
    cell: Cell,
    log_dir: Path,
    timeouts: Timeouts,
    make_cluster: Callable[[], Cluster],
    turn: Turn | None = None,
) -> tuple[list[Check], dict[str, float]]:
    turn = turn or Alone()
    expected = _expected(cell)
    results: list[Check] = []
    timings: dict[str, float] = {}
    start = time.monotonic()
    with contextlib.ExitStack() as stack:
        # Serve's lane may outlive a cell that gives up; entered first, so it is joined
        # after the cluster is gone (its probe then ends at once).
        serve_pool = stack.enter_context(
            ThreadPoolExecutor(1, thread_name_prefix="raycompat-serve")
        )
        try:
            cluster = make_cluster()
            stack.enter_context(cluster)
        except ClusterStartFailed as exc:
            results.append(Check("cluster:start", ERROR, f"the cluster did not start: {exc}"))
            log(f"{cell.id}: the cluster did not start: {exc}")
            return results, timings
        # What needs no Ray cluster starts now, beside start-up and the Ray Client checks
        # (measured: a third of the CPU idle there, none in the lanes). Exited before the
        # Kubeflow notebook's stack, which is exited before the cluster.
        kubeflow_stack = stack.enter_context(contextlib.ExitStack())
        early_pool = stack.enter_context(
            ThreadPoolExecutor(1, thread_name_prefix="raycompat-early")
        )

        # Not under QEMU: there a joining raylet gives its agents Ray's fixed 15 s (see
        # EMULATED_DRIVER_SKIP), and an emulated JupyterLab starting beside the worker's
        # agents made it miss that (measured once, 2026-12-02); it starts once nodes are up.
        def without_cluster() -> _Early:
            return _without_cluster(cell, cluster, timeouts, kubeflow_stack)

        early = None if cluster.emulated else early_pool.submit(without_cluster)
        # 0. Readiness, judged on the head itself (a local driver waits for every node).
        #    Connecting a Ray Client to a head that is still starting can stall ~40 s in
        #    Ray's own retry/cleanup path, so the client only connects to a ready cluster.
        with step(f"{cell.id}: waiting for head + worker"):
            r = Probe(cluster, cluster.head).cluster(
                "auto", nodes=2, timeout=timeouts.ready, count_only=True
            )
        timings["cluster_ready"] = round(time.monotonic() - start, 2)
        results.append(checks.no_published_ports(cluster.published_ports))
        ready = checks.connect("cluster:ready", r, expect_nodes=2)
        results += ready
        if not all(c.status == "passed" for c in ready):
            _lost_node(cluster, results, "start-up")
            return _give_up(cluster, cell, results, timings, log_dir, "did not come up")

        if early is None:
            early = early_pool.submit(without_cluster)
        # The cluster is ready; its checks wait for the cell before to be gone.
        timings["waited"] = turn.checks()
        start += timings["waited"]
        # Serve's chain (a job, then Serve's controller, a proxy and a replica per node,
        # each a new Ray worker) is the longest lane and needs nothing of the Ray Client
        # checks: it starts now, in the CPU they leave idle (measured: a third to a half).
        serving = serve_pool.submit(_lane, cluster, [lambda: _serve(cell, cluster, timeouts)])

        # 1. Ray Client, the notebook user's path.
        with step(f"{cell.id}: Ray Client connect, parity, workload"):
            r = Probe(cluster, cluster.notebook).cluster(
                f"ray://{cluster.head_host}:10001",
                nodes=2,
                timeout=timeouts.connect,
                workload=True,
            )
        timings["cluster_up_and_client"] = round(time.monotonic() - start, 2)
        connect_checks = checks.connect("client:connect", r, expect_nodes=2)
        connect_checks[0].data["timings"] = r.get("timings", {})
        results += connect_checks
        node_ids: list[str] = []
        if r.get("connect", {}).get("ok"):
            nodes = r.get("nodes", [])
            node_ids = [n["node_id"] for n in nodes]
            results.append(checks.parity("client:parity", r["client"], nodes, expected))
            results += checks.workload(r, node_ids)

        if _lost_node(cluster, results, "the Ray Client checks"):
            return _give_up(cluster, cell, results, timings, log_dir, "lost a node")

        # 2-4. Three lanes side by side, Serve's still running: most of their time is
        #      waiting for the cluster (a kernel, Ray's answers to refused clients, a job),
        #      not computing. Only the token lane runs `ray start`; only the Jobs API
        #      lane's checks need the Ray Client checks' node ids. A lane stops at a dead
        #      node.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="raycompat-lane") as pool:
            notebook_lane = pool.submit(_notebook_lane, cell, cluster, timeouts, early.result())
            token_lane = pool.submit(_token_lane, cluster, timeouts)
            http_checks = _http_lane(cell, cluster, timeouts, expected, node_ids, serving)
            client_checks, auth = notebook_lane.result(), token_lane.result()
        results += client_checks + http_checks
        timings["lanes"] = round(time.monotonic() - start, 2)
        auth_at = len(results)

        if _lost_node(cluster, results, "the notebook, Jobs API, Serve and token checks"):
            return _give_up(cluster, cell, results, timings, log_dir, "lost a node")

        # 6. A driver: needs a raylet in the notebook container, so join it as a 0-CPU node.
        #    Last, because it changes the cluster's membership. Once it has joined, the
        #    next cell's cluster may start (see harness.turns).
        results += _driver_checks(cell, cluster, timeouts, expected, turn.last_phase)

        # The token must be in no output or log of the whole test, the driver's included.
        results.insert(
            auth_at, auth if isinstance(auth, Check) else _auth_verdict(cluster, auth, log_dir)
        )

        if not _lost_node(cluster, results, "the driver checks"):
            results.append(
                Check.of(
                    "cluster:nodes-alive",
                    True,
                    f"head and {len(cluster.worker_names)} worker(s) stayed up through every check",
                )
            )
        if any(c.status in (FAILED, ERROR) for c in results):
            _attach_logs(cluster, results, log_dir)
            log(f"{cell.id}: a check failed; logs in {log_dir.parent}")
    timings["test_seconds"] = round(time.monotonic() - start, 2)
    return results, timings


def _driver_checks(
    cell: Cell,
    cluster: Cluster,
    timeouts: Timeouts,
    expected: dict[str, str],
    joined: Callable[[], None],
) -> list[Check]:
    """A driver: needs a raylet in the notebook container, so join it as a 0-CPU node. It
    stays joined: the cluster goes right after (Ray's `ray stop` takes ~2 s). `joined` is
    called as soon as the node has joined, or it is clear it will not."""
    if cluster.emulated:
        joined()
        return [
            Check("driver:connect", SKIPPED, EMULATED_DRIVER_SKIP),
            Check("driver:parity", SKIPPED, EMULATED_DRIVER_SKIP),
        ]
    with step(f"{cell.id}: driver connect and parity"):
        refused, r = join_as_driver(
            cluster, cluster.notebook, timeouts, leave=False, on_join=joined
        )
    joined()
    if refused is not None:
        why = f"`ray start` in the notebook failed: {refused.strip()[-600:]}"
        return [Check.of("driver:connect", False, why)]
    found = checks.connect("driver:connect", r, expect_nodes=3)
    if r.get("connect", {}).get("ok"):
        found.append(checks.parity("driver:parity", r["client"], r.get("nodes", []), expected))
    return found


def _lane(cluster: Cluster, steps: Sequence[Callable[[], list[Check]]]) -> list[Check]:
    """Run `steps` in order until one finds a dead node (the caller records which)."""
    out: list[Check] = []
    for run in steps:
        if cluster.dead_nodes():
            break
        out += run()
    return out


@dataclass(frozen=True)
class _Early:
    """What the checks that need no Ray cluster found, before the lanes."""

    jupyter: dict[str, Any]  # JupyterLab's /api/status and /lab in the notebook container
    kubeflow: Check | _KubeflowNotebook  # a verdict already, or the started notebook


def _without_cluster(
    cell: Cell, cluster: Cluster, timeouts: Timeouts, stack: contextlib.ExitStack[bool | None]
) -> _Early:
    """JupyterLab in the notebook container and the Kubeflow notebook's start and server
    probe: neither needs Ray, so they run while the nodes come up."""
    jupyter = Probe(cluster, cluster.notebook).jupyter(JUPYTER_TOKEN_PATH, timeouts.jupyter)
    return _Early(jupyter, _kubeflow_start(cell, cluster, timeouts, stack))


def _notebook_lane(cell: Cell, cluster: Cluster, timeouts: Timeouts, early: _Early) -> list[Check]:
    """A real notebook: parity.ipynb executed once by nbclient in the notebook image, in
    the notebook started the Kubeflow way where one was started (the same image, kernel
    and Ray Client path as the cluster's notebook container, in the setting users run it;
    its run also completes `kubeflow:contract`), else in the cluster's notebook container.
    JupyterLab's status was probed earlier."""
    kubeflow = early.kubeflow

    def notebook() -> list[Check]:
        if isinstance(kubeflow, _KubeflowNotebook):
            container, where = kubeflow.name, "the notebook started as a Kubeflow notebook"
        else:
            container, where = cluster.notebook, "the notebook container"
        with step(f"{cell.id}: parity.ipynb in {where}"):
            kernel = checks.notebook(_run_notebook(cluster, container, timeouts), where)
        verdict = (
            checks.kubeflow_contract(kubeflow.contract, kernel)
            if isinstance(kubeflow, _KubeflowNotebook)
            else kubeflow
        )
        return [kernel, checks.jupyterlab(early.jupyter), verdict]

    return _lane(cluster, [notebook])


def _token_lane(cluster: Cluster, timeouts: Timeouts) -> Check | AuthAttempts:
    """Token authentication's attempts, unless a node is already dead."""
    if cluster.dead_nodes():
        return Check("auth:token", SKIPPED, "not run: a node died before it")
    return _auth_attempts(cluster, timeouts)


def _http_lane(
    cell: Cell,
    cluster: Cluster,
    timeouts: Timeouts,
    expected: dict[str, str],
    node_ids: list[str],
    serving: Future[list[Check]],
) -> list[Check]:
    """The dashboard and a job through the Jobs API (as KubeRay's RayJob and Vertex AI use
    them), beside `serving` (Serve's lane, started before the Ray Client checks); then the
    GPU check where the host has GPUs."""
    dashboard = f"http://{cluster.head_host}:8265"

    def jobs() -> list[Check]:
        with step(f"{cell.id}: dashboard and a job through the Jobs API"):
            r = Probe(cluster, cluster.notebook).jobs(dashboard, timeouts.jobs)
            return [
                checks.dashboard(r, cell.ray),
                checks.jobs(r, expected, node_ids),
                checks.runtime_env(r, node_ids),
            ]

    def gpu() -> list[Check]:  # only where the Docker host can hand GPUs to containers
        return [_gpu_check(cluster, cluster.gpus, timeouts)] if cell.variant == "gpu" else []

    ran = _lane(cluster, [jobs])
    ran += serving.result()
    return ran + _lane(cluster, [gpu])


def _serve(cell: Cell, cluster: Cluster, timeouts: Timeouts) -> list[Check]:
    """A Serve application deployed through the Jobs API and asked over HTTP on every node."""
    dashboard = f"http://{cluster.head_host}:8265"
    with step(f"{cell.id}: Serve application over HTTP"):
        hosts = [f"http://{host}:{checks.SERVE_PORT}" for host in cluster.node_hosts()]
        probe = Probe(cluster, cluster.notebook)
        r = probe.serve(dashboard, hosts, timeouts.serve, proxy_wait=timeouts.proxy)
        return [checks.serve(r, _expected(cell), checks.SERVE_ROUTE)]


KUBEFLOW_PREFIX = "/notebook/raycompat/parity"  # as the controller sets it: /notebook/<ns>/<name>


@dataclass(frozen=True)
class _KubeflowNotebook:
    """The cell's notebook image started the Kubeflow way, and what its server answered."""

    name: str
    contract: dict[str, Any]


def _kubeflow_check(cell: Cell, cluster: Cluster, timeouts: Timeouts) -> Check:
    """`kubeflow:contract` in one go: the cell's notebook image, started the Kubeflow way
    next to the cluster, checked from inside (no token, prefix, headers, user, home) and by
    a kernel that runs parity.ipynb against the cluster. `test_cell` runs the two halves
    apart: the first while the nodes come up."""
    with contextlib.ExitStack() as stack:
        return _kubeflow_kernel(cluster, _kubeflow_start(cell, cluster, timeouts, stack), timeouts)


def _kubeflow_start(
    cell: Cell, cluster: Cluster, timeouts: Timeouts, stack: contextlib.ExitStack[bool | None]
) -> Check | _KubeflowNotebook:
    """The Kubeflow notebook started (removed by `stack`) and its server probed; or the
    check's verdict when it cannot be (skipped, error)."""
    if "kubeflow" not in cell.targets:
        return Check(
            "kubeflow:contract",
            SKIPPED,
            "kubeflow is not among this cell's targets (matrix.yaml `targets:`)",
        )
    image = cluster.images.get("notebook")
    if not image:
        return Check("kubeflow:contract", SKIPPED, "no notebook image in this cluster")
    with step(f"{cluster.cell_id}: the notebook as a Kubeflow custom image: its server"):
        try:
            name = cluster.add_kubeflow_notebook(image, KUBEFLOW_PREFIX)
        except NotImplementedError as exc:
            return Check("kubeflow:contract", SKIPPED, str(exc))
        except EngineError as exc:
            return Check("kubeflow:contract", ERROR, str(exc))
        stack.callback(cluster.remove, name)
        return _KubeflowNotebook(name, Probe(cluster, name).kubeflow(timeouts.jupyter))


def _kubeflow_kernel(
    cluster: Cluster, started: Check | _KubeflowNotebook, timeouts: Timeouts
) -> Check:
    """`kubeflow:contract`'s verdict: the server's answers and a kernel in the Kubeflow
    notebook running parity.ipynb against the cluster."""
    if isinstance(started, Check):
        return started
    with step(f"{cluster.cell_id}: the Kubeflow notebook's kernel"):
        kernel = checks.notebook(
            _run_notebook(cluster, started.name, timeouts), "the Kubeflow notebook"
        )
        return checks.kubeflow_contract(started.contract, kernel)


def _run_notebook(cluster: Cluster, container: str, timeouts: Timeouts) -> dict[str, Any]:
    """parity.ipynb executed by a kernel in `container`, against the cluster's Ray Client."""
    cluster.put_file(container, NOTEBOOK_PATH, _notebook_source())
    address = {"RAY_ADDRESS": f"ray://{cluster.head_host}:10001"}
    return Probe(cluster, container).notebook(NOTEBOOK_PATH, timeouts.notebook, env=address)


NO_TOKEN = {"RAY_AUTH_MODE": "disabled"}  # a client that sends no token
# Ray's `ray start --address` waits for a head that may still be starting: it retries its
# GCS connection once a second for ~20 s on any error, an AuthenticationError too
# (ray/_private/node.py _init_gcs_client), then asks 20 times, 2 s apart, for the head's
# node info (what a Ray that cannot read this GCS's answer ends with). Both budgets are
# Ray's own settings (RAY_gcs_server_port_wait_time_s, RAY_NUM_REDIS_GET_RETRIES; 2.51.2
# and 2.60.0 honour them). A cluster proven up gives its answer on the first attempt, so
# two attempts each get Ray's same refusal, 20-40 s sooner.
QUICK_REFUSAL = {"RAY_gcs_server_port_wait_time_s": "2", "RAY_NUM_REDIS_GET_RETRIES": "2"}
TOKENLESS_NODE = {**NO_TOKEN, **QUICK_REFUSAL}  # a node without the token: refused in ~7 s


@dataclass(frozen=True)
class AuthAttempts:
    """What token authentication's attempts got; the verdict also needs every log."""

    token: str
    answers: dict[str, dict[str, Any]]
    refused: str | None


def _auth_attempts(cluster: Cluster, timeouts: Timeouts) -> Check | AuthAttempts:
    """`auth:token`, first half: the notebook asks every path with the cluster's token,
    with none and with a wrong one; a node tries to join without it. Skipped, with the
    reason, on a cluster started without a token."""
    token = cluster.auth_token
    if token is None:
        return Check("auth:token", SKIPPED, cluster.auth_skip)
    with step(f"{cluster.cell_id}: token authentication"):
        probe = Probe(cluster, cluster.notebook)
        wrong = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "wrong-" + secrets.token_hex(16)}
        envs: dict[str, dict[str, str] | None] = {"token": None, "none": NO_TOKEN, "wrong": wrong}

        def tokenless_join() -> tuple[str | None, float]:
            joining = time.monotonic()
            refused, _ = join_as_driver(cluster, cluster.notebook, timeouts, env=TOKENLESS_NODE)
            return refused, time.monotonic() - joining

        # The four attempts are independent, and most of their time is Ray waiting for an
        # answer (a refused `ray start` retries for ~25 s): they run side by side.
        with ThreadPoolExecutor(max_workers=4) as pool:
            asked = {
                name: pool.submit(probe.auth, cluster.head_host, timeouts.auth, env=env)
                for name, env in envs.items()
            }
            join = pool.submit(tokenless_join)
            answers = {name: future.result() for name, future in asked.items()}
            refused, took = join.result()
        log(f"{cluster.cell_id}: a node without the token: refused in {took:.0f}s")
    return AuthAttempts(token, answers, refused)


def _auth_verdict(cluster: Cluster, attempts: AuthAttempts, log_dir: Path) -> Check:
    """`auth:token`, second half, at the end of the cell: the attempts' answers, and the
    token searched in every container's output and every node's Ray session logs."""
    with tempfile.TemporaryDirectory(prefix="raycompat-auth-") as tmp:
        outputs = cluster.save_logs()
        saved = cluster.save_ray_logs(Path(tmp))
        roots = [r for r in (log_dir, Path(tmp)) if r.is_dir()]
        leaks, scanned = checks.files_with(attempts.token, roots)
    # every node's Ray logs and output were read, or the search is partial
    nodes = len(cluster.node_containers())
    unread = [
        f"{what}: {len(got)} of {nodes} node(s)"
        for what, got in (("Ray's session logs", saved), ("container output", outputs))
        if len(got) < nodes
    ]
    return checks.auth_token(
        attempts.answers, attempts.refused, leaks, scanned, attempts.token, unread
    )


def join_as_driver(
    cluster: Cluster,
    client: str,
    timeouts: Timeouts = DEFAULT,
    env: dict[str, str] | None = None,
    roundtrip: bool = False,
    leave: bool = True,
    on_join: Callable[[], None] | None = None,
) -> tuple[str | None, dict[str, Any]]:
    """Run a real driver in `client`: it needs a raylet on its own machine, so the client
    first joins as a 0-CPU node (`ray start --address`, where Ray compares its Ray and
    Python versions with the cluster's), then `ray.init(address="head:6379")` probes every
    node (with `roundtrip`: sends functions, instances, closures and arrays through tasks
    and an actor instead); the client leaves the cluster again unless `leave` is False
    (after a refusal, Ray's processes are stopped if any was left). `env` reaches both;
    `on_join` is called once it has joined.

    Returns the output of a refused `ray start` (None when it joined) and the probe's result
    ({} when it did not join)."""
    address = f"{cluster.head_host}:6379"
    joined = False
    start = ["ray", "start", f"--address={address}", "--num-cpus=0", "--disable-usage-stats"]
    try:
        rc, out, err = cluster.exec(client, start, timeout=timeouts.join, env=env)
        if rc != 0:
            return out + err, {}
        joined = True
        if on_join is not None:
            on_join()
        probe = Probe(cluster, client)
        if roundtrip:
            return None, probe.roundtrip(address, timeouts.driver, env=env)
        return None, probe.cluster(address, nodes=3, timeout=timeouts.driver, env=env)
    finally:
        # A refused `ray start` is refused at its first GCS call, before it starts a
        # process; `ray stop --force` costs 2.5 CPU-s (measured), so after a refusal it runs
        # only where a Ray process was left after all.
        if (leave and joined) or (not joined and ray_processes_left(cluster, client)):
            cluster.exec(client, ["ray", "stop", "--force"], timeout=timeouts.join, env=env)


# Ray's processes in a container: its binaries and scripts run from Ray's package
# (raylet, gcs_server, the agents, the log monitor) and its workers retitle themselves
# `ray::...`. The `[y]` keeps the shell's own command line from matching.
_RAY_PROCESSES = (
    "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < \"$f\"; echo; done 2>/dev/null"
    " | grep -q -e '-packages/ra[y]/' -e '^ra[y]::'"
)


def ray_processes_left(cluster: Cluster, container: str) -> bool:
    """Whether any Ray process runs in `container` (True when that cannot be told)."""
    rc, _, _ = cluster.exec(container, ["sh", "-c", _RAY_PROCESSES], timeout=30)
    return rc != 1  # grep: 0 found, 1 none; anything else is no answer


def _give_up(
    cluster: Cluster,
    cell: Cell,
    results: list[Check],
    timings: dict[str, float],
    log_dir: Path,
    why: str,
) -> tuple[list[Check], dict[str, float]]:
    """Stop testing this cell: attach the node logs to the failed checks and return."""
    _attach_logs(cluster, results, log_dir)
    log(f"{cell.id}: cluster {why}; logs in {log_dir.parent}")
    return results, timings


def _attach_logs(cluster: Cluster, results: list[Check], log_dir: Path) -> None:
    """Save every container's output (log_dir) and Ray's own session logs of every node
    (log_dir/../ray/<node>/, where Ray says why, e.g. ray_client_server_*.err) before the
    containers go; the failed checks carry the output's tails, where Ray's logs are, and
    which Ray process aborted and why (harness.raylogs)."""
    tails = cluster.save_logs()
    ray_dir = ray_logs_dir(log_dir)
    saved = cluster.save_ray_logs(ray_dir)
    aborted = raylogs.fatal_causes(ray_dir, saved)
    if aborted:
        log(f"{cluster.cell_id}: Ray's logs: {raylogs.summary(aborted)}")
        raylogs.judge(results, aborted)
    for c in results:
        if c.status in (FAILED, ERROR):
            c.data["logs"] = tails
            if saved:
                c.data["ray_logs"] = str(ray_dir)


def _gpu_check(cluster: Cluster, gpu_host: bool, timeouts: Timeouts) -> Check:
    if not gpu_host:
        return Check("gpu:e2e", SKIPPED, cluster.gpu_skip)
    with step(f"{cluster.cell_id}: GPU resources and a num_gpus=1 task"):
        return checks.gpu(Probe(cluster, cluster.head).gpu(timeouts.gpu))
