"""The walking skeleton for real: build the default cell's images with a real Docker engine
and no registry, start a Ray cluster from them, and read the verdict from the report.

Needs a running Docker engine (`scripts/setup-engine.sh`); without one these tests fail,
they never skip. The first run builds cold (about two minutes here); later runs reuse
images whose build key is unchanged.
"""

from __future__ import annotations

import json
import shutil
import uuid
from typing import Any

import pytest

from harness.audit import locked_packages
from harness.engine import Engine
from harness.image_checks import RUNTIME_USER
from harness.labels import RUN as LABEL_RUN
from tests.conftest import ROOT
from tests.e2e.cli import harness

pytestmark = pytest.mark.e2e
CELL = "ray2.60.0-py3.11.2-cpu"
GPU_CELL = "ray2.60.0-py3.11.2-cu128"
LOCKS = ROOT / "locks"
# Both cells in one run (builds two at a time on 2 cores: the parallel path).
ONLY = ["--only", "ray=2.60.0,python=3.11.2"]


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    # Kept after the run (and uploaded by CI): build/e2e/report.md, junit.xml, logs/.
    build_dir = ROOT / "build" / "e2e"
    if build_dir.exists():
        shutil.rmtree(build_dir)
    run_id = "e2e" + uuid.uuid4().hex[:8]
    built = harness("build", *ONLY, "--build-dir", str(build_dir), run_id=run_id)
    assert built.returncode == 0, built.stderr[-3000:]
    # one known Ray token for the run's token clusters, to search the run's output for it
    token = "e2e-token-" + uuid.uuid4().hex
    token_file = ROOT / "build" / "e2e-token"
    token_file.write_text(token + "\n")
    try:
        tested = harness(
            "test", *ONLY, "--build-dir", str(build_dir), run_id=run_id,
            env={"RAYCOMPAT_AUTH_TOKEN_FILE": str(token_file)},
        )  # fmt: skip
    finally:
        token_file.unlink()
    report = json.loads((build_dir / "report.json").read_text())
    return {
        "token": token,
        "run_id": run_id,
        "build_dir": build_dir,
        "rc": tested.returncode,
        "stderr": tested.stderr,
        "report": report,
    }


def cell_of(run: dict[str, Any], cell_id: str = CELL) -> dict[str, Any]:
    cells: list[dict[str, Any]] = [c for c in run["report"]["cells"] if c["id"] == cell_id]
    assert len(cells) == 1
    return cells[0]


def checks_of(run: dict[str, Any], cell_id: str = CELL) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in cell_of(run, cell_id)["checks"]}


def test_cell_passed_and_exit_code_0(run: dict[str, Any]) -> None:
    failed = {
        n: c["detail"]
        for n, c in checks_of(run).items()
        if c["status"] != "passed" and n != "audit:locks"  # audit: see test_locks_were_audited
    }
    assert failed == {}
    assert run["rc"] == 0, run["stderr"][-2000:]
    assert cell_of(run)["status"] == "passed"


