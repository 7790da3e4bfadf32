"""Kubernetes manifests for a cell's images, and their offline validation.

Two shapes: a KubeRay `RayCluster` (what operators deploy; shape after KubeRay's samples:
ports 6379/8265/10001, resources, `rayVersion`) and, where KubeRay is not installed, plain
Deployments and a Service the harness generates. Built-in kinds are validated with
kubernetes-validate; `RayCluster` against the structural schema kept in
`assets/raycluster.v1.schema.json` (source noted there), its pod templates as core/v1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import jsonschema
import kubernetes_validate

from harness import pss
from harness.matrix import Cell

K8S_VERSION = "1.32.0"  # schemas kubernetes-validate checks built-in kinds against
HEAD_PORTS = (("gcs-server", 6379), ("dashboard", 8265), ("client", 10001))
Manifest = dict[str, Any]


def name_for(cell: Cell) -> str:
    """A DNS-1123 name for the cell: raycompat-2-60-0-py3-11-2-cpu."""
    return "raycompat-" + re.sub(r"[^a-z0-9]+", "-", f"{cell.ray}-py{cell.python}-{cell.variant}")


def _labels(cell: Cell, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "ray",
        "app.kubernetes.io/instance": name_for(cell),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "raycompat",
    }


def _resources(cpu: str, memory: str, gpu: bool) -> dict[str, Any]:
    limits: dict[str, str] = {"cpu": cpu, "memory": memory}
    if gpu:
        limits["nvidia.com/gpu"] = "1"
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": limits}


def _container(
    name: str,
    image: str,
    cpu: str,
    memory: str,
    gpu: bool = False,
    ports: Sequence[tuple[str, int]] = (),
    env: Mapping[str, str] | None = None,
    pull: str = "IfNotPresent",
) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": pull,
        "resources": _resources(cpu, memory, gpu),
        "securityContext": {  # the restricted Pod Security Standard (see pss.py)
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if ports:
        c["ports"] = [{"name": n, "containerPort": p} for n, p in ports]
    if env:
        c["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return c


def _pod_spec(containers: list[dict[str, Any]]) -> dict[str, Any]:
    # /dev/shm for Ray's object store, as in KubeRay's samples.
    for c in containers:
        c["volumeMounts"] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    return {
        "containers": containers,
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory"}}],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def raycluster(
    cell: Cell,
    images: Mapping[str, str],
    *,
    workers: int = 1,
    namespace: str | None = None,
    pull: str = "IfNotPresent",
    gpu_e2e: str = "",
) -> Manifest:
    """A KubeRay RayCluster for the cell; `images` maps role -> image reference (by digest
    when pushed). The notebook image is noted in an annotation: it is the client. A gpu
    cell says in `raycompat.io/gpu-e2e` whether its images were run on a GPU."""
    gpu = cell.variant == "gpu"
    meta: dict[str, Any] = {
        "name": name_for(cell),
        "labels": _labels(cell, "cluster"),
        "annotations": {
            "raycompat.io/cell": cell.id,
            "raycompat.io/python": cell.python,
            "raycompat.io/notebook-image": images["notebook"],
            **({"raycompat.io/gpu-e2e": gpu_e2e} if gpu_e2e else {}),
        },
    }
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": meta,
        "spec": {
            "rayVersion": cell.ray,
            "headGroupSpec": {
                "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "1"},
                "template": {
                    "metadata": {"labels": _labels(cell, "head")},
                    "spec": _pod_spec(
                        [
                            _container(
                                "ray-head", images["head"], "1", "2Gi", False, HEAD_PORTS, pull=pull
                            )
                        ]
                    ),
                },
            },
            "workerGroupSpecs": [
                {
                    "groupName": "workers",
                    "replicas": workers,
                    "minReplicas": workers,
                    "maxReplicas": max(workers, 4),
                    "rayStartParams": {"num-cpus": "1"},
                    "template": {
                        "metadata": {"labels": _labels(cell, "worker")},
                        "spec": _pod_spec(
                            [_container("ray-worker", images["worker"], "1", "2Gi", gpu, pull=pull)]
                        ),
                    },
                }
            ],
        },
    }


def plain(
    cell: Cell,
    images: Mapping[str, str],
    *,
    workers: int = 1,
    namespace: str | None = None,
    pull: str = "IfNotPresent",
    head_service: str | None = None,
) -> list[Manifest]:
    """Without KubeRay: head Deployment + Service, worker Deployment (the images' own
    entrypoints start Ray; workers find the head through RAY_HEAD_ADDRESS)."""
    name = name_for(cell)
    gpu = cell.variant == "gpu"

    def meta(suffix: str, component: str) -> dict[str, Any]:
        m: dict[str, Any] = {"name": f"{name}-{suffix}", "labels": _labels(cell, component)}
        if namespace:
            m["namespace"] = namespace
        return m

    def deployment(suffix: str, component: str, replicas: int, c: dict[str, Any]) -> Manifest:
        labels = _labels(cell, component)
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(suffix, component),
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": _pod_spec([c])},
            },
        }

    head_service = head_service or f"{name}-head"
    service_meta = meta("head", "head")
    service_meta["name"] = head_service
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": service_meta,
            "spec": {
                "selector": _labels(cell, "head"),
                "ports": [{"name": n, "port": p, "targetPort": p} for n, p in HEAD_PORTS],
            },
        },
        deployment(
            "head",
            "head",
            1,
            _container("ray-head", images["head"], "1", "2Gi", False, HEAD_PORTS, pull=pull),
        ),
        deployment(
            "worker",
            "worker",
            workers,
            _container(
                "ray-worker",
                images["worker"],
                "1",
                "2Gi",
                gpu,
                env={"RAY_HEAD_ADDRESS": f"{head_service}:6379"},
                pull=pull,
            ),
        ),
    ]


def notebook_pod(
    cell: Cell, image: str, *, namespace: str | None = None, pull: str = "IfNotPresent"
) -> Manifest:
    """The notebook image as an idle client Pod; the harness execs its probe in it."""
    meta: dict[str, Any] = {
        "name": f"{name_for(cell)}-notebook",
        "labels": _labels(cell, "notebook"),
    }
    if namespace:
        meta["namespace"] = namespace
    c = _container("notebook", image, "500m", "2Gi", pull=pull)
    c["command"] = ["sleep", "infinity"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {**_pod_spec([c]), "restartPolicy": "Never"},
    }


def vertex(cell: Cell, images: Mapping[str, str], gpu_e2e: str = "") -> dict[str, Any]:
    """Image references for a Ray on Vertex AI cluster with custom images
    (`vertex_ray.Resources(custom_image=...)` for the head and worker node types)."""
    return {
        "cell": cell.id,
        "ray_version": cell.ray,
        "python_version": cell.python,
        **({"gpu_e2e": gpu_e2e} if gpu_e2e else {}),
        "head_node_type": {"custom_image": images["head"]},
        "worker_node_types": [{"custom_image": images["worker"]}],
        "notebook_image": images["notebook"],
    }


# --- validation ---------------------------------------------------------------------------


def _schema() -> dict[str, Any]:
    text = resources.files("harness").joinpath("assets/raycluster.v1.schema.json").read_text()
    doc: dict[str, Any] = json.loads(text)
    return doc


def _builtin(obj: Manifest, where: str) -> list[str]:
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = "/".join(str(p) for p in exc.path)
        return [f"{where}: {path or '(root)'}: {exc.message}"]
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as exc:
        return [f"{where}: no schema to validate against: {exc}"]
    return []


def pod_specs(obj: Manifest) -> list[tuple[str, Mapping[str, Any]]]:
    """Every pod spec a manifest makes pods from (a Pod's own, a template's)."""
    spec = obj.get("spec") or {}
    kind = obj.get("kind")
    if kind == "Pod":
        return [("spec", spec)]
    if kind in ("Deployment", "StatefulSet", "Job", "DaemonSet", "ReplicaSet"):
        return [("spec/template/spec", (spec.get("template") or {}).get("spec") or {})]
    if kind == "RayCluster":
        groups = [("headGroupSpec", spec.get("headGroupSpec") or {})] + [
            (f"workerGroupSpecs/{i}", g) for i, g in enumerate(spec.get("workerGroupSpecs") or [])
        ]
        return [
            (f"{path}/template/spec", (g.get("template") or {}).get("spec") or {})
            for path, g in groups
        ]
    return []


def validate(obj: Manifest) -> list[str]:
    """Problems with a manifest ([] when valid): its schema, and every pod spec it makes
    pods from against the restricted Pod Security Standard."""
    kind = obj.get("kind", "?")
    name = (obj.get("metadata") or {}).get("name", "?")
    where = f"{kind}/{name}"
    admitted = [
        p for path, spec in pod_specs(obj) for p in pss.restricted(spec, f"{where}: {path}")
    ]
    if kind != "RayCluster":
        return _builtin(obj, where) + admitted
    errors = [
        f"{where}: {'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in sorted(jsonschema.Draft202012Validator(_schema()).iter_errors(obj), key=str)
    ]
    spec = obj.get("spec") or {}
    groups = [("headGroupSpec", spec.get("headGroupSpec") or {})] + [
        (f"workerGroupSpecs/{i}", g) for i, g in enumerate(spec.get("workerGroupSpecs") or [])
    ]
    for path, group in groups:
        template = group.get("template")
        if isinstance(template, dict):
            wrapped = {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": {"name": "template"},
                "template": template,
            }
            errors += _builtin(wrapped, f"{where}: {path}/template")
    return errors + admitted
