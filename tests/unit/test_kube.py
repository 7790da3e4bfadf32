"""What the Kubernetes backend deploys: valid manifests, the head reachable as `ray-head`."""

from __future__ import annotations

import pytest

from harness import k8s
from harness.backends import kube
from harness.matrix import BaseSpec, Cell, Variant

CELL = Cell("2.60.0", "3.11.2", Variant.CPU, BaseSpec("debian", "bookworm"))
IMAGES = {
    r: f"localhost/raycompat/ray-{r}:2.60.0-py3.11.2-cpu" for r in ("head", "worker", "notebook")
}


def cluster() -> kube.KubeCluster:
    return kube.KubeCluster(kube.Kubectl("unused"), "r1", CELL, IMAGES, pull="Never")


@pytest.mark.parametrize("kuberay", [False, True], ids=["plain", "kuberay"])
def test_backend_manifests_validate(kuberay: bool) -> None:
    c = cluster()
    docs = c.manifests(kuberay)
    for d in docs:
        assert d["metadata"]["namespace"] == c.namespace
        assert k8s.validate(d) == [], d["kind"]
    pod = docs[-1]
    assert pod["kind"] == "Pod"
    container = pod["spec"]["containers"][0]
    assert "command" not in container  # JupyterLab, the image's own command
    assert container["env"] == [{"name": "JUPYTER_TOKEN", "value": c.jupyter_token}]
    assert container["imagePullPolicy"] == "Never"  # kind: images are loaded, not pulled


def test_plain_backend_names_the_head_service_ray_head() -> None:
    docs = cluster().manifests(False)
    service = next(d for d in docs if d["kind"] == "Service")
    assert service["metadata"]["name"] == "ray-head"
    worker = next(d for d in docs if d["metadata"]["name"].endswith("-worker"))
    env = worker["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "RAY_HEAD_ADDRESS", "value": "ray-head:6379"} in env


def test_namespace_is_dns_safe_and_per_cell() -> None:
    c = cluster()
    other = kube.KubeCluster(
        kube.Kubectl("unused"), "r1", Cell("2.51.2", "3.11.2", Variant.CPU, CELL.base), IMAGES
    )
    assert c.namespace != other.namespace
    assert len(c.namespace) <= 63 and c.namespace == c.namespace.lower()
