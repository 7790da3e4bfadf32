"""The bytecode structure check reads .pyc header flags (PEP 552) as Python writes them."""

from __future__ import annotations

import py_compile
from pathlib import Path

import pytest

from harness.image_checks import bytecode_check
from harness.inside import probe

MODES = {
    py_compile.PycInvalidationMode.CHECKED_HASH: "checked-hash",
    py_compile.PycInvalidationMode.UNCHECKED_HASH: "unchecked-hash",
    py_compile.PycInvalidationMode.TIMESTAMP: "timestamp",
}


@pytest.mark.parametrize("mode", list(MODES), ids=[m.name for m in MODES])
def test_pyc_kind(tmp_path: Path, mode: py_compile.PycInvalidationMode) -> None:
    src = tmp_path / "m.py"
    src.write_text("x = 1\n")
    pyc = py_compile.compile(str(src), cfile=str(tmp_path / "m.pyc"), invalidation_mode=mode)
    assert pyc is not None
    assert probe._pyc_kind(pyc) == MODES[mode]


def test_bytecode_check_fails_on_any_timestamp_pyc() -> None:
    good = {"bytecode": {"checked-hash": 10, "unchecked-hash": 0, "timestamp": 0, "examples": []}}
    assert bytecode_check("image:notebook", good).status == "passed"
    bad = {
        "bytecode": {
            "checked-hash": 10,
            "unchecked-hash": 0,
            "timestamp": 2,
            "examples": ["/opt/ray/lib/python3.11/site-packages/x/__pycache__/a.cpython-311.pyc"],
        }
    }
    check = bytecode_check("image:notebook", bad)
    assert (
        check.status == "failed" and "2 timestamp" in check.detail and "a.cpython" in check.detail
    )
    assert bytecode_check("image:head", {}).status == "failed"  # nothing measured: no pass
