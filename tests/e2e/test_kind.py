"""The Kubernetes backend: the same checks with the cluster in kind.

kind's node image (kindest/node) comes from a registry or an archive the user loads; these
machines reach no registry, so the end-to-end test is skipped here, saying so. The GitHub
workflow's `kind` job pulls the node image and runs it. The refusals run everywhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from harness import k8s, matrix
from harness.backends import NODE_IMAGE_ENV
from harness.engine import Engine
from tests.conftest import ROOT
from tests.e2e.cli import harness

pytestmark = pytest.mark.e2e
ONLY = "ray=2.60.0,python=3.11.2,variant=cpu"
CELL = "ray2.60.0-py3.11.2-cpu"


@pytest.fixture(scope="module")
def built() -> None:
    r = harness("build", "--only", ONLY)
    assert r.returncode == 0, r.stderr[-3000:]


def test_missing_kube_context_is_exit_2(built: None, tmp_path: Path) -> None:
    r = harness(
        "test",
        "--backend",
        "kind",
        "--kube-context",
        "no-such-context",
        "--only",
        ONLY,
        "--build-dir",
        str(tmp_path),
    )
    assert r.returncode == 2, r.stderr[-2000:]
    assert "kube context 'no-such-context' does not exist" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(("command", "output"), [("test", "report.json"), ("grid", "grid.json")])
def test_kind_without_node_image_is_exit_2_before_anything(
    built: None, tmp_path: Path, command: str, output: str
) -> None:
    """`test` and `grid` get their clusters from one backend factory: both refuse alike."""
    before = all_containers()
    r = harness(
        command,
        "--backend",
        "kind",
        "--only",
        ONLY,
        "--build-dir",
        str(tmp_path),
        "--kind-node-image",
        "kindest/node:v0.0.0-not-here",
    )
    assert r.returncode == 2, r.stderr[-2000:]
    assert "kind node image kindest/node:v0.0.0-not-here is not in the local engine" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / output).exists()
    assert all_containers() <= before


def all_containers() -> set[str]:
    return {c["Id"] for c in Engine().client.api.containers(all=True)}


def _node_image() -> str | None:
    image = os.environ.get(NODE_IMAGE_ENV)
    if not image or not shutil.which("kind") or not shutil.which("kubectl"):
        return None
    return image if Engine().inspect("image", image) is not None else None


@pytest.mark.kind
def test_kind_end_to_end(built: None, tmp_path: Path) -> None:
    image = _node_image()
    if image is None:
        pytest.skip(
            f"no kind node image: {NODE_IMAGE_ENV} is unset or names no image in the local "
            "engine, and no registry is reachable to pull kindest/node (the GitHub "
            "workflow's kind job runs this test)"
        )
    run_id = "kind" + uuid.uuid4().hex[:6]
    r = harness(
        "test",
        "--backend",
        "kind",
        "--only",
        ONLY,
        "--build-dir",
        str(tmp_path),
        "--kind-node-image",
        image,
        env={"HARNESS_RUN_ID": run_id},
    )
    assert r.returncode == 0, r.stderr[-4000:]
    report = json.loads((tmp_path / "report.json").read_text())
    cell = next(c for c in report["cells"] if c["id"] == CELL)
    status = {c["name"]: c["status"] for c in cell["checks"] if c["stage"] != "build"}
    for name in (
        "cluster:ready",
        "client:connect",
        "client:parity",
        "workload:tasks",
        "notebook:execute",
        "driver:connect",
        "driver:parity",
    ):
        assert status.get(name) == "passed", (name, status)
    clusters = subprocess.run(["kind", "get", "clusters"], capture_output=True, text=True)
    assert f"raycompat-{run_id}" not in clusters.stdout  # deleted with the run


# --- with the KubeRay operator (the workflow's kind job installs it with Helm) -----------

KUBE_CONTEXT_ENV = "RAYCOMPAT_KUBE_CONTEXT"  # a kind context with the KubeRay operator
KUBERAY_CRDS = ("rayclusters.ray.io", "rayjobs.ray.io", "rayservices.ray.io")


def kubectl(
    context: str, *args: str, timeout: float = 120, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--context", context, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _kuberay_context() -> tuple[str | None, str]:
    """The context to run on, or None and why not."""
    context = os.environ.get(KUBE_CONTEXT_ENV, "")
    if not context:
        return None, f"{KUBE_CONTEXT_ENV} is unset (the workflow's kind job sets it)"
    if not shutil.which("kubectl") or not shutil.which("kind"):
        return None, "kubectl or kind is not installed"
    got = kubectl(context, "get", "crd", *KUBERAY_CRDS)
    if got.returncode != 0:
        return None, f"context {context}: the KubeRay CRDs are not installed: {got.stderr[-300:]}"
    return context, ""


@pytest.fixture
def kuberay() -> str:
    context, why = _kuberay_context()
    if context is None:
        pytest.skip(f"no Kubernetes with the KubeRay operator: {why}")
    return context


@pytest.mark.kind
@pytest.mark.kuberay
def test_kuberay_raycluster_rayjob_rayservice_and_grid(
    built: None, kuberay: str, tmp_path: Path
) -> None:
    """On a kind cluster running the KubeRay operator: the cell's checks on a RayCluster the
    operator runs, then the RayJob and the RayService `manifests` renders (with the local
    tags), each to its end state, and the grid for one pair."""
    run_id = "kuberay" + uuid.uuid4().hex[:6]
    r = harness(
        "test",
        "--backend",
        "kind",
        "--kube-context",
        kuberay,
        "--only",
        ONLY,
        "--build-dir",
        str(tmp_path / "test"),
        env={"HARNESS_RUN_ID": run_id},
    )
    assert r.returncode == 0, r.stderr[-4000:]
    assert "(KubeRay RayCluster)" in r.stderr, r.stderr[-2000:]  # not the Deployment fallback

    cell = matrix.load(ROOT / "matrix.yaml").cell(CELL)
    images = cell.tags("localhost/raycompat")  # loaded into the kind nodes by the test run
    namespace = f"rh-{run_id}-manifests"
    assert kubectl(kuberay, "create", "namespace", namespace).returncode == 0
    try:
        job = k8s.rayjob(cell, images, namespace=namespace, pull="Never")
        config_map, service = k8s.rayservice(cell, images, namespace=namespace, pull="Never")
        docs = [job, config_map, service]
        assert all(k8s.validate(d) == [] for d in docs)
        items = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
        applied = kubectl(kuberay, "apply", "-f", "-", input=items)
        assert applied.returncode == 0, applied.stderr
        name = job["metadata"]["name"]
        done = kubectl(
            kuberay,
            "-n",
            namespace,
            "wait",
            f"rayjob/{name}",
            "--for=jsonpath={.status.jobStatus}=SUCCEEDED",
            "--timeout=900s",
            timeout=960,
        )
        status = kubectl(kuberay, "-n", namespace, "get", f"rayjob/{name}", "-o", "json")
        assert done.returncode == 0, (done.stderr, status.stdout[-3000:])
        ready = kubectl(
            kuberay,
            "-n",
            namespace,
            "wait",
            f"rayservice/{service['metadata']['name']}",
            "--for=condition=Ready",
            "--timeout=900s",
            timeout=960,
        )
        state = kubectl(kuberay, "-n", namespace, "get", "rayservice", "-o", "json")
        assert ready.returncode == 0, (ready.stderr, state.stdout[-3000:])
        heads = kubectl(
            kuberay,
            "-n",
            namespace,
            "get",
            "pods",
            "-l",
            "ray.io/node-type=head",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ).stdout.split()
        route = k8s.serve_config()["applications"][0]["route_prefix"]
        url = f"http://{service['metadata']['name']}-serve-svc:8000{route}"
        ask = (
            "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())"
        )
        answers = [
            kubectl(kuberay, "-n", namespace, "exec", head, "--", "python", "-c", ask, url)
            for head in heads
        ]
        served = [a for a in answers if a.returncode == 0]
        assert served, [a.stderr[-500:] for a in answers]
        facts = json.loads(served[-1].stdout)
        assert (facts["python"], facts["ray"]) == (cell.python, cell.ray), facts
    finally:
        kubectl(kuberay, "delete", "namespace", namespace, "--wait=false")

    r = harness(
        "grid",
        "--backend",
        "kind",
        "--kube-context",
        kuberay,
        "--only",
        ONLY,
        "--build-dir",
        str(tmp_path / "grid"),
        env={"HARNESS_RUN_ID": run_id + "g"},
    )
    assert r.returncode == 0, r.stderr[-4000:]
    [pair] = json.loads((tmp_path / "grid" / "grid.json").read_text())["pairs"]
    for path in ("ray_client", "ray_driver", "ray_jobs"):
        assert pair[path]["verdict"] == "accepted", (path, pair[path])
