"""The host side of the in-image probe (`harness/inside/probe.py`): one typed call per
probe command, so no caller builds an argument list by hand. Each call bounds the probe
inside the image (`--timeout`) and waits `timeouts.PROBE_MARGIN` longer on the host for
the interpreter and Ray's import around it.
"""

from __future__ import annotations

from typing import Any, Protocol

from harness.timeouts import DEFAULT, PROBE_MARGIN

Result = dict[str, Any]


class Runner(Protocol):
    """Runs the probe in a container (a cluster of either backend)."""

    def probe(
        self, container: str, args: list[str], timeout: float, env: dict[str, str] | None = None
    ) -> Result: ...


def _seconds(value: float) -> str:
    return f"{value:g}"


def cluster_args(
    address: str,
    nodes: int,
    timeout: float,
    workload: bool = False,
    once: bool = False,
    count_only: bool = False,
) -> list[str]:
    """`cluster ADDRESS`: connect (ray://, host:port or auto), wait for `nodes` alive nodes,
    probe every node; with `workload`, tasks, an actor and a cross-node object; with
    `once`, a single ray.init (for a cluster already proven up: a refusal Ray answers only
    with its own retries' timeout is not waited out to the deadline); with `count_only`,
    no probe on the nodes (readiness: Ray starts no worker process for it)."""
    args = ["cluster", address, "--expect-nodes", str(nodes), "--timeout", _seconds(timeout)]
    flags = {"--workload": workload, "--once": once, "--count-only": count_only}
    return [*args, *(flag for flag, on in flags.items() if on)]


def version_check_args(address: str, timeout: float) -> list[str]:
    """`version-check HOST:PORT`: Ray's own driver check against the cluster's GCS."""
    return ["version-check", address, "--timeout", _seconds(timeout)]


def jobs_args(address: str, timeout: float, fail: bool = False) -> list[str]:
    """`jobs http://HOST:8265`: the dashboard's /api/version and a job through the Jobs
    API; with `fail`, a job that raises."""
    return ["jobs", address, "--timeout", _seconds(timeout), *(["--fail"] if fail else [])]


STRUCTURE_ARGS = ["structure"]  # facts + what the structure checks measure


class Probe:
    """The probe's commands, run in one container through a runner."""

    def __init__(self, runner: Runner, container: str) -> None:
        self.runner = runner
        self.container = container

    def _run(self, args: list[str], inside: float, env: dict[str, str] | None = None) -> Result:
        return self.runner.probe(self.container, args, timeout=inside + PROBE_MARGIN, env=env)

    def facts(self, timeout: float) -> Result:
        """Python micro, Ray version and commit, wire libraries of this interpreter."""
        return self.runner.probe(self.container, ["facts"], timeout=timeout)

    def cluster(
        self,
        address: str,
        *,
        nodes: int,
        timeout: float,
        workload: bool = False,
        once: bool = False,
        count_only: bool = False,
        env: dict[str, str] | None = None,
    ) -> Result:
        args = cluster_args(address, nodes, timeout, workload, once, count_only)
        return self._run(args, timeout, env)

    def notebook(self, path: str, timeout: float, env: dict[str, str] | None = None) -> Result:
        """Execute an .ipynb with nbclient (`timeout` bounds each cell); what it printed."""
        args = ["notebook", path, "--timeout", str(int(timeout))]
        return self.runner.probe(self.container, args, timeout=2 * timeout, env=env)

    def jupyter(self, token_file: str, timeout: float) -> Result:
        """JupyterLab's /api/status and /lab on this container, with the token in
        `token_file` there (never on a command line)."""
        args = ["jupyter", "--token-file", token_file, "--timeout", _seconds(timeout)]
        return self._run(args, timeout)

    def jobs(self, address: str, timeout: float, fail: bool = False) -> Result:
        """The dashboard's /api/version and a job through the Jobs API at `address`
        (http://HOST:8265); with `fail`, a job that raises."""
        return self._run(jobs_args(address, timeout, fail), timeout)

    def serve(
        self,
        address: str,
        proxies: list[str],
        timeout: float,
        route: str | None = None,
        proxy_wait: float = DEFAULT.proxy,
    ) -> Result:
        """Deploy the probe's Serve application through the Jobs API at `address`, ask it
        at every proxy (`http://NODE:8000`, the head's first, each for up to `proxy_wait`
        seconds) + `route` (default: its own route), /-/healthz and /-/routes, then shut
        Serve down through the REST API."""
        args = ["serve", address, *(a for p in proxies for a in ("--http", p))]
        args += ["--timeout", _seconds(timeout), "--proxy-wait", _seconds(proxy_wait)]
        return self._run([*args, *(["--route", route] if route else [])], timeout)

    def auth(self, head: str, timeout: float, env: dict[str, str] | None = None) -> Result:
        """What the cluster at `head` answers this container under `env` (its token, none
        or a wrong one): Jobs API over HTTP and JobSubmissionClient, GCS, Ray Client."""
        args = ["auth", "--dashboard", f"http://{head}:8265", "--client", f"ray://{head}:10001"]
        args += ["--gcs", f"{head}:6379", "--timeout", _seconds(timeout)]
        return self._run(args, timeout, env)

    def roundtrip(self, address: str, timeout: float, env: dict[str, str] | None = None) -> Result:
        """As a driver at `address` (HOST:6379; this container joined as a node): a function,
        a class instance, a closure, an array and an actor's state, each through the cluster."""
        return self._run(["roundtrip", address, "--timeout", _seconds(timeout)], timeout, env)

    def kubeflow(self, timeout: float) -> Result:
        """In a container started the Kubeflow way: the server under $NB_PREFIX without a
        token, its framing and CORS headers, the user and home."""
        return self._run(["kubeflow", "--timeout", _seconds(timeout)], timeout)

    def gpu(self, timeout: float) -> Result:
        """Ray's GPU resources and a num_gpus=1 task, from this node."""
        return self._run(["gpu", "auto", "--timeout", _seconds(timeout)], timeout)
