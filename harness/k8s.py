"""Kubernetes manifests for a cell's images, and their offline validation.

KubeRay's kinds (what operators deploy; shape after KubeRay's samples: ports
6379/8265/10001, resources, `rayVersion`): a `RayCluster`, a parity `RayJob` and a
`RayService` running the workload checks' Serve application; and, where KubeRay is not
installed, plain Deployments and a Service the harness generates. Built-in kinds are
validated with kubernetes-validate; KubeRay's against the structural schemas kept in
`assets/` (source and KubeRay version noted there), their pod templates as core/v1.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import yaml

from harness import pss
from harness.inside.probe import SERVE_APP, SERVE_APP_SOURCE, SERVE_MODULE, SERVE_PORT
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


# The RayJob's entrypoint: the job's driver and a task pinned to every node that can run
# one report Python micro, Ray version and commit; all must be the cell's. Exit 1 if not.
PARITY_ENTRYPOINT = """import sys, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as Pin
ray.init()
def facts():
    return ("%d.%d.%d" % sys.version_info[:3], ray.__version__, ray.__commit__)
remote_facts = ray.remote(num_cpus=0.1)(facts)
me = facts()
nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]
got = ray.get([remote_facts.options(scheduling_strategy=Pin(node_id=n, soft=False)).remote()
               for n in nodes], timeout=300)
bad = [g for g in got if g != me] + ([] if me[:2] == EXPECTED else [me])
print("RAYCOMPAT_PARITY", me, len(got), "node(s)", "OK" if not bad else bad)
sys.exit(1 if bad else 0)
"""


def rayjob(
    cell: Cell,
    images: Mapping[str, str],
    *,
    namespace: str | None = None,
    pull: str = "IfNotPresent",
    gpu_e2e: str = "",
) -> Manifest:
    """A KubeRay RayJob that checks the cell's parity on a cluster of its own: the
    RayCluster spec of `raycluster`, an entrypoint that compares the driver and every node
    with the cell, and a submitter pod on the cell's head image (as KubeRay defaults to);
    the cluster is deleted once the job finishes."""
    cluster = raycluster(cell, images, namespace=namespace, pull=pull, gpu_e2e=gpu_e2e)
    meta = {**cluster["metadata"], "name": f"{name_for(cell)}-parity"}
    meta["labels"] = _labels(cell, "job")
    expected = f'("{cell.python}", "{cell.ray}")'  # double quotes: the shell's are single
    script = PARITY_ENTRYPOINT.replace("EXPECTED", expected)
    submitter = _container("ray-job-submitter", images["head"], "500m", "1Gi", pull=pull)
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": meta,
        "spec": {
            "entrypoint": f"python -c '{script}'",
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": 300,
            "activeDeadlineSeconds": 1800,
            "rayClusterSpec": cluster["spec"],
            "submitterPodTemplate": {
                "metadata": {"labels": _labels(cell, "submitter")},
                "spec": {**_pod_spec([submitter]), "restartPolicy": "Never"},
            },
        },
    }


SERVE_DIR = "/opt/raycompat/serve"  # where a RayService's pods mount the application


def serve_config() -> dict[str, Any]:
    """The RayService's `serveConfigV2` (Ray Serve's config file, ServeDeploySchema): the
    workload checks' application, imported from the ConfigMap every node mounts at
    SERVE_DIR (its runtime_env puts that directory on the replicas' PYTHONPATH)."""
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": SERVE_PORT},
        "applications": [
            {
                "name": SERVE_APP,
                "route_prefix": f"/{SERVE_APP}",
                "import_path": f"{SERVE_MODULE}:app",
                "runtime_env": {"env_vars": {"PYTHONPATH": SERVE_DIR}},
            }
        ],
    }


def rayservice(
    cell: Cell,
    images: Mapping[str, str],
    *,
    namespace: str | None = None,
    pull: str = "IfNotPresent",
    gpu_e2e: str = "",
) -> list[Manifest]:
    """A KubeRay RayService serving the workload checks' application (`serve:http`) on the
    cell's cluster, and the ConfigMap that holds the application's module: the images stay
    the cell's, unchanged. KubeRay PUTs `serveConfigV2` to the head's Serve REST API, as
    the end-to-end test does against a real cluster."""
    cluster = raycluster(cell, images, namespace=namespace, pull=pull, gpu_e2e=gpu_e2e)
    name = f"{name_for(cell)}-serve"
    config_meta: dict[str, Any] = {"name": f"{name}-app", "labels": _labels(cell, "serve")}
    if namespace:
        config_meta["namespace"] = namespace
    spec = copy.deepcopy(cluster["spec"])
    for _, template in _groups(spec):
        pod = template["spec"]
        pod["volumes"].append({"name": "serve-app", "configMap": {"name": config_meta["name"]}})
        for c in pod["containers"]:
            c["volumeMounts"].append(
                {"name": "serve-app", "mountPath": SERVE_DIR, "readOnly": True}
            )
            c.setdefault("ports", []).append({"name": "serve", "containerPort": SERVE_PORT})
    meta = {**cluster["metadata"], "name": name, "labels": _labels(cell, "service")}
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": config_meta,
            "data": {f"{SERVE_MODULE}.py": SERVE_APP_SOURCE},
        },
        {
            "apiVersion": "ray.io/v1",
            "kind": "RayService",
            "metadata": meta,
            "spec": {
                "serveConfigV2": yaml.safe_dump(serve_config(), sort_keys=False),
                "rayClusterConfig": spec,
            },
        },
    ]


