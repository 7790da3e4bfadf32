"""The consumers' contracts judged from what a structure probe measured: Vertex AI's
documented list (`vertex:contract`), KubeRay's login shell and wget (`kuberay-shell`), and
what a cell's targets add to its lock and its checks."""

from __future__ import annotations

import dataclasses

from harness import contracts, image_checks, lock, matrix
from harness.matrix import BaseSpec, Cell, Variant
from tests.conftest import ROOT

VERTEX_CELL = Cell(
    "2.33.0",
    "3.10.12",
    Variant.CPU,
    BaseSpec("image", "python:3.10.12-slim"),
    targets=("kuberay", "vertex"),
)
GOOD = {
    "python": "3.10.12",
    "ray": "2.33.0",
    "pip_freeze": ["ray==2.33.0", "python_json_logger==2.0.7"],
    "login_shell": ["/opt/ray/bin/ray", "/usr/bin/wget"],
}


def test_an_image_that_meets_vertex_list_passes() -> None:
    check = image_checks.vertex_check("image:head", GOOD)
    assert check.name == "image:head:vertex:contract"
    assert check.status == "passed", check.detail
    assert "meets it" in check.detail and contracts.VERTEX.read in check.detail


def test_each_shortfall_is_named() -> None:
    facts = {**GOOD, "python": "3.11.2", "ray": "2.60.0", "pip_freeze": ["ray==2.60.0"]}
    check = image_checks.vertex_check("image:worker", facts)
    assert check.status == "failed"
    assert "Ray 2.60.0 is not one Vertex AI runs (2.33.0, 2.9.3)" in check.detail
    assert "Python 3.11 is not 3.10" in check.detail
    assert "python-json-logger==2.0.7 is missing" in check.detail
    other = {**GOOD, "pip_freeze": ["python-json-logger==3.1.0"]}
    assert "python-json-logger==2.0.7 is at 3.1.0" in image_checks.vertex_check("x", other).detail


def test_targets_decide_which_contract_checks_an_image_carries() -> None:
    names = image_checks.structure_check_names(VERTEX_CELL, "head")
    assert "image:head:vertex:contract" in names
    assert "image:notebook:vertex:contract" not in image_checks.structure_check_names(
        VERTEX_CELL, "notebook"
    )
    plain = dataclasses.replace(VERTEX_CELL, targets=("kuberay", "kubeflow"))
    assert not any("vertex" in n for n in image_checks.structure_check_names(plain, "head"))


def test_a_vertex_cell_locks_python_json_logger_and_others_do_not() -> None:
    m = matrix.load(ROOT / "matrix.yaml")
    reqs = lock.requirements(VERTEX_CELL, m, "runtime")
    assert "python-json-logger==2.0.7" in reqs
    assert "python-json-logger==2.0.7" in lock.requirements(VERTEX_CELL, m, "notebook")
    plain = dataclasses.replace(VERTEX_CELL, targets=("kuberay", "kubeflow"))
    assert not any("json-logger" in r for r in lock.requirements(plain, m, "runtime"))
    assert lock.input_digest(plain, m, "runtime") != lock.input_digest(VERTEX_CELL, m, "runtime")


def test_kuberay_shell_says_plainly_what_a_slim_base_lacks() -> None:
    facts = {**GOOD, "login_shell": ["/opt/ray/bin/ray"]}
    check = image_checks.kuberay_check(VERTEX_CELL, "image:head", facts)
    assert check.status == "failed"
    assert "the base python:3.10.12-slim has no wget" in check.detail
    assert "apt-get install -y wget" in check.detail
    assert image_checks.kuberay_check(VERTEX_CELL, "image:head", GOOD).status == "passed"
    elsewhere = dataclasses.replace(VERTEX_CELL, targets=("vertex",))
    skipped = image_checks.kuberay_check(elsewhere, "image:head", facts)
    assert skipped.status == "skipped" and "not among this cell's targets" in skipped.detail
