"""Minimal re-locks, against PyPI with uv: a lock keeps its pins wherever they still fit
(a dropped constraint moves nothing), `--upgrade NAME` moves exactly that package in both
of the cell's locks, and `harness diff` says exactly that, with Python and Ray unchanged."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.version import Version

from harness import diff, lock, matrix
from tests.e2e.cli import harness

CELL = (
    'ray: ["2.60.0"]\npython: ["3.11.2"]\nvariants: [cpu]\n'
    "targets: {kuberay: none, kubeflow: none}\n"
)
OLD_CLICK = (
    'constraints:\n  - {ray: "2.60.0", requirement: "click<8.2", reason: "an old click to move"}\n'
)


def pins(locks: Path, cell: matrix.Cell) -> dict[str, dict[str, str]]:
    return {
        kind: {p.name: p.version for p in lock.pins_of(lock.lock_path(locks, cell, kind))}
        for kind in lock.KINDS
    }


@pytest.mark.network  # asks PyPI
def test_upgrade_moves_exactly_the_named_package(
    write_matrix: Callable[[str], Path], tmp_path: Path
) -> None:
    locks = tmp_path / "locks"
    m = matrix.load(write_matrix(CELL + OLD_CLICK))
    cell = m.cells[0]
    lock.compile_cell(locks, cell, m)
    old = pins(locks, cell)
    assert all(Version(old[k]["click"]) < Version("8.2") for k in lock.KINDS)
    shutil.copytree(locks, tmp_path / "before")

    # the constraint is gone: the lock is stale and re-locks, but no pin needs to move
    m = matrix.load(write_matrix(CELL))
    cell = m.cells[0]
    lock.compile_cell(locks, cell, m)
    assert pins(locks, cell) == old

    lock.compile_cell(locks, cell, m, upgrade=["click"])
    new = pins(locks, cell)
    for kind in lock.KINDS:
        moved = {
            n for n in old[kind].keys() | new[kind].keys() if old[kind].get(n) != new[kind].get(n)
        }
        assert moved == {"click"}, kind
        assert Version(new[kind]["click"]) >= Version("8.2")

    text, code = diff.run(tmp_path / "before", locks, patch=True)
    click = f"click {old['runtime']['click']} -> {new['runtime']['click']}"
    assert code == 0
    assert text.splitlines() == [
        f"{cell.id} (head, worker, notebook):",
        "  Python micro and Ray unchanged (3.11.2, Ray 2.60.0)",
        f"  Python packages: {click}",
    ]


def test_upgrade_refuses_a_name_no_lock_has() -> None:
    r = harness("lock", "--only", "ray=2.60.0,python=3.11.2,variant=cpu", "--upgrade", "nosuchpkg")
    assert r.returncode == 2 and "nosuchpkg is in no lock of the selected cells" in r.stderr
    assert "Traceback" not in r.stderr


def test_diff_says_loudly_when_python_or_ray_moved(tmp_path: Path) -> None:
    a = {("c", "head"): diff.Image("3.11.2", "2.60.0", {"ray": "2.60.0"})}
    b = {("c", "head"): diff.Image("3.11.4", "2.60.0", {"ray": "2.60.0"})}
    d = diff.diff(a, b)
    assert d.identity_changed == ["c/head"]
    assert "CHANGED: Python 3.11.2 -> 3.11.4: not a patch rebuild" in d.text()
