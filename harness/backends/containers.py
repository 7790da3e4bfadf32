"""A Ray cluster for one cell as plain containers on a private Docker network.

Head, worker(s) and the notebook client each run from the cell's images. Nothing is
published on the host: the client reaches the head by its network alias. Every object
carries the run-id label and is removed on exit, pass or fail.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from docker.errors import DockerException
from docker.types import DeviceRequest
from testcontainers.core.config import testcontainers_config as tc_config
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

from harness import interrupts, labels
from harness.backends import (
    JUPYTER_TOKEN_PATH,
    RAY_LOGS,
    TOKEN_PATH,
    Backend,
    Cluster,
    ClusterStartFailed,
)
from harness.engine import Engine
from harness.errors import EngineError, HarnessError
from harness.inside import QEMU_SHIM_SOURCE
from harness.matrix import Cell
from harness.progress import log
from harness.timeouts import Timeouts

HEAD_ALIAS = "ray-head"
QEMU_SHIM_DIR = "/run/raycompat/qemu"  # sitecustomize.py of an emulated cell's containers
# Ray's and Serve's own bounds that are settings, longer under QEMU (everything runs
# 3-10x slower), each because a check met it there (README, "arm64"); in the test
# containers only, never in the images.
EMULATED_RAY_ENV = {
    # an agent or a worker process that registers late is killed
    "RAY_agent_register_timeout_ms": "300000",
    "RAY_worker_register_timeout_seconds": "300",
    # a proxy not ready in 5 s three times in a row is restarted, again and again
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60",
    "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "60",
    # Ray Client drops a client whose SpecificServer is not ready in 30 s (a constant,
    # not a setting, in Ray 2.51.2)
    "RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S": "180",
    # a proxy routes to its own node's replica only if it reports its queue in 0.1 s
    "RAY_SERVE_QUEUE_LENGTH_RESPONSE_DEADLINE_S": "2",
    "RAY_SERVE_MAX_QUEUE_LENGTH_RESPONSE_DEADLINE_S": "10",
}
HEAD_READY = "Ray runtime started"  # what `ray start --head` prints once it serves
TOKEN_AUTH_PROBE = (  # exit 0 when the image's Ray has token authentication, 3 when not
    "import importlib.util, os, sys\n"
    "spec = importlib.util.find_spec('ray')\n"
    "root = os.path.dirname(spec.origin) if spec and spec.origin else ''\n"
    "module = os.path.join(root, '_private', 'authentication', 'authentication_token_setup.py')\n"
    "sys.exit(0 if os.path.exists(module) else 3)\n"
)
WATCH_SECONDS = 2.0


TOKEN_FILE_ENV = "RAYCOMPAT_AUTH_TOKEN_FILE"


def cluster_token() -> str:
    """Ray's token for a test cluster: fresh and random, or read from the file that
    $RAYCOMPAT_AUTH_TOKEN_FILE names (to follow one token through a run's output: the
    end-to-end test searches everything the harness wrote for it)."""
    path = os.environ.get(TOKEN_FILE_ENV)
    if not path:
        return secrets.token_urlsafe(32)
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{TOKEN_FILE_ENV}: {path} cannot be read ({exc})") from None
    if len(token) < 16 or any(c.isspace() for c in token):
        raise HarnessError(
            f"{TOKEN_FILE_ENV}: the token in {path} must be 16+ characters, no spaces"
        )
    return token


class ContainerCluster(Cluster):
    """Context manager: `with ContainerCluster(...) as cluster:` starts, exit removes.

    testcontainers runs the lifecycle (network, containers, the head's wait strategy);
    everything carries the run's labels, so the label sweep removes what a killed run
    left where testcontainers' reaper cannot run (its image is not in the engine)."""

    def __init__(
        self,
        engine: Engine,
        run_id: str,
        cell_id: str,
        images: dict[str, str],
        workers: int = 1,
        log_dir: Path | None = None,
        gpus: bool = False,
        ready_timeout: float = 120,
        auth_token: str | None = None,
        auth_skip: str = "",
        emulated: bool = False,
    ) -> None:
        self.engine = engine
        self.emulated = emulated  # images of a foreign architecture, run under QEMU
        self.run_id = run_id
        self.cell_id = cell_id
        self.images = images
        self.workers = workers
        self.log_dir = log_dir
        self.gpus = gpus  # give head and workers the host GPUs (NVIDIA runtime)
        self.ready_timeout = ready_timeout
        self.auth_token = auth_token  # every container gets it as a file, never in its env
        self.auth_skip = auth_skip
        short = hashlib.sha256(cell_id.encode()).hexdigest()[:6]
        self.prefix = f"rh-{run_id}-{short}"
        self.network = self.prefix
        self.head = f"{self.prefix}-head"
        self.worker_names = [f"{self.prefix}-worker{i}" for i in range(1, workers + 1)]
        self.notebook = f"{self.prefix}-notebook"
        self.head_host = HEAD_ALIAS
        self.jupyter_token = secrets.token_hex(16)
        self.labels = {labels.MANAGED: "cluster", labels.RUN: run_id, labels.CELL: cell_id}
        self._net: Network | None = None
        self._containers: list[DockerContainer] = []
        # A watchdog marks node containers that die and cancels the exec in flight.
        self.dead: dict[str, str] = {}
        self.cancel = threading.Event()
        self._stop_watch = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)

    # --- lifecycle -----------------------------------------------------------------------

    def _container(
        self,
        name: str,
        image: str,
        alias: str | None = None,
        env: dict[str, str] | None = None,
        gpus: bool = False,
        **kwargs: Any,
    ) -> DockerContainer:
        assert self._net is not None
        self.engine.guard(f"starting {name}")  # an interrupted run starts nothing more
        extra: dict[str, Any] = {"shm_size": "1g", "init": True, "labels": dict(self.labels)}
        if gpus:
            extra["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
        env = dict(env or {})
        if self.auth_token:
            env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=TOKEN_PATH)
        container = DockerContainer(
            image,
            name=name,
            env=env,
            network=self._net,
            network_aliases=[alias] if alias else None,
            hostname=name,
            **extra,
            **kwargs,
        )
        if self.auth_token:
            container.with_copy_into_container(self.auth_token.encode(), TOKEN_PATH, 0o444)
        if self.emulated:  # Ray's raylet discovery under QEMU (harness/inside/qemu_shim.py)
            container.with_env("PYTHONPATH", QEMU_SHIM_DIR)
            for key, value in EMULATED_RAY_ENV.items():
                container.with_env(key, value)
            container.with_copy_into_container(
                QEMU_SHIM_SOURCE.encode(), f"{QEMU_SHIM_DIR}/sitecustomize.py", 0o444
            )
        self._containers.append(container)
        return container

    def start(self) -> None:
        clients = ", notebook" if "notebook" in self.images else ""
        log(f"{self.cell_id}: starting {self.prefix}: head, {self.workers} worker(s){clients}")
        use_reaper(self.engine)
        self._net = Network(docker_network_kw={"labels": dict(self.labels)})
        self._net.name = self.network
        # each object is made whole, and none once the run stops (harness.interrupts)
        with interrupts.making(f"the network {self.network}"):
            self._net.create()
        head = self._container(self.head, self.images["head"], alias=HEAD_ALIAS, gpus=self.gpus)
        with interrupts.making(self.head):
            head.start()
        # Everything starts at once: a worker waits for the head's GCS port by itself (its
        # image's command), and the notebook's Jupyter has no need of Ray to start.
        for name in self.worker_names:
            env = {"RAY_HEAD_ADDRESS": f"{HEAD_ALIAS}:6379"}
            worker = self._container(name, self.images["worker"], env=env, gpus=self.gpus)
            with interrupts.making(name):
                worker.start()
        if "notebook" in self.images:  # a grid brings its own clients instead
            env = {"JUPYTER_TOKEN_FILE": JUPYTER_TOKEN_PATH}
            notebook = self._container(self.notebook, self.images["notebook"], env=env)
            notebook.with_copy_into_container(
                self.jupyter_token.encode(), JUPYTER_TOKEN_PATH, 0o444
            )
            with interrupts.making(self.notebook):
                notebook.start()
        ready = LogMessageWaitStrategy(HEAD_READY)
        ready.with_startup_timeout(int(self.ready_timeout)).with_poll_interval(0.2)
        ready.wait_until_ready(head)

    def _client_names(self) -> list[str]:
        return [self.notebook] if "notebook" in self.images else []

    def add_client(self, image: str, suffix: str) -> str:
        """Another client container (idle) on this cluster's network; removed with it."""
        name = f"{self.prefix}-client-{suffix}"
        client = self._container(name, image, entrypoint=["sleep"], command=["infinity"])
        try:
            with interrupts.making(name):
                client.start()
        except Exception as exc:
            raise EngineError(f"starting client {name}: {exc}") from None
        return name

    def add_kubeflow_notebook(self, image: str, prefix: str) -> str:
        name = f"{self.prefix}-kubeflow"
        # An empty PVC as Kubeflow gives it (fsGroup users): a labelled volume, made
        # 1000:100 and setgid by a throwaway root container, so no host directory needs
        # chown (which only root could do). `nocopy`: the image's /home/jovyan is not
        # copied into it, it stays empty.
        home = self.engine.owned_volume(
            f"{name}-home", image, owner="1000:100", mode="2775", labels_=self.labels
        )
        container = self._container(name, image, env={"NB_PREFIX": prefix})
        container.with_volume_mapping(home, "/home/jovyan", "rw,nocopy")
        try:
            with interrupts.making(name):
                container.start()
        except Exception as exc:
            raise EngineError(f"starting {name}: {exc}") from None
        return name

    def remove(self, container: str) -> None:
        self.engine.remove("container", container)

    def published_ports(self) -> dict[str, list[str]]:
        """Host port bindings of every container of this cluster (should be none)."""
        out: dict[str, list[str]] = {}
        for name in [*self.node_containers(), *self._client_names()]:
            info = self.engine.inspect("container", name)
            if info is None:  # no evidence is no pass
                raise EngineError(f"container {name} could not be inspected")
            docs = (
                (info.get("HostConfig") or {}).get("PortBindings") or {},
                (info.get("NetworkSettings") or {}).get("Ports") or {},
            )
            found = [
                f"{b.get('HostIp') or '0.0.0.0'}:{b.get('HostPort')}->{port}"
                for doc in docs
                for port, binds in doc.items()
                for b in binds or []
            ]
            out[name] = sorted(set(found))
        return out

    def node_containers(self) -> list[str]:
        return [self.head, *self.worker_names]

    def node_hosts(self) -> list[str]:
        return [self.head_host, *self.worker_names]  # container names resolve on the network

    def save_logs(self) -> dict[str, str]:
        """Write every container's log to log_dir; return their tails for the report."""
        tails: dict[str, str] = {}
        for name in [*self.node_containers(), *self._client_names()]:
            text = self.engine.logs(name, tail=400)
            role = name.rsplit("-", 1)[-1]
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                (self.log_dir / f"{role}.log").write_text(text)
            tails[role] = "\n".join(text.strip().splitlines()[-15:])
        return tails

    def save_ray_logs(self, dest: Path) -> list[str]:
        """Copy Ray's session logs out of every node (and the notebook, when it joined as a
        driver's node) into dest/<role>/; the roles copied."""
        saved = []
        for name in [*self.node_containers(), *self._client_names()]:
            role = name.rsplit("-", 1)[-1]
            dest.mkdir(parents=True, exist_ok=True)
            if self.engine.copy_out(name, RAY_LOGS, dest / role):
                saved.append(role)
        return saved

    def stop(self) -> None:
        stopped = 0
        for container in self._containers:
            with contextlib.suppress(Exception):  # gone already; the sweep below is the net
                container.stop()
                stopped += 1
        self._containers.clear()
        if self._net is not None:
            with contextlib.suppress(Exception):
                self._net.remove()
            self._net = None
        counts = self.engine.remove_labelled({labels.RUN: self.run_id, labels.CELL: self.cell_id})
        log(
            f"{self.cell_id}: removed {stopped + counts.get('container', 0)} containers, "
            "the network"
        )

    def __enter__(self) -> ContainerCluster:
        try:
            self.start()
        except (EngineError, DockerException, TimeoutError, RuntimeError) as exc:
            failed = self.start_failed(" ".join(str(exc).split())[:600])
            self.stop()
            raise failed from None
        except BaseException:
            self.stop()
            raise
        self._watcher.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop_watch.set()
        try:
            if self.log_dir is not None:
                self.save_logs()
        finally:
            self.stop()

    # --- watching the nodes ---------------------------------------------------------------

    def _poll_nodes(self) -> None:
        for name in self.node_containers():
            if name in self.dead:
                continue
            info = self.engine.inspect("container", name)
            if info is None:
                self.dead[name] = "disappeared (container removed)"
                continue
            state = info.get("State") or {}
            if not state.get("Running"):
                why = f"exited with code {state.get('ExitCode')}"
                self.dead[name] = why + (" (OOM-killed)" if state.get("OOMKilled") else "")
        if self.dead:
            self.cancel.set()

    def _watch(self) -> None:
        while not self._stop_watch.wait(WATCH_SECONDS):
            try:
                self._poll_nodes()
            except EngineError:
                continue

    def dead_nodes(self) -> dict[str, str]:
        """Node containers that stopped during the test (name -> why), checked just now."""
        self._poll_nodes()
        return dict(self.dead)

    # --- running things inside ------------------------------------------------------------

    def exec(
        self,
        container: str,
        command: list[str],
        timeout: float = 120,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> tuple[int, str, str]:
        try:
            r = self.engine.exec(
                container, command, timeout=timeout, input=input, env=env, cancel=self.cancel
            )
        except EngineError as exc:
            return 125, "", str(exc)
        return r.returncode, r.stdout, r.stderr


def use_reaper(engine: Engine) -> None:
    """testcontainers' reaper (Ryuk) removes a killed run's containers, but it is an image
    of its own: use it when the engine has it, else fall back on the label sweep (`clean`)
    instead of failing on a pull. An explicit TESTCONTAINERS_RYUK_DISABLED wins."""
    if os.environ.get("TESTCONTAINERS_RYUK_DISABLED") is not None:
        return
    tc_config.ryuk_disabled = engine.inspect("image", tc_config.ryuk_image) is None


class ContainersBackend(Backend):
    """Clusters as plain containers in the local engine; nothing to set up or load."""

    def __init__(self, engine: Engine, run_id: str) -> None:
        self.engine = engine
        self.run_id = run_id
        self._token_auth: dict[str, bool] = {}

    def token_auth(self, image: str) -> bool:
        """Whether the Ray in `image` has token authentication (RAY_AUTH_MODE=token): its
        package carries Ray's authentication module. Asked once per image."""
        if image not in self._token_auth:
            try:
                r = self.engine.run_once(image, ["-c", TOKEN_AUTH_PROBE], entrypoint=["python"])
            except EngineError as exc:  # e.g. the engine cannot start the image at all
                raise ClusterStartFailed(f"{image}: {exc}") from None
            if r.returncode not in (0, 3):  # could not tell: never guess "no auth"
                why = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1][:300]
                raise ClusterStartFailed(f"cannot tell whether {image} has token auth: {why}")
            self._token_auth[image] = r.returncode == 0
        return self._token_auth[image]

    def cluster(
        self,
        cell: Cell,
        images: dict[str, str],
        log_dir: Path,
        waits: Timeouts,
        *,
        name: str = "",
        client: bool = True,
    ) -> ContainerCluster:
        nodes = images if client else {r: i for r, i in images.items() if r != "notebook"}
        gpus = cell.variant == "gpu" and self.engine.nvidia_runtime()
        token = cluster_token() if self.token_auth(images["head"]) else None
        return ContainerCluster(
            self.engine,
            self.run_id,
            name or cell.id,
            nodes,
            log_dir=log_dir,
            gpus=gpus,
            ready_timeout=waits.ready,
            auth_token=token,
            auth_skip="" if token else f"Ray {cell.ray} has no token authentication",
            emulated=not cell.native,
        )
