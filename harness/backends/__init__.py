"""Where a cell's Ray cluster runs: plain containers (default) or Kubernetes (kind)."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import Any

from harness import raylogs
from harness.engine import Engine
from harness.errors import EngineError, HarnessError
from harness.inside import PROBE_SOURCE
from harness.matrix import Cell
from harness.timeouts import Timeouts

RAY_LOGS = "/tmp/ray/session_latest/logs"  # Ray's own logs inside every node
TOKEN_PATH = "/run/raycompat/auth_token"  # where a cluster's containers find Ray's token
# where the notebook container finds its Jupyter token (JUPYTER_TOKEN_FILE): a file, never
# an environment value, which `docker inspect` or the Pod spec would show to anyone
JUPYTER_TOKEN_DIR = "/run/raycompat-jupyter"
JUPYTER_TOKEN_PATH = f"{JUPYTER_TOKEN_DIR}/token"
NODE_IMAGE_ENV = "RAYCOMPAT_KIND_NODE_IMAGE"  # the kind backend's node image (--kind-node-image)


def ray_logs_dir(log_dir: Path) -> Path:
    """Where Ray's own session logs of a cluster whose containers log to log_dir are saved,
    one directory per node (build/logs/<cell>/ray/<node>/)."""
    return log_dir.parent / "ray"


class ClusterStartFailed(HarnessError):
    """A cell's cluster could not be started (an engine or API server refused): that cell
    is recorded as an `error`, the others go on."""


def probe_result(out: str) -> dict[str, Any] | None:
    """The probe's answer: the JSON object on its last line of output, or None."""
    lines = out.strip().splitlines()
    if not lines:
        return None
    try:
        result = json.loads(lines[-1])
    except ValueError:
        return None
    return result if isinstance(result, dict) else None