def serve_config_problems(obj: Manifest) -> list[str]:
    """What is wrong with a RayService's serveConfigV2 that KubeRay would only learn from
    Ray at deploy time: not YAML, no applications, an application without a name, an
    import path or a route."""
    text = (obj.get("spec") or {}).get("serveConfigV2")
    if text is None:
        return ["serveConfigV2: missing (the RayService would deploy nothing)"]
    try:
        doc = yaml.safe_load(text) if isinstance(text, str) else None
    except yaml.YAMLError as exc:
        return [f"serveConfigV2: not YAML: {exc}"]
    apps = doc.get("applications") if isinstance(doc, dict) else None
    if not isinstance(apps, list) or not apps:
        return ["serveConfigV2: no `applications` list"]
    problems = []
    for i, app in enumerate(apps):
        for key in ("name", "import_path", "route_prefix"):
            if not (isinstance(app, dict) and isinstance(app.get(key), str) and app[key]):
                problems.append(f"serveConfigV2: applications/{i}: no {key}")
        path = app.get("import_path") if isinstance(app, dict) else None
        if isinstance(path, str) and not re.fullmatch(r"[\w.]+[:.]\w+", path):
            problems.append(
                f"serveConfigV2: applications/{i}: import_path {path!r} is not module:attribute"
            )
    return problems


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


# The KubeRay releases whose CRDs the schemas below are compared with (tests/unit/
# test_crds.py) and the workflow's kind job applies the rendered objects to: an object
# must be valid, and lose nothing to pruning, on each of them.
KUBERAY_VERSIONS = ("v1.5.1", "v1.7.0")
SCHEMAS = {
    "RayCluster": "raycluster.v1.schema.json",
    "RayJob": "rayjob.v1.schema.json",
    "RayService": "rayservice.v1.schema.json",
}
CLUSTER_SPEC = {"RayJob": "rayClusterSpec", "RayService": "rayClusterConfig"}  # a RayClusterSpec


def _asset(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        resources.files("harness").joinpath(f"assets/{name}").read_text()
    )
    return doc


def _schema(kind: str = "RayCluster") -> dict[str, Any]:
    """The structural schema of a KubeRay kind (a RayJob's and a RayService's cluster is a
    RayCluster spec)."""
    doc = _asset(SCHEMAS[kind])
    if kind in CLUSTER_SPEC:
        doc["properties"]["spec"]["properties"][CLUSTER_SPEC[kind]] = _asset(SCHEMAS["RayCluster"])[
            "properties"
        ]["spec"]
    return doc


def _builtin(obj: Manifest, where: str) -> list[str]:
    import kubernetes_validate  # with jsonschema: ~1 s to import, only when validating

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
    if kind in SCHEMAS:
        return [(f"{path}/spec", t.get("spec") or {}) for path, t in _templates(obj)]
    return []


def _templates(obj: Manifest) -> list[tuple[str, dict[str, Any]]]:
    """The pod templates of a KubeRay object (path in the object, template)."""
    spec = obj.get("spec") or {}
    out = []
    prefix = ""
    kind = obj.get("kind", "")
    if kind == "RayJob":
        submitter = spec.get("submitterPodTemplate")
        if isinstance(submitter, dict):
            out.append(("submitterPodTemplate", submitter))
    if kind in CLUSTER_SPEC:
        spec = spec.get(CLUSTER_SPEC[kind]) or {}
        prefix = CLUSTER_SPEC[kind] + "/"
    return out + [(prefix + path, template) for path, template in _groups(spec)]


def _groups(spec: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The pod templates of a RayClusterSpec's head and worker groups (path, template)."""
    groups = [("headGroupSpec", spec.get("headGroupSpec") or {})] + [
        (f"workerGroupSpecs/{i}", g) for i, g in enumerate(spec.get("workerGroupSpecs") or [])
    ]
    out = []
    for path, group in groups:
        template = group.get("template") if isinstance(group, dict) else None
        if isinstance(template, dict):
            out.append((f"{path}/template", template))
    return out


def validate(obj: Manifest) -> list[str]:
    """Problems with a manifest ([] when valid): its schema, and every pod spec it makes
    pods from against the restricted Pod Security Standard."""
    kind = obj.get("kind", "?")
    name = (obj.get("metadata") or {}).get("name", "?")
    where = f"{kind}/{name}"
    admitted = [
        p for path, spec in pod_specs(obj) for p in pss.restricted(spec, f"{where}: {path}")
    ]
    if kind not in SCHEMAS:
        return _builtin(obj, where) + admitted
    import jsonschema  # ~1 s to import (a format checker's grammar): only when validating

    errors = [
        f"{where}: {'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in sorted(jsonschema.Draft202012Validator(_schema(kind)).iter_errors(obj), key=str)
    ]
    for path, template in _templates(obj):
        wrapped = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": "template"},
            "template": template,
        }
        errors += _builtin(wrapped, f"{where}: {path}")
    if kind == "RayService":
        errors += [f"{where}: {p}" for p in serve_config_problems(obj)]
    return errors + admitted
