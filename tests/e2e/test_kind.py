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

from harness.backends.kube import NODE_IMAGE_ENV
from harness.engine import Engine
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