def test_import_ray_in_the_notebook_compiles_no_grammar(run: dict[str, Any]) -> None:
    """jsonschema imports its optional rfc3987-syntax eagerly, which compiles Earley
    grammars (~0.9 CPU-s on every `import ray` here): the notebook image leaves it out, and
    jsonschema's format checker, Jupyter's event schemas and nbformat still load."""
    tag = {i["role"]: i["tag"] for i in cell_of(run)["images"]}["notebook"]
    code = (
        "import sys, ray, jsonschema, jupyter_events.validators, nbformat; "
        "jsonschema.Draft7Validator.FORMAT_CHECKER.check('x', 'uri-reference'); "
        "print(sorted(m for m in ('rfc3987_syntax', 'lark') if m in sys.modules))"
    )
    r = Engine().run_once(tag, ["python", "-c", code], timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_gpu_cell_cuda_runtime_checked_and_gpu_e2e_never_faked(run: dict[str, Any]) -> None:
    checks = checks_of(run, GPU_CELL)
    for role in ("head", "worker", "notebook"):
        cuda = checks[f"image:{role}:cuda"]
        assert cuda["status"] == "passed", cuda["detail"]
        assert "libcudart reports CUDA 12.8" in cuda["detail"]
    gpu = checks["gpu:e2e"]
    if Engine().nvidia_runtime():
        assert gpu["status"] == "passed", gpu["detail"]
    else:
        assert gpu["status"] == "skipped"
        assert "no NVIDIA container runtime" in gpu["detail"]
    # every other check of the gpu cell ran for real on the CPU and passed
    others = {n: c["status"] for n, c in checks.items() if n not in ("gpu:e2e", "audit:locks")}
    assert set(others.values()) == {"passed"}, others
    assert cell_of(run, GPU_CELL)["status"] == "passed"
    images = {i["role"]: i["tag"] for i in cell_of(run, GPU_CELL)["images"]}
    assert images["head"] == "localhost/raycompat/ray-head:2.60.0-py3.11.2-cu128"


@pytest.mark.parametrize(
    "name",
    [
        "cluster:ready",
        "client:connect",
        "client:parity",
        "driver:connect",
        "driver:parity",
        "workload:tasks",
        "workload:actor",
        "workload:object",
        "workload:placement-group",
        "workload:runtime-env",
        "dashboard:api",
        "jobs:submit",
        "serve:http",
        "auth:token",
        "notebook:execute",
        "notebook:jupyterlab",
        "kubeflow:contract",
        "image:head:python",
        "image:worker:ray",
        "image:notebook:non-root",
        "image:head:no-leftovers",
        "image:notebook:no-secrets",
        "security:no-published-ports",
        "cluster:nodes-alive",
    ],
)
def test_each_check_recorded_and_passed(run: dict[str, Any], name: str) -> None:
    check = checks_of(run)[name]
    assert check["status"] == "passed", check["detail"]


def test_checks_are_reported_in_one_order_whichever_lane_ends_first(run: dict[str, Any]) -> None:
    """The lanes run side by side; the report lists their checks in a fixed order, so two
    reports of the same cell line up (auth:token, whose log search runs last, included)."""
    order = [c["name"] for c in cell_of(run)["checks"] if c.get("stage") != "build"]
    assert order == [
        "security:no-published-ports",
        "cluster:ready",
        "cluster:ready:nodes",
        "client:connect",
        "client:connect:nodes",
        "client:parity",
        "workload:placement-group",
        "workload:tasks",
        "workload:actor",
        "workload:object",
        "notebook:execute",
        "notebook:jupyterlab",
        "kubeflow:contract",
        "dashboard:api",
        "jobs:submit",
        "workload:runtime-env",
        "serve:http",
        "auth:token",
        "driver:connect",
        "driver:connect:nodes",
        "driver:parity",
        "cluster:nodes-alive",
    ]


def test_a_client_without_the_token_is_refused_on_every_path(run: dict[str, Any]) -> None:
    """Ray 2.60 has token authentication: the cell's cluster runs with a token, and a
    notebook without it (or with a wrong one) is turned away by every path."""
    paths = checks_of(run)["auth:token"]["data"]["paths"]
    for who in ("none", "wrong"):
        assert set(paths[who]) == {"http", "jobs", "gcs", "ray_client"}
        assert paths[who]["http"].startswith(("HTTP 401", "HTTP 403")), paths[who]
    assert paths["token"]["http"].startswith("HTTP 200")
    for log in (run["build_dir"] / "logs").rglob("*"):
        assert not log.is_file() or b"RAY_AUTH_TOKEN=" not in log.read_bytes()


def test_parity_was_measured_on_every_node(run: dict[str, Any]) -> None:
    data = checks_of(run)["client:parity"]["data"]
    assert data["client"]["python"] == "3.11.2" and data["client"]["ray"] == "2.60.0"
    assert len(data["nodes"]) == 2
    assert all(
        n["python"] == "3.11.2" and n["commit"] == data["client"]["commit"] for n in data["nodes"]
    )
    # the driver run adds the notebook container as a third node
    assert len(checks_of(run)["driver:parity"]["data"]["nodes"]) == 3


def test_images_in_report_are_the_tagged_images_with_labels(run: dict[str, Any]) -> None:
    engine = Engine()
    images = {i["role"]: i for i in cell_of(run)["images"]}
    assert set(images) == {"head", "worker", "notebook"}
    for role, image in images.items():
        assert image["tag"] == f"localhost/raycompat/ray-{role}:2.60.0-py3.11.2-cpu"
        info = engine.inspect("image", image["tag"])
        assert info is not None and info["Id"] == image["id"]
        assert image["size_bytes"] == info["Size"] > 0
        labels = info["Config"]["Labels"]
        assert labels["io.raycompat.python.version"] == "3.11.2"
        assert labels["io.raycompat.ray.version"] == "2.60.0"
        assert len(labels["io.raycompat.ray.commit"]) == 40
        assert labels["io.raycompat.variant"] == "cpu"
        assert len(labels["io.raycompat.lock.sha256"]) == 64
        assert info["Config"]["User"] == RUNTIME_USER[role]  # the notebook: Kubeflow's jovyan


def test_reports_written(run: dict[str, Any]) -> None:
    md = (run["build_dir"] / "report.md").read_text()
    assert f"| {CELL} | 2.60.0 | 3.11.2 | cpu | linux/amd64 (native) | ✅ passed |" in md
    assert f"| {GPU_CELL} | 2.60.0 | 3.11.2 | gpu | linux/amd64 (native) | ✅ passed |" in md
    junit = (run["build_dir"] / "junit.xml").read_text()
    assert 'failures="0"' in junit and "client:parity" in junit


def test_nothing_left_behind(run: dict[str, Any]) -> None:
    engine = Engine()
    labels = {LABEL_RUN: run["run_id"]}
    assert engine.ids("container", labels) == []
    assert engine.ids("network", labels) == []
    assert engine.ids("volume", labels) == []


def test_build_manifest_per_image(run: dict[str, Any]) -> None:
    for role in ("head", "worker", "notebook"):
        doc = json.loads((run["build_dir"] / "manifests" / CELL / f"{role}.json").read_text())
        image = next(i for i in cell_of(run)["images"] if i["role"] == role)
        assert doc["image"]["id"] == image["id"]
        assert doc["measured"]["python"] == "3.11.2" and doc["measured"]["ray"] == "2.60.0"
        assert doc["dpkg"]["python3.11"].startswith("3.11.2")
        assert "ray==2.60.0" in doc["pip_freeze"]
        inputs = doc["inputs"]
        assert inputs["build_key"] == doc["image"]["labels"]["io.raycompat.build.key"]
        assert inputs["lock_sha256"] == doc["image"]["labels"]["io.raycompat.lock.sha256"]
        assert len(inputs["base"]["rootfs_sha256"]) == 64
        assert any(name.startswith("ray-2.60.0-cp311") for name in inputs["wheels"])
        assert all(len(digest) == 64 for digest in inputs["wheels"].values())


def test_locks_were_audited(run: dict[str, Any]) -> None:
    audit = checks_of(run)["audit:locks"]
    data = audit["data"]
    # the audit's evidence covers exactly what the cell's locks pin (never 0 of 0)
    locks = [LOCKS / CELL / f"{kind}.txt" for kind in ("runtime", "notebook")]
    assert data["packages"] == data["locked"] == sum(map(locked_packages, locks)) > 0
    # warn policy: findings are a warning, an incomplete audit is skipped: never a silent pass
    if data["audited"] < data["packages"]:
        assert audit["status"] == "skipped", audit["detail"]
        assert "could not be audited" in audit["detail"]
    elif data["findings"]:
        assert audit["status"] == "warning", audit["detail"]
    else:
        assert audit["status"] == "passed", audit["detail"]


def test_the_ray_token_is_in_nothing_the_harness_wrote(run: dict[str, Any]) -> None:
    """Every file under the build directory (reports, junit, state, container output,
    Ray's saved session logs) and the command's own output: the token is in none."""
    assert checks_of(run)["auth:token"]["status"] == "passed"  # the cluster had the token
    needle = run["token"].encode()
    searched = [p for p in run["build_dir"].rglob("*") if p.is_file()]
    assert len(searched) > 10
    assert [str(p) for p in searched if needle in p.read_bytes()] == []
    assert run["token"] not in run["stderr"]
