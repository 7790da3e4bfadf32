"""The notebook image as a Kubeflow custom image: the negative case for real. The image
as it was before (Jupyter's own defaults and the old command line: a token, no
NB_PREFIX, framing only by its own origin) must fail `kubeflow:contract`; the cell's
end-to-end test proves the image itself passes it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import matrix, timeouts
from harness.backends import open_backend
from harness.engine import Engine
from harness.labels import RUN as LABEL_RUN
from harness.verify import _kubeflow_check
from tests.conftest import ROOT
from tests.e2e.cli import harness

pytestmark = pytest.mark.e2e
ONLY = "ray=2.60.0,python=3.11.2,variant=cpu"
OLD_CMD = (
    '["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", '
    '"--ServerApp.root_dir=/home/jovyan"]'
)


@pytest.fixture(scope="module")
def cell() -> matrix.Cell:
    r = harness("build", "--only", ONLY)
    assert r.returncode == 0, r.stderr[-3000:]
    m = matrix.load(ROOT / "matrix.yaml")
    return next(c for c in m.cells if c.id == "ray2.60.0-py3.11.2-cpu")


@pytest.fixture
def old_notebook(cell: matrix.Cell, tmp_path: Path) -> Iterator[str]:
    """The cell's notebook image without the Kubeflow configuration, on the old command."""
    image = cell.tag("localhost/raycompat", "notebook")
    tag = f"localhost/raycompat-test/ray-notebook-old:{uuid.uuid4().hex[:8]}"
    (tmp_path / "Dockerfile").write_text(
        f"FROM {image}\nUSER 0:0\nRUN rm /etc/jupyter/jupyter_server_config.py\n"
        f"USER 1000:100\nCMD {OLD_CMD}\n"
    )
    engine = Engine()
    build = ["build", "--network", "none", "-t", tag, str(tmp_path)]
    engine.run(build, env={"DOCKER_BUILDKIT": "1"}, timeout=300)
    yield tag
    engine.untag(tag)


def test_the_old_notebook_fails_the_kubeflow_contract(
    cell: matrix.Cell, old_notebook: str, tmp_path: Path
) -> None:
    engine = Engine()
    run_id = "kf" + uuid.uuid4().hex[:8]
    images = {**cell.tags("localhost/raycompat"), "notebook": old_notebook}
    backend = open_backend("containers", engine, run_id)
    with backend, backend.cluster(cell, images, tmp_path / "logs", timeouts.DEFAULT) as cluster:
        check = _kubeflow_check(cell, cluster, timeouts.DEFAULT)
    assert check.status == "failed", check.detail
    assert "/api/status without a token answered" in check.detail
    assert "framing blocked by Content-Security-Policy: frame-ancestors 'self'" in check.detail
    assert engine.ids("container", {LABEL_RUN: run_id}) == []
