"""The base recipe's pieces that run inside the rootfs, run here on the host's Python."""

from __future__ import annotations

import marshal
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest

from harness import base

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="column tables exist from Python 3.11"
)
SOURCE = "def f(a, b):\n    return a[b] + 1\n"


def columns(pyc: Path) -> bool:
    code = marshal.loads(pyc.read_bytes()[16:])
    return any(
        p[2] is not None
        for c in (code, *code.co_consts)
        if hasattr(c, "co_positions")
        for p in c.co_positions()
    )


def test_recompile_drops_column_tables_and_keeps_each_file_s_invalidation_mode(
    tmp_path: Path,
) -> None:
    lib = tmp_path / "lib"
    (lib / "pkg").mkdir(parents=True)
    modes = {
        "stamped": py_compile.PycInvalidationMode.TIMESTAMP,
        "checked": py_compile.PycInvalidationMode.CHECKED_HASH,
        "unchecked": py_compile.PycInvalidationMode.UNCHECKED_HASH,
    }
    pycs = {}
    for name, mode in modes.items():
        src = lib / "pkg" / f"{name}.py"
        src.write_text(SOURCE)
        pycs[name] = Path(str(py_compile.compile(str(src), doraise=True, invalidation_mode=mode)))
    headers = {name: pyc.read_bytes()[:16] for name, pyc in pycs.items()}
    optimized = Path(str(py_compile.compile(str(lib / "pkg/stamped.py"), doraise=True, optimize=1)))
    orphan = pycs["checked"].with_name(f"gone.{sys.implementation.cache_tag}.pyc")
    orphan.write_bytes(pycs["checked"].read_bytes())  # its source is gone: left alone
    untouched = {p: p.read_bytes() for p in (optimized, orphan)}
    assert all(columns(p) for p in pycs.values())

    run = subprocess.run(
        [sys.executable, "-X", "no_debug_ranges", "-c", base.RECOMPILE, str(lib)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "recompiled 3 .pyc" in run.stdout
    assert not any(columns(p) for p in pycs.values())
    assert {name: pyc.read_bytes()[:16] for name, pyc in pycs.items()} == headers
    assert {p: p.read_bytes() for p in untouched} == untouched


def test_recompile_refuses_to_run_without_the_flag(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", base.RECOMPILE, str(tmp_path)], capture_output=True, text=True
    )
    assert run.returncode != 0 and "no_debug_ranges" in run.stderr


def test_hooks_recompile_only_where_python_has_column_tables() -> None:
    assert any("no_debug_ranges" in h for h in base._hooks("bookworm", "3.11.2"))
    assert not any("no_debug_ranges" in h for h in base._hooks("bullseye", "3.9.2"))
    assert all(
        any("rm -rf" in h for h in base._hooks(s, p))
        for s, p in [("bullseye", "3.9.2"), ("trixie", "3.13.5")]
    )
