"""Kubernetes manifests for a cell: shape (KubeRay samples) and offline validation."""

from __future__ import annotations

import copy

import pytest
import yaml

from harness import k8s
from harness.matrix import BaseSpec, Cell, Variant

CELL = Cell("2.60.0", "3.11.2", Variant.CPU, BaseSpec("debian", "bookworm"))
GPU = Cell("2.60.0", "3.11.2", Variant.GPU, BaseSpec("debian", "bookworm"), cuda="12.8")
D = "sha256:" + "ab" * 32
IMAGES = {r: f"europe-west4-docker.pkg.dev/p/r/ray-{r}@{D}" for r in ("head", "worker", "notebook")}


def test_name_is_dns_safe() -> None:
    assert k8s.name_for(CELL) == "raycompat-2-60-0-py3-11-2-cpu"


def test_raycluster_follows_kuberay_samples_and_validates() -> None:
    rc = k8s.raycluster(CELL, IMAGES, namespace="ray")
    assert k8s.validate(rc) == []
    assert rc["spec"]["rayVersion"] == "2.60.0"
    head = rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["image"] == IMAGES["head"]
    assert {p["containerPort"] for p in head["ports"]} == {6379, 8265, 10001}
    assert head["resources"]["limits"]["cpu"] == "1"
    worker = rc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert worker["image"] == IMAGES["worker"]
    assert rc["metadata"]["annotations"]["raycompat.io/notebook-image"] == IMAGES["notebook"]


def test_gpu_workers_ask_for_a_gpu() -> None:
    rc = k8s.raycluster(GPU, IMAGES)
    assert k8s.validate(rc) == []
    worker = rc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"


@pytest.mark.parametrize(
    ("mutate", "expect"),
    [
        (lambda rc: rc["spec"].update(rayVerison="2.60.0"), "rayVerison"),
        (lambda rc: rc["spec"]["headGroupSpec"].pop("template"), "template"),
        (lambda rc: rc["spec"]["workerGroupSpecs"][0].pop("groupName"), "groupName"),
        (
            lambda rc: rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0].update(
                imagePullPolicy=3
            ),
            "imagePullPolicy",
        ),
        (
            lambda rc: rc["spec"]["workerGroupSpecs"][0]["template"]["spec"].update(bogus=1),
            "bogus",
        ),
        (lambda rc: rc.update(apiVersion="ray.io/v1alpha1"), "ray.io/v1"),
    ],
    ids=["typo", "no-head-template", "no-group-name", "bad-pod-field-type", "bad-pod-field", "api"],
)
def test_invalid_rayclusters_are_caught(mutate: object, expect: str) -> None:
    rc = copy.deepcopy(k8s.raycluster(CELL, IMAGES))
    mutate(rc)  # type: ignore[operator]
    errors = k8s.validate(rc)
    assert errors and any(expect in e for e in errors), errors


def test_plain_manifests_validate_as_builtin_kinds() -> None:
    docs = k8s.plain(CELL, IMAGES, workers=2, namespace="t")
    assert [d["kind"] for d in docs] == ["Service", "Deployment", "Deployment"]
    for d in [*docs, k8s.notebook_pod(CELL, IMAGES["notebook"], namespace="t")]:
        assert k8s.validate(d) == [], d["kind"]
    worker = docs[2]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "RAY_HEAD_ADDRESS", "value": "raycompat-2-60-0-py3-11-2-cpu-head:6379"} in (
        worker["env"]
    )
    assert docs[2]["spec"]["replicas"] == 2


def test_builtin_validation_catches_errors() -> None:
    pod = k8s.notebook_pod(CELL, IMAGES["notebook"])
    pod["spec"]["containers"][0]["ports"] = "8888"
    assert k8s.validate(pod)


def test_vertex_refs() -> None:
    v = k8s.vertex(CELL, IMAGES)
    assert v["head_node_type"]["custom_image"] == IMAGES["head"]
    assert v["worker_node_types"] == [{"custom_image": IMAGES["worker"]}]


