"""The in-image probe stays standard-library only and Python 3.9 compatible: compiled and
run under Debian bullseye's 3.9.2 (the oldest micro in the matrix), in the bare base image
(no Ray, no network), where it must still answer."""

from __future__ import annotations

import json

import pytest

from harness import matrix
from harness.base import ensure as ensure_base
from harness.engine import STAGING, Engine
from harness.inside import PROBE_SOURCE
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def bullseye(tmp_path_factory: pytest.TempPathFactory) -> str:
    m = matrix.load(ROOT / "matrix.yaml")
    cell = next(c for c in m.cells if c.python == "3.9.2")
    base = ensure_base(Engine(), m, cell, tmp_path_factory.mktemp("rootfs"))
    return base.ref


def run(image: str, *args: str) -> tuple[int, str, str]:
    """python3 ARGS in a throwaway container, the probe's source on its stdin."""
    command = ["sh", "-c", f'exec python3 "$@" < {STAGING}/probe.py', "sh", *args]
    r = Engine().run_once(image, command, files={"probe.py": PROBE_SOURCE}, timeout=120)
    return r.returncode, r.stdout, r.stderr


def test_probe_compiles_under_python_3_9(bullseye: str) -> None:
    code = "import sys; compile(sys.stdin.read(), 'probe.py', 'exec'); print(sys.version)"
    rc, out, err = run(bullseye, "-c", code)
    assert rc == 0, err
    assert out.startswith("3.9.2")


@pytest.mark.parametrize("command", ["facts", "structure"])
def test_probe_answers_under_python_3_9_without_ray(bullseye: str, command: str) -> None:
    rc, out, err = run(bullseye, "-", command)
    assert rc == 0, err
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["python"] == "3.9.2"
    assert doc["ray"] is None and "No module named 'ray'" in doc["ray_error"]
