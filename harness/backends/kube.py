"""A Ray cluster for one cell in Kubernetes: kind on this machine, or any kube context.

The same interface as ContainerCluster, so verify.py runs the same probe and the same
checks: `probe`/`exec` go through `kubectl exec`. Each cell gets its own namespace,
labelled with the run id, holding a KubeRay `RayCluster` when the CRD is installed or the
harness's plain Deployments and a `ray-head` Service otherwise, plus the notebook Pod.
Deleting the namespace removes everything; a kind cluster the run created is deleted with
the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from harness import children, k8s, labels
from harness.backends import (
    JUPYTER_TOKEN_DIR,
    JUPYTER_TOKEN_PATH,
    NODE_IMAGE_ENV,
    RAY_LOGS,
    Backend,
    Cluster,
)
from harness.engine import Engine
from harness.errors import EngineError, HarnessError
from harness.matrix import Cell
from harness.progress import log
from harness.timeouts import DEFAULT, Timeouts

INSTALL_HINT = "run scripts/setup-engine.sh (installs kubectl and kind)"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise HarnessError(f"`{name}` not found; {INSTALL_HINT}")
    return path


class Kubectl:
    """kubectl bound to one context."""

    def __init__(self, context: str) -> None:
        self.exe = _tool("kubectl")
        self.context = context

    def run(
        self, args: list[str], *, timeout: float = 120, input: str | None = None, check: bool = True
    ) -> tuple[int, str, str]:
        try:
            rc, out, err = children.run(
                [self.exe, "--context", self.context, *args], timeout=timeout, input=input
            )
        except subprocess.TimeoutExpired:
            rc, out, err = 124, "", f"kubectl {' '.join(args[:3])} did not finish in {timeout:.0f}s"
        if check and rc != 0:
            raise HarnessError(f"kubectl {' '.join(args[:3])} failed: {err.strip()[-500:]}")
        return rc, out, err

    def apply(self, docs: list[dict[str, Any]]) -> None:
        self.run(["apply", "-f", "-"], input=yaml.safe_dump_all(docs), timeout=120)

    def has_kuberay(self) -> bool:
        rc, _, _ = self.run(["get", "crd", "rayclusters.ray.io"], check=False, timeout=30)
        return rc == 0


def contexts() -> list[str]:
    rc, out, _ = children.run(
        [_tool("kubectl"), "config", "get-contexts", "-o", "name"], timeout=30
    )
    return out.split() if rc == 0 else []


def check_context(context: str) -> None:
    """Exit 2 unless the kube context exists and its API server answers."""
    known = contexts()
    if context not in known:
        listed = ", ".join(known) if known else "none"
        raise HarnessError(
            f"kube context {context!r} does not exist (known: {listed}); check "
            "`kubectl config get-contexts` or omit --kube-context to create a kind cluster"
        )
    rc, _, err = Kubectl(context).run(["version", "-o", "json"], check=False, timeout=30)
    if rc != 0:
        raise HarnessError(f"kube context {context!r} does not answer: {err.strip()[-300:]}")


class KindCluster:
    """A kind cluster this run creates (and deletes), or none when a context is given."""

    def __init__(self, run_id: str, node_image: str | None) -> None:
        self.name = f"raycompat-{run_id}"[:40]
        self.node_image = node_image or os.environ.get(NODE_IMAGE_ENV) or ""
        self.kind = _tool("kind")
        self.created = False

    @property
    def context(self) -> str:
        return f"kind-{self.name}"

    def require_node_image(self, engine: Engine) -> None:
        """kind's node image must already be in the engine: no registry is assumed."""
        if not self.node_image:
            raise HarnessError(
                f"no kind node image: set {NODE_IMAGE_ENV} or --kind-node-image to a "
                "kindest/node image in the local engine (`docker load -i kindest-node.tar` "
                "from an archive, or `docker pull kindest/node:v1.32.2` where a registry "
                "is reachable)"
            )
        if engine.inspect("image", self.node_image) is None:
            raise HarnessError(
                f"kind node image {self.node_image} is not in the local engine; "
                "`docker load -i` it from an archive (or pull it where a registry is reachable)"
            )

    def create(self) -> None:
        log(f"kind: creating cluster {self.name} from {self.node_image}")
        rc, _, err = children.run(
            [
                self.kind,
                "create",
                "cluster",
                "--name",
                self.name,
                "--image",
                self.node_image,
                "--wait",
                "180s",
            ],
            timeout=600,
        )
        self.created = True  # a half-created cluster is deleted too
        if rc != 0:
            raise HarnessError(f"kind create cluster failed: {err.strip()[-600:]}")

    def delete(self) -> None:
        if self.created:
            children.run([self.kind, "delete", "cluster", "--name", self.name], timeout=300)
            log(f"kind: deleted cluster {self.name}")
            self.created = False


