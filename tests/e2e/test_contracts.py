"""A cell that targets Vertex AI, built for real on a registry-style base that is already in
the engine: the base is used without a pull (its registry does not exist), the cell's lock
brings Vertex's `python-json-logger==2.0.7` into the images, and `vertex:contract` fails on
head and worker with Vertex's documented reasons (Ray 2.60.0 and Python 3.11 are not on
its list), so the cell is failed and nothing of it would be pushed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import matrix
from harness.base import ensure as ensure_base
from harness.engine import Engine
from tests.conftest import ROOT
from tests.e2e.test_failures import (
    WHEELHOUSE,
    checks,
    copy_project,
    new_run_id,
    remove_prefix,
    report,
    run,
)

pytestmark = pytest.mark.e2e
CELL = "ray2.60.0-py3.11.2-cpu"
ONLY = ["--only", "ray=2.60.0,python=3.11.2,variant=cpu"]
# A name no registry answers: a pull would fail, so a build proves the base was not pulled.
BASE = "registry.invalid/raycompat-e2e/python:3.11.2-bookworm"


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[str]:
    """The Debian bookworm base the harness builds, tagged under a registry-style name."""
    m = matrix.load(ROOT / "matrix.yaml")
    cell = m.cell(CELL)
    base = ensure_base(Engine(), m, cell, tmp_path / "rootfs")
    Engine().tag(base.ref, BASE)
    yield BASE
    Engine().untag(BASE)


def test_a_vertex_cell_on_a_local_registry_base(tmp_path: Path, stand_in: str) -> None:
    prefix = "localhost/raycompat-e2evertex"
    path = copy_project(tmp_path, prefix)
    text = path.read_text()
    assert "\n  vertex: none\n" in text
    text = text.replace("\n  vertex: none\n", '\n  vertex: ["ray=2.60.0,python=3.11.2"]\n')
    path.write_text(text + f'\nbases:\n  "3.11.2": {{image: "{stand_in}"}}\n')
    args = ["--matrix", str(path), *ONLY]
    run_id = new_run_id()
    try:
        # the committed lock predates the target: the build refuses it until it is locked
        stale = run("build", *args, run_id=run_id, env=WHEELHOUSE)
        assert stale.returncode == 2, stale.stderr[-2000:]
        assert "lock" in stale.stderr and "Traceback" not in stale.stderr
        locked = run("lock", *args, run_id=run_id, env=WHEELHOUSE)
        assert locked.returncode == 0, locked.stderr[-2000:]
        runtime = (tmp_path / "locks" / CELL / "runtime.txt").read_text()
        assert "python-json-logger==2.0.7" in runtime

        built = run("build", *args, run_id=run_id, env=WHEELHOUSE)
        assert built.returncode == 1, built.stderr[-3000:]  # the contract check failed
        assert "pull" not in built.stderr.lower(), built.stderr[-3000:]
        cell = report(tmp_path / "build")[CELL]
        assert cell["status"] == "failed"
        found = checks(cell)
        for role in ("head", "worker"):
            check = found[f"image:{role}:vertex:contract"]
            assert check["status"] == "failed", check
            assert "Ray 2.60.0 is not one Vertex AI runs (2.33.0, 2.9.3)" in check["detail"]
            assert "Python 3.11 is not 3.10" in check["detail"]
            assert "python-json-logger" not in check["detail"].split("(Vertex AI's list")[0]
        assert "image:notebook:vertex:contract" not in found
        assert found["image:head:kuberay-shell"]["status"] == "passed"  # bash and wget there
        assert all(
            c["status"] == "passed"
            for name, c in found.items()
            if name.startswith("image:") and "vertex" not in name and "base-layer" not in name
        ), {n: c["status"] for n, c in found.items()}
    finally:
        remove_prefix(prefix)


def test_an_absent_registry_base_is_a_clear_error(tmp_path: Path) -> None:
    """Without the stand-in, the cell's build fails, and the progress line says what to do."""
    prefix = "localhost/raycompat-e2evertex"
    path = copy_project(tmp_path, prefix)
    missing = f"registry.invalid/raycompat-e2e/python:{uuid.uuid4().hex[:8]}"
    path.write_text(path.read_text() + f'\nbases:\n  "3.11.2": {{image: "{missing}"}}\n')
    r = run("build", "--matrix", str(path), *ONLY, run_id=new_run_id(), env=WHEELHOUSE)
    assert r.returncode == 1, r.stderr[-2000:]  # the cell's build failed
    assert f"base image {missing} is not present and cannot be pulled" in r.stderr
    assert "`docker load` it" in r.stderr and "Traceback" not in r.stderr
    assert report(tmp_path / "build")[CELL]["status"] == "failed"
    remove_prefix(prefix)
