"""What the Kubernetes backend deploys: valid manifests, the head reachable as `ray-head`."""

from __future__ import annotations

import json

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
    # the Jupyter token is a file from a Secret: in no env value of the Pod spec
    assert container["env"] == [
        {"name": "JUPYTER_TOKEN_FILE", "value": "/run/raycompat-jupyter/token"}
    ]
    assert c.jupyter_token not in json.dumps(pod)
    [secret] = [d for d in docs if d["kind"] == "Secret"]
    assert secret["stringData"] == {"token": c.jupyter_token}
    volume = {"name": "jupyter-token", "secret": {"secretName": secret["metadata"]["name"]}}
    assert volume in pod["spec"]["volumes"]
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


class AnsweringKubectl(kube.Kubectl):
    """kubectl that answers `get services` with what it is given (no API server)."""

    def __init__(self, rc: int, out: str, err: str = "") -> None:
        super().__init__("unused")
        self.answer = (rc, out, err)

    def run(self, args: list[str], **kwargs: object) -> tuple[int, str, str]:
        return self.answer


@pytest.mark.parametrize(
    ("rc", "out", "err"),
    [
        (1, "", "The connection to the server localhost:8080 was refused"),
        (0, "", ""),
        (0, "not json", ""),
        (0, '{"kind": "List"}', ""),
        (0, '{"items": []}', ""),
    ],
    ids=["kubectl-failed", "empty", "not-json", "no-items", "no-services"],
)
def test_unread_services_are_an_error_not_a_pass(rc: int, out: str, err: str) -> None:
    """`security:no-published-ports` on Kubernetes: a failed or empty list is no evidence."""
    from harness import cluster_checks

    c = kube.KubeCluster(AnsweringKubectl(rc, out, err), "r1", CELL, IMAGES)
    check = cluster_checks.no_published_ports(c.published_ports)
    assert check.status == "error", check.detail
    assert "could not be read" in check.detail


def test_services_read_are_judged() -> None:
    from harness import cluster_checks

    def services(*kinds: str) -> str:
        items = [{"metadata": {"name": f"s{i}"}, "spec": {"type": k}} for i, k in enumerate(kinds)]
        return json.dumps({"items": items})

    ok = kube.KubeCluster(AnsweringKubectl(0, services("ClusterIP")), "r1", CELL, IMAGES)
    assert cluster_checks.no_published_ports(ok.published_ports).status == "passed"
    exposed = kube.KubeCluster(
        AnsweringKubectl(0, services("ClusterIP", "NodePort")), "r1", CELL, IMAGES
    )
    check = cluster_checks.no_published_ports(exposed.published_ports)
    assert check.status == "failed" and "NodePort" in check.detail


def test_the_kubernetes_backend_skips_with_its_own_reasons() -> None:
    c = cluster()
    assert "Kubernetes backend" in c.gpu_skip and "Docker host" not in c.gpu_skip
    assert "Kubernetes backend" in c.auth_skip
