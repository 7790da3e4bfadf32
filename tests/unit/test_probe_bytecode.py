"""The bytecode structure check reads .pyc header flags (PEP 552) as Python writes them."""

from __future__ import annotations

import py_compile
import subprocess
import sys
from pathlib import Path

import pytest

from harness.image_checks import bytecode_check
from harness.inside import probe
from tests.conftest import ROOT

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
    for python, status in (("3.9.2", "passed"), ("3.10.12", "passed"), ("3.11.2", "failed")):
        # before 3.11 there are none; from 3.11 on, None is a probe that did not measure
        facts = {"bytecode": counts, "column_tables": None, "python": python}
        assert bytecode_check("image:head", facts).status == status, python
    unknown = {"bytecode": counts, "column_tables": None}
    check = bytecode_check("image:head", unknown)
    assert check.status == "failed" and "not measured on Python (unknown)" in check.detail
    odd = {"bytecode": counts, "column_tables": ["json"], "python": "3.13.5"}
    assert bytecode_check("image:head", odd).status == "failed"
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


def test_base_layer_needs_the_rootfs_label_on_a_debian_base() -> None:
    """Skipped only for a registry base; a Debian base without the label proves nothing."""
    from harness import labels
    from harness.image_checks import base_layer_check

    info = {"RootFS": {"Layers": ["sha256:" + "a" * 64, "sha256:" + "b" * 64]}}
    good = base_layer_check("image:head", info, {labels.ROOTFS: "a" * 64})
    assert good.status == "passed"
    assert base_layer_check("image:head", info, {labels.ROOTFS: "c" * 64}).status == "failed"
    missing = base_layer_check("image:head", info, {})
    assert missing.status == "failed" and "label missing" in missing.detail
    assert base_layer_check("image:head", {}, {labels.ROOTFS: "a" * 64}).status == "failed"
    registry = base_layer_check("image:head", info, {}, debian_base=False)
    assert registry.status == "skipped" and "registry base" in registry.detail


def test_platform_needs_the_label_on_native_images_too() -> None:
    from harness import labels, matrix
    from harness.image_checks import platform_check

    [cell] = [
        c for c in matrix.load(ROOT / "matrix.yaml").cells if c.id == "ray2.60.0-py3.11.2-cpu"
    ]
    info = {"Os": "linux", "Architecture": "amd64"}
    facts = {"machine": "x86_64"}
    ok = platform_check(cell, "image:head", info, facts, {labels.PLATFORM: "linux/amd64"})
    assert ok.status == "passed"
    for found in ({}, {labels.PLATFORM: "linux/arm64"}, {labels.PLATFORM: ""}):
        assert platform_check(cell, "image:head", info, facts, found).status == "failed", found
    assert platform_check(
        cell, "image:head", info, {}, {labels.PLATFORM: "linux/amd64"}
    ).status == (
        "failed"  # platform.machine() not measured
    )
