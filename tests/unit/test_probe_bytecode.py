"""The bytecode structure check reads .pyc header flags (PEP 552) as Python writes them."""

from __future__ import annotations

import py_compile
import subprocess
import sys
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
    good = {
        "bytecode": {"checked-hash": 10, "unchecked-hash": 0, "timestamp": 0, "examples": []},
        "column_tables": {"json": False, "ray": False},
    }
    assert bytecode_check("image:notebook", good).status == "passed"
    bad = {
        "bytecode": {
            "checked-hash": 10,
            "unchecked-hash": 0,
            "timestamp": 2,
            "examples": ["/opt/ray/lib/python3.11/site-packages/x/__pycache__/a.cpython-311.pyc"],
        },
        "column_tables": {"json": False},
    }
    check = bytecode_check("image:notebook", bad)
    assert (
        check.status == "failed" and "2 timestamp" in check.detail and "a.cpython" in check.detail
    )
    assert bytecode_check("image:head", {}).status == "failed"  # nothing measured: no pass


def test_bytecode_check_wants_no_column_tables_where_python_has_them() -> None:
    counts = {"checked-hash": 10, "unchecked-hash": 0, "timestamp": 0, "examples": []}
    ok = bytecode_check("image:head", {"bytecode": counts, "column_tables": {"json": False}})
    assert ok.status == "passed" and "no column tables in json" in ok.detail
    assert bytecode_check("image:head", {"bytecode": counts, "column_tables": None}).status == (
        "passed"  # Python 3.9/3.10: there are none
    )
    for tables in ({"json": False, "ray": True}, {"ray": "no pyc"}, {}):
        check = bytecode_check("image:head", {"bytecode": counts, "column_tables": tables})
        assert check.status == "failed", tables
    assert bytecode_check("image:head", {"bytecode": counts}).status == "failed"  # not measured
    registry_base = {"bytecode": counts, "column_tables": {"json": True, "ray": False}}
    assert bytecode_check("image:head", registry_base).status == "failed"
    check = bytecode_check("image:head", registry_base, debian_base=False)
    assert check.status == "passed" and "no column tables in ray" in check.detail


@pytest.mark.skipif(sys.version_info < (3, 11), reason="column tables exist from Python 3.11")
@pytest.mark.parametrize("flag", [False, True], ids=["default", "no_debug_ranges"])
def test_probe_reads_whether_a_pyc_has_column_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: bool
) -> None:
    (tmp_path / "sample_layer.py").write_text("def f(a, b):\n    return a[b] + 1\n")
    xopt = ["-X", "no_debug_ranges"] if flag else []
    compile_it = "import py_compile; py_compile.compile('sample_layer.py', doraise=True)"
    subprocess.run([sys.executable, *xopt, "-c", compile_it], cwd=tmp_path, check=True)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(probe, "COLUMN_SAMPLES", ("sample_layer", "not_installed_anywhere"))
    assert probe.column_tables() == {"sample_layer": not flag}