class KubeCluster(Cluster):
    """Context manager: a cell's Ray cluster and notebook client in their own namespace."""

    def __init__(
        self,
        kubectl: Kubectl,
        run_id: str,
        cell: Cell,
        images: dict[str, str],
        workers: int = 1,
        log_dir: Path | None = None,
        pull: str = "IfNotPresent",
        ready_timeout: float = DEFAULT.ready,
        client: bool = True,
    ) -> None:
        self.kubectl = kubectl
        self.ready_timeout = ready_timeout  # bounds each wait for pods to be ready
        self.client = client  # start the notebook Pod (the grid brings its own clients)
        self.gpus = False
        self.gpu_skip = (
            "the Kubernetes backend does not request GPUs for its Pods (no nvidia.com/gpu "
            "limits): Ray GPU resources and CUDA_VISIBLE_DEVICES not checked on Kubernetes"
        )
        self.auth_skip = (
            "the Kubernetes backend starts its Ray clusters without token authentication "
            "(no RAY_AUTH_MODE=token Secret rendered yet): token auth is checked on the Docker "
            "backend only"
        )
        self.run_id = run_id
        self.cell = cell
        self.cell_id = cell.id
        self.images = images
        self.workers = workers
        self.log_dir = log_dir
        self.pull = pull
        short = hashlib.sha256(cell.id.encode()).hexdigest()[:6]
        self.namespace = f"rh-{run_id}-{short}"[:63].lower()
        self.jupyter_token = secrets.token_hex(16)
        self.kuberay = False
        self.head = ""
        self.notebook = ""
        self.worker_names: list[str] = []
        self.head_host = "ray-head"
        self.cancel = threading.Event()

    # --- lifecycle -----------------------------------------------------------------------

    def manifests(self, kuberay: bool) -> list[dict[str, Any]]:
        ns = self.namespace
        pods = []
        if self.client:
            pod = k8s.notebook_pod(self.cell, self.images["notebook"], namespace=ns, pull=self.pull)
            container = pod["spec"]["containers"][0]
            container.pop("command")  # JupyterLab, the image's own command
            # the token as a file from a Secret, never a value in the Pod spec
            secret = f"{k8s.name_for(self.cell)}-jupyter"
            pods.append(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": secret, "namespace": ns},
                    "type": "Opaque",
                    "stringData": {"token": self.jupyter_token},
                }
            )
            container["env"] = [{"name": "JUPYTER_TOKEN_FILE", "value": JUPYTER_TOKEN_PATH}]
            container.setdefault("volumeMounts", []).append(
                {"name": "jupyter-token", "mountPath": JUPYTER_TOKEN_DIR, "readOnly": True}
            )
            pod["spec"].setdefault("volumes", []).append(
                {"name": "jupyter-token", "secret": {"secretName": secret}}
            )
            pods.append(pod)
        if kuberay:
            rc = k8s.raycluster(
                self.cell, self.images, workers=self.workers, namespace=ns, pull=self.pull
            )
            return [rc, *pods]
        docs = k8s.plain(
            self.cell,
            self.images,
            workers=self.workers,
            namespace=ns,
            pull=self.pull,
            head_service="ray-head",
        )
        return [*docs, *pods]

    def start(self) -> None:
        self.kuberay = self.kubectl.has_kuberay()
        how = "KubeRay RayCluster" if self.kuberay else "Deployments + Service"
        log(f"{self.cell_id}: namespace {self.namespace} ({how}), {self.workers} worker(s)")
        ns = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": self.namespace, "labels": {labels.RUN: self.run_id}},
        }
        docs = [ns, *self.manifests(self.kuberay)]
        for d in docs:
            problems = k8s.validate(d)
            if problems:
                raise HarnessError(f"generated manifest invalid: {problems[0]}")
        self.kubectl.apply(docs)
        if self.kuberay:
            self.head_host = f"{k8s.name_for(self.cell)}-head-svc"
        # Pods that do not come up are not an exception here: the readiness check then
        # fails like any other check, with the pods' logs attached.
        self.head = next(iter(self._wait_pods("head", 1)), "")
        self.worker_names = self._wait_pods("worker", self.workers)
        if self.client:
            self.notebook = next(iter(self._wait_pods("notebook", 1)), "")

    def add_client(self, image: str, suffix: str) -> str:
        """An idle client Pod of `image` in the cluster's namespace; deleted with it."""
        pod = k8s.notebook_pod(self.cell, image, namespace=self.namespace, pull=self.pull)
        pod["metadata"]["name"] = f"{pod['metadata']['name']}-client-{suffix}"
        component = f"client-{suffix}"
        pod["metadata"]["labels"]["app.kubernetes.io/component"] = component
        self.kubectl.apply([pod])
        name = next(iter(self._wait_pods(component, 1)), "")
        if not name:
            raise HarnessError(f"{self.cell_id}: client pod {component} did not become ready")
        return name

    def remove(self, container: str) -> None:
        self.kubectl.run(
            ["delete", "pod", "-n", self.namespace, container, "--wait=false"],
            check=False,
            timeout=60,
        )

    def _wait_pods(self, component: str, count: int) -> list[str]:
        timeout = self.ready_timeout
        selector = f"app.kubernetes.io/component={component}"
        deadline = time.monotonic() + timeout
        while True:
            _, out, _ = self.kubectl.run(
                ["get", "pods", "-n", self.namespace, "-l", selector, "-o", "json"],
                check=False,
                timeout=60,
            )
            items = json.loads(out or "{}").get("items", [])
            names = sorted(p["metadata"]["name"] for p in items)
            ready = [
                p["metadata"]["name"]
                for p in items
                if p.get("status", {}).get("phase") == "Running"
                and all(c.get("ready") for c in p["status"].get("containerStatuses", []) or [{}])
            ]
            if len(ready) >= count:
                return sorted(ready)[:count]
            if time.monotonic() > deadline:
                log(
                    f"{self.cell_id}: {len(ready)}/{count} {component} pod(s) ready after "
                    f"{timeout:.0f}s in namespace {self.namespace}"
                )
                return names[:count]
            time.sleep(2)

    def stop(self) -> None:
        self.kubectl.run(
            ["delete", "namespace", self.namespace, "--wait=true", "--timeout=180s"],
            check=False,
            timeout=240,
        )
        log(f"{self.cell_id}: deleted namespace {self.namespace}")

    def __enter__(self) -> KubeCluster:
        try:
            self.start()
        except HarnessError as exc:
            failed = self.start_failed(str(exc))
            self.stop()
            raise failed from None
        except BaseException:
            if self.log_dir is not None:
                self.save_logs()
            self.stop()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self.log_dir is not None:
                self.save_logs()
        finally:
            self.stop()

    # --- the interface verify.py uses -----------------------------------------------------

    def node_containers(self) -> list[str]:
        return [self.head, *self.worker_names]

    def published_ports(self) -> dict[str, list[str]]:
        """Services reachable from outside the cluster (should be none: ClusterIP only);
        EngineError when the API server's list cannot be read (no evidence is no pass)."""
        rc, out, err = self.kubectl.run(
            ["get", "services", "-n", self.namespace, "-o", "json"], check=False, timeout=60
        )
        try:
            items = json.loads(out)["items"] if rc == 0 else None
        except (ValueError, KeyError, TypeError):
            items = None
        if not isinstance(items, list) or not items:
            why = (err.strip() or out.strip() or "no answer")[-300:]
            raise EngineError(
                f"the services of namespace {self.namespace} could not be listed "
                f"(kubectl exit {rc}; {why if rc else 'no head Service in the list'})"
            )
        exposed: dict[str, list[str]] = {}
        for s in items:
            kind = s.get("spec", {}).get("type", "ClusterIP")
            if kind != "ClusterIP":
                exposed[s["metadata"]["name"]] = [kind]
        return exposed

    def dead_nodes(self) -> dict[str, str]:
        """Ray node pods that stopped or restarted (name -> why)."""
        dead: dict[str, str] = {}
        for name in self.node_containers():
            if not name:
                continue
            rc, out, _ = self.kubectl.run(
                ["get", "pod", "-n", self.namespace, name, "-o", "json"], check=False, timeout=60
            )
            if rc != 0:
                dead[name] = "is gone"
                continue
            status = json.loads(out).get("status", {})
            restarts = sum(c.get("restartCount", 0) for c in status.get("containerStatuses", []))
            if status.get("phase") != "Running" or restarts:
                dead[name] = f"phase {status.get('phase')}, {restarts} restart(s)"
        return dead

    def save_logs(self) -> dict[str, str]:
        tails: dict[str, str] = {}
        for name in [*self.node_containers(), self.notebook]:
            if not name:
                continue
            _, out, err = self.kubectl.run(
                ["logs", "-n", self.namespace, name, "--tail", "400"], check=False, timeout=60
            )
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                (self.log_dir / f"{name}.log").write_text(out + err)
            tails[name] = (out + err)[-3000:]
        return tails

    def save_ray_logs(self, dest: Path) -> list[str]:
        """Copy Ray's session logs out of every Ray pod into dest/<pod>/ (kubectl cp)."""
        saved = []
        for name in [*self.node_containers(), self.notebook]:
            if not name:
                continue
            dest.mkdir(parents=True, exist_ok=True)
            rc, _, _ = self.kubectl.run(
                ["cp", f"{self.namespace}/{name}:{RAY_LOGS}", str(dest / name)],
                check=False,
                timeout=180,
            )
            if rc == 0:
                saved.append(name)
        return saved

    def exec(
        self,
        container: str,
        command: list[str],
        timeout: float = 120,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> tuple[int, str, str]:
        args = ["exec", "-n", self.namespace]
        args += ["-i", container, "--"] if input is not None else [container, "--"]
        if env:
            command = ["env", *(f"{k}={v}" for k, v in env.items()), *command]
        return self.kubectl.run([*args, *command], timeout=timeout, input=input, check=False)


class KubeBackend(Backend):
    """The run's Kubernetes: a given context, or a kind cluster created (and deleted) here.

    Images reach the cluster by `kind load docker-image` on kind; on any other context the
    cluster pulls them, so they must have been pushed (`nox -s push`) and are deployed by
    digest from build/images.lock.json."""

    def __init__(
        self,
        engine: Engine,
        run_id: str,
        context: str | None,
        node_image: str | None,
        pushed: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.engine = engine
        self.run_id = run_id
        self.given = context
        self.kind: KindCluster | None = None
        self.pushed = pushed or {}
        if context:
            check_context(context)
            self.kubectl = Kubectl(context)
        else:
            self.kind = KindCluster(run_id, node_image)
            self.kind.require_node_image(engine)
            self.kubectl = Kubectl(self.kind.context)

    @property
    def kind_name(self) -> str | None:
        if self.kind is not None:
            return self.kind.name
        if self.given and self.given.startswith("kind-"):
            return self.given[len("kind-") :]
        return None

    def images_for(self, cell: Cell, local: dict[str, str]) -> dict[str, str]:
        """What the cluster runs: the local tags on kind, pushed digests elsewhere."""
        if self.kind_name is not None:
            return local
        refs = self.pushed.get(cell.id) or {}
        missing = [role for role in local if role not in refs]
        if missing:
            raise HarnessError(
                f"{cell.id}: context {self.given!r} is not kind, so it pulls images from a "
                f"registry, and no pushed {', '.join(missing)} image is recorded in "
                "build/images.lock.json; run `nox -s push` first"
            )
        return refs

    def __enter__(self) -> KubeBackend:
        ACTIVE.append(self)
        if self.kind is not None:
            try:
                self.kind.create()
            except BaseException:
                self.close()
                raise
        return self

    def load(self, images: list[str]) -> None:
        name = self.kind_name
        if name is None:
            return
        log(f"kind: loading {len(images)} image(s) into {name}")
        exe = _tool("kind")
        for image in images:
            rc, _, err = children.run(
                [exe, "load", "docker-image", image, "--name", name], timeout=900
            )
            if rc != 0:
                raise HarnessError(f"kind load docker-image {image} failed: {err.strip()[-400:]}")

    def cluster(
        self,
        cell: Cell,
        images: dict[str, str],
        log_dir: Path,
        waits: Timeouts,
        *,
        name: str = "",
        client: bool = True,
    ) -> KubeCluster:
        pull = "Never" if self.kind_name is not None else "IfNotPresent"
        return KubeCluster(
            self.kubectl, self.run_id, cell, images, 1, log_dir, pull, waits.ready, client
        )

    def close(self) -> None:
        """Delete what this run created: its namespaces, and a kind cluster it made."""
        if self in ACTIVE:
            ACTIVE.remove(self)
        if self.kind is not None and self.kind.created:
            self.kind.delete()
            return
        self.kubectl.run(
            ["delete", "namespace", "-l", f"{labels.RUN}={self.run_id}", "--timeout=180s"],
            check=False,
            timeout=240,
        )


ACTIVE: list[KubeBackend] = []


def close_all() -> None:
    """On an interrupt: delete every namespace and kind cluster the run created."""
    for backend in list(ACTIVE):
        backend.close()


def delete_leftover_kind_clusters(keep: Callable[[str], bool] = lambda run_id: False) -> list[str]:
    """kind clusters of runs that are over (named raycompat-<run id>, and `keep(run id)` is
    False); [] without kind."""
    exe = shutil.which("kind")
    if not exe:
        return []
    rc, out, _ = children.run([exe, "get", "clusters"], timeout=60)
    names = [n for n in out.split() if n.startswith("raycompat-")] if rc == 0 else []
    names = [n for n in names if not keep(n[len("raycompat-") :])]
    for name in names:
        children.run([exe, "delete", "cluster", "--name", name], timeout=300)
    return names
