"""A Ray cluster for one cell as plain containers on a private Docker network.

Head, worker(s) and the notebook client each run from the cell's images. Nothing is
published on the host: the client reaches the head by its network alias. Every object
carries the run-id label and is removed on exit, pass or fail.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import threading
from pathlib import Path
from types import TracebackType

from harness import labels
from harness.backends import RAY_LOGS, Backend, Cluster, ClusterStartFailed
from harness.engine import Engine
from harness.errors import EngineError
from harness.matrix import Cell
from harness.progress import log
from harness.timeouts import Timeouts

HEAD_ALIAS = "ray-head"
WATCH_SECONDS = 2.0


class ContainerCluster(Cluster):
    """Context manager: `with ContainerCluster(...) as cluster:` starts, exit removes."""

    def __init__(
        self,
        engine: Engine,
        run_id: str,
        cell_id: str,
        images: dict[str, str],
        workers: int = 1,
        log_dir: Path | None = None,
        gpus: bool = False,
    ) -> None:
        self.engine = engine
        self.run_id = run_id
        self.cell_id = cell_id
        self.images = images
        self.workers = workers
        self.log_dir = log_dir
        self.gpus = gpus  # give head and workers the host GPUs (NVIDIA runtime)
        short = hashlib.sha256(cell_id.encode()).hexdigest()[:6]
        self.prefix = f"rh-{run_id}-{short}"
        self.network = self.prefix
        self.head = f"{self.prefix}-head"
        self.worker_names = [f"{self.prefix}-worker{i}" for i in range(1, workers + 1)]
        self.notebook = f"{self.prefix}-notebook"
        self.head_host = HEAD_ALIAS
        self.jupyter_token = secrets.token_hex(16)
        self.labels = {labels.MANAGED: "cluster", labels.RUN: run_id, labels.CELL: cell_id}
        # A watchdog marks node containers that die and cancels the probe in flight.
        self.dead: dict[str, str] = {}
        self.cancel = threading.Event()
        self._stop_watch = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)

    # --- lifecycle -----------------------------------------------------------------------

    def _label_args(self) -> list[str]:
        return [arg for k, v in self.labels.items() for arg in ("--label", f"{k}={v}")]

    def _run(
        self,
        name: str,
        image: str,
        alias: str | None = None,
        env: dict[str, str] | None = None,
        gpus: bool = False,
    ) -> None:
        args = [
            "run",
            "-d",
            "--name",
            name,
            "--hostname",
            name,
            "--network",
            self.network,
            "--shm-size",
            "1g",
            "--init",
            *self._label_args(),
        ]
        if alias:
            args += ["--network-alias", alias]
        if gpus:
            args += ["--gpus", "all"]
        for k, v in (env or {}).items():
            args += ["--env", f"{k}={v}"]
        self.engine.run([*args, image], timeout=60)

    def start(self) -> None:
        clients = ", notebook" if "notebook" in self.images else ""
        log(f"{self.cell_id}: starting {self.prefix}: head, {self.workers} worker(s){clients}")
        self.engine.run(["network", "create", *self._label_args(), self.network], timeout=60)
        self._run(self.head, self.images["head"], alias=HEAD_ALIAS, gpus=self.gpus)
        for name in self.worker_names:
            self._run(
                name,
                self.images["worker"],
                env={"RAY_HEAD_ADDRESS": f"{HEAD_ALIAS}:6379"},
                gpus=self.gpus,
            )
        if "notebook" in self.images:  # a grid brings its own clients instead
            self._run(
                self.notebook, self.images["notebook"], env={"JUPYTER_TOKEN": self.jupyter_token}
            )

    def _client_names(self) -> list[str]:
        return [self.notebook] if "notebook" in self.images else []

    def add_client(self, image: str, suffix: str) -> str:
        """Another client container (idle) on this cluster's network; removed with it."""
        name = f"{self.prefix}-client-{suffix}"
        args = ["run", "-d", "--name", name, "--hostname", name, "--network", self.network]
        args += ["--init", *self._label_args(), "--entrypoint", "sleep", image, "infinity"]
        self.engine.run(args, timeout=60)
        return name

    def remove(self, container: str) -> None:
        self.engine.run(["rm", "-f", container], timeout=60, check=False)

    def published_ports(self) -> dict[str, list[str]]:
        """Host port bindings of every container of this cluster (should be none)."""
        names = [*self.node_containers(), *self._client_names()]
        r = self.engine.run(
            [
                "inspect",
                "-f",
                "{{.Name}} {{json .HostConfig.PortBindings}} {{json .NetworkSettings.Ports}}",
                *names,
            ],
            timeout=30,
        )
        out: dict[str, list[str]] = {}
        for line in r.stdout.splitlines():
            name, bindings, ports = line.split(" ", 2)
            found = []
            for doc in (json.loads(bindings) or {}, json.loads(ports) or {}):
                for port, binds in doc.items():
                    for b in binds or []:
                        found.append(f"{b.get('HostIp') or '0.0.0.0'}:{b.get('HostPort')}->{port}")
            out[name.lstrip("/")] = sorted(set(found))
        return out

    def node_containers(self) -> list[str]:
        return [self.head, *self.worker_names]

    def save_logs(self) -> dict[str, str]:
        """Write every container's log to log_dir; return their tails for the report."""
        tails: dict[str, str] = {}
        for name in [*self.node_containers(), *self._client_names()]:
            r = self.engine.run(["logs", "--tail", "400", name], timeout=30, check=False)
            text = r.stdout + r.stderr
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
            target = dest / role
            shutil.rmtree(target, ignore_errors=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            r = self.engine.run(["cp", f"{name}:{RAY_LOGS}", str(target)], timeout=120, check=False)
            if r.returncode == 0:
                saved.append(role)
        return saved

    def stop(self) -> None:
        counts = self.engine.remove_labelled({labels.RUN: self.run_id, labels.CELL: self.cell_id})
        log(
            f"{self.cell_id}: removed {counts.get('container', 0)} containers, "
            f"{counts.get('network', 0)} network"
        )

    def __enter__(self) -> ContainerCluster:
        try:
            self.start()
        except EngineError as exc:
            self.stop()
            raise ClusterStartFailed(f"{self.cell_id}: {exc}") from None
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
        names = self.node_containers()
        r = self.engine.run(
            [
                "inspect",
                "-f",
                "{{.Name}} {{.State.Running}} {{.State.ExitCode}} {{.State.OOMKilled}}",
                *names,
            ],
            timeout=20,
            check=False,
        )
        seen = set()
        for line in r.stdout.splitlines():
            name, running, code, oom = [*line.strip().lstrip("/").split(), "", "", ""][:4]
            seen.add(name)
            if running != "true" and name not in self.dead:
                why = f"exited with code {code}" + (" (OOM-killed)" if oom == "true" else "")
                self.dead[name] = why
        for name in names:
            if name not in seen and name not in self.dead:
                self.dead[name] = "disappeared (container removed)"
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
        args = ["exec", "-i"] if input is not None else ["exec"]
        for k, v in (env or {}).items():
            args += ["--env", f"{k}={v}"]
        try:
            r = self.engine.run(
                [*args, container, *command],
                timeout=timeout,
                check=False,
                input=input,
                cancel=self.cancel,
            )
        except EngineError as exc:
            return 124, "", str(exc)
        return r.returncode, r.stdout, r.stderr


class ContainersBackend(Backend):
    """Clusters as plain containers in the local engine; nothing to set up or load."""

    def __init__(self, engine: Engine, run_id: str) -> None:
        self.engine = engine
        self.run_id = run_id

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
        return ContainerCluster(
            self.engine, self.run_id, name or cell.id, nodes, log_dir=log_dir, gpus=gpus
        )