class Cluster(ABC):
    """A cell's Ray cluster on some backend: what verify.py and the grid need, so that one
    probe and one set of checks serve every backend. `probe` and `put_file` are built on
    the backend's `exec`; a backend provides the rest. A context manager: entering starts
    the cluster, leaving removes it."""

    cell_id: str
    images: dict[str, str]  # role -> the image the cluster runs
    head: str
    notebook: str
    gpus: bool  # the host's GPUs are handed to the nodes (NVIDIA runtime)
    # why gpu:e2e cannot run on this cluster when `gpus` is False (the backend's own reason)
    gpu_skip: str = (
        "no NVIDIA container runtime on this Docker host (`docker info` lists no 'nvidia' "
        "runtime): Ray GPU resources and CUDA_VISIBLE_DEVICES not checked"
    )
    worker_names: list[str]
    jupyter_token: str
    head_host: str  # how the notebook reaches the head (network alias or Service name)
    # Ray's token (RAY_AUTH_MODE=token) every container of the cluster was given, or None
    # when the cluster runs without one; `auth_skip` then says why.
    auth_token: str | None = None
    auth_skip: str = "this backend does not start clusters with a token yet"
    emulated: bool = False  # the images are of a foreign architecture, run under QEMU
    log_dir: Path | None = None  # containers' output; Ray's logs go to its parent's ray/

    @abstractmethod
    def __enter__(self) -> Cluster: ...

    @abstractmethod
    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    @abstractmethod
    def node_containers(self) -> list[str]: ...

    def node_hosts(self) -> list[str]:
        """How a client reaches each node by name, the head first (Serve's proxies run on
        every node). A backend whose nodes have no such names gives the head only."""
        return [self.head_host]

    @abstractmethod
    def published_ports(self) -> dict[str, list[str]]:
        """What each container (or Service) publishes outside the cluster's network;
        EngineError when that cannot be read."""

    @abstractmethod
    def dead_nodes(self) -> dict[str, str]:
        """Node containers that stopped during the test (name -> why), checked just now."""

    @abstractmethod
    def save_logs(self) -> dict[str, str]:
        """Every container's output to the log dir; their tails for the report."""

    @abstractmethod
    def save_ray_logs(self, dest: Path) -> list[str]:
        """Ray's own session logs of every node into dest/<node>/; the nodes copied."""

    def start_failed(self, why: str) -> ClusterStartFailed:
        """For a cluster that did not start (call before removing it): save its containers'
        output and Ray's logs, and say why, Ray's own reason first when a Ray process
        aborted (harness.raylogs): the report's table shows a detail's start."""
        if self.log_dir is not None:
            self.save_logs()
            ray_dir = ray_logs_dir(self.log_dir)
            aborted = raylogs.fatal_causes(ray_dir, self.save_ray_logs(ray_dir))
            if aborted:
                why = f"Ray's logs: {raylogs.summary(aborted)}; {why}"
        return ClusterStartFailed(f"{self.cell_id}: {why}")

    @abstractmethod
    def exec(
        self,
        container: str,
        command: list[str],
        timeout: float = 120,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) of `command` in `container`, bounded by `timeout`."""

    @abstractmethod
    def add_client(self, image: str, suffix: str) -> str:
        """Another idle client (a notebook image) next to the cluster; removed with it."""

    @abstractmethod
    def remove(self, container: str) -> None: ...

    def add_kubeflow_notebook(self, image: str, prefix: str) -> str:
        """A notebook container started as Kubeflow's notebook controller starts one:
        NB_PREFIX, an empty volume owned by 1000:100 (an fsGroup PVC) mounted at
        /home/jovyan, the image's own command; removed with the cluster.
        NotImplementedError where the backend cannot (the check is skipped)."""
        raise NotImplementedError("this backend does not start Kubeflow-style notebooks yet")

    def probe(
        self, container: str, args: list[str], timeout: float, env: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Run probe.py in a container; the result, or {"ok": False, "error": ...}."""
        rc, out, err = self.exec(
            container, ["python", "-", *args], timeout=timeout, input=PROBE_SOURCE, env=env
        )
        result = probe_result(out)
        if result is not None:
            return result
        return {"ok": False, "error": f"probe {args[0]} exited {rc}: {err.strip()[-1500:]}"}

    def put_file(self, container: str, path: str, content: str) -> None:
        rc, _, err = self.exec(container, ["sh", "-c", f"cat > {path}"], input=content, timeout=30)
        if rc != 0:
            raise EngineError(f"cannot write {path} in {container}: {err.strip()}")


class Backend(ABC):
    """Where clusters run. `test` and `grid` get every cluster from one, made by
    `open_backend`. The defaults suit a backend that runs the local images as they are."""

    def images_for(self, cell: Cell, local: dict[str, str]) -> dict[str, str]:
        """What the cluster runs: the local tags, or pushed digests where it pulls."""
        return local

    def load(self, images: list[str]) -> None:
        """Make the local images available to the clusters (kind: `kind load`)."""
        return None  # the local engine has them

    @abstractmethod
    def cluster(
        self,
        cell: Cell,
        images: dict[str, str],
        log_dir: Path,
        waits: Timeouts,
        *,
        name: str = "",
        client: bool = True,
    ) -> Cluster:
        """A cluster of `cell` (head and one worker) and, with `client`, its notebook."""

    def close(self) -> None:
        """Remove what the backend set up for the run."""
        return None  # nothing set up: each cluster removes itself

    def __enter__(self) -> Backend:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_backend(
    kind: str,
    engine: Engine,
    run_id: str,
    kube_context: str | None = None,
    node_image: str | None = None,
    pushed: dict[str, dict[str, str]] | None = None,
) -> Backend:
    """The one factory: `containers` (plain containers on a private network) or `kind`
    (a kind cluster made for the run, or `kube_context`). Refuses before creating
    anything what it can know is missing (kind's node image, an unknown context)."""
    if kind == "kind":
        from harness.backends.kube import KubeBackend

        return KubeBackend(engine, run_id, kube_context, node_image, pushed)
    from harness.backends.containers import ContainersBackend

    return ContainersBackend(engine, run_id)