def test_rayjob_runs_parity_on_a_cluster_of_its_own() -> None:
    job = k8s.rayjob(CELL, IMAGES, namespace="ray")
    assert k8s.validate(job) == []
    spec = job["spec"]
    assert spec["rayClusterSpec"] == k8s.raycluster(CELL, IMAGES, namespace="ray")["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    submitter = spec["submitterPodTemplate"]["spec"]
    assert submitter["containers"][0]["image"] == IMAGES["head"]  # as KubeRay defaults to
    assert submitter["restartPolicy"] == "Never"
    entrypoint = spec["entrypoint"]
    assert entrypoint.startswith("python -c '") and entrypoint.endswith("'")
    script = entrypoint[len("python -c '") : -1]
    assert "'" not in script  # the shell quoting holds
    compile(script, "entrypoint", "exec")
    assert 'me[:2] == ("3.11.2", "2.60.0")' in script  # the cell's Python micro and Ray


def test_rayjob_schema_refuses_what_kuberay_would() -> None:
    job = k8s.rayjob(CELL, IMAGES)
    job["spec"]["submissionMode"] = "ShellMode"
    job["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParam"] = {}
    problems = k8s.validate(job)
    assert any("submissionMode" in p for p in problems), problems
    assert any("rayClusterSpec/headGroupSpec" in p and "rayStartParam" in p for p in problems)
    job = k8s.rayjob(CELL, IMAGES)
    job["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["securityContext"] = {}
    assert any("submitterPodTemplate/spec" in p and "restricted" in p for p in k8s.validate(job))


def test_rayservice_serves_the_workload_application_from_a_configmap() -> None:
    config_map, service = k8s.rayservice(CELL, IMAGES, namespace="ray")
    assert k8s.validate(config_map) == [] and k8s.validate(service) == []
    assert config_map["kind"] == "ConfigMap" and service["kind"] == "RayService"
    module = config_map["data"]["raycompat_serve.py"]
    compile(module, "raycompat_serve.py", "exec")  # the probe's own Serve application
    assert "app = Facts.bind()" in module
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    [app] = config["applications"]
    assert app["import_path"] == "raycompat_serve:app" and app["route_prefix"] == "/raycompat"
    assert app["runtime_env"]["env_vars"]["PYTHONPATH"] == k8s.SERVE_DIR
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == CELL.ray
    for _, template in k8s.pod_specs(service):  # every node mounts the module, names Serve's port
        [c] = template["containers"]
        assert {"name": "serve-app", "mountPath": k8s.SERVE_DIR, "readOnly": True} in c[
            "volumeMounts"
        ]
        assert {"name": "serve", "containerPort": 8000} in c["ports"]
        volumes = {v["name"]: v for v in template["volumes"]}
        assert volumes["serve-app"]["configMap"]["name"] == config_map["metadata"]["name"]
    # the images are the cell's: nothing is added to them
    assert [c["image"] for _, t in k8s.pod_specs(service) for c in t["containers"]] == [
        IMAGES["head"],
        IMAGES["worker"],
    ]


@pytest.mark.parametrize(
    ("config", "expect"),
    [
        (None, "serveConfigV2: missing"),
        ("applications: [", "serveConfigV2: not YAML"),
        ("http_options: {}", "no `applications` list"),
        ("applications: [{name: a, route_prefix: /a}]", "applications/0: no import_path"),
        (
            "applications: [{name: a, route_prefix: /a, import_path: 'x y'}]",
            "is not module:attribute",
        ),
    ],
)
def test_a_broken_serve_config_is_refused(config: str | None, expect: str) -> None:
    _, service = k8s.rayservice(CELL, IMAGES)
    if config is None:
        del service["spec"]["serveConfigV2"]
    else:
        service["spec"]["serveConfigV2"] = config
    assert any(expect in p for p in k8s.validate(service)), k8s.validate(service)


def test_rayservice_schema_refuses_what_kuberay_would() -> None:
    _, service = k8s.rayservice(CELL, IMAGES)
    service["spec"]["upgradeStrategy"] = {"type": "Rolling"}
    service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replica"] = 1
    problems = k8s.validate(service)
    assert any("upgradeStrategy" in p for p in problems), problems
    assert any("rayClusterConfig/workerGroupSpecs/0" in p and "replica" in p for p in problems)


def test_each_kuberay_schema_names_the_kuberay_version_it_was_read_from() -> None:
    for kind in k8s.SCHEMAS:
        named = k8s._asset(k8s.SCHEMAS[kind])["x-kuberay-version"]
        assert all(v in named for v in k8s.KUBERAY_VERSIONS), (kind, named)
