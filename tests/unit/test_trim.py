"""images/trim.py: what it removes from an installed tree, and its ELF debug-section strip,
on real shared objects built by the host's gcc and loaded afterwards."""

from __future__ import annotations

import ctypes
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

TRIM = Path(__file__).resolve().parents[2] / "images" / "trim.py"


def load_trim() -> ModuleType:
    spec = importlib.util.spec_from_file_location("trim", TRIM)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


trim = load_trim()

SOURCE = """
#include <stdio.h>
static int table[64];
int raycompat_add(int a, int b) { table[a & 63] += b; return a + b + table[a & 63] - b; }
const char *raycompat_name(void) { return "raycompat"; }
"""


def build_so(tmp_path: Path, name: str, *flags: str) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: no shared object to strip")
    src = tmp_path / "lib.c"
    src.write_text(SOURCE)
    out = tmp_path / name
    subprocess.run(["gcc", "-shared", "-fPIC", *flags, "-o", str(out), str(src)], check=True)
    return out


def sections(path: Path) -> dict[str, int]:
    """Section name -> size, read back with the module's own structs."""
    data = path.read_bytes()
    ehdr = trim.EHDR.unpack_from(data, 0)
    shoff, shnum, shstrndx = ehdr[6], ehdr[12], ehdr[13]
    shdrs = [trim.SHDR.unpack_from(data, shoff + i * trim.SHDR.size) for i in range(shnum)]
    names = data[shdrs[shstrndx][4] : shdrs[shstrndx][4] + shdrs[shstrndx][5]]
    return {names[s[0] : names.index(b"\0", s[0])].decode(): s[5] for s in shdrs}


def test_strip_debug_empties_dwarf_keeps_symbols_and_the_library_loads(tmp_path: Path) -> None:
    lib = build_so(tmp_path, "libdebug.so", "-g", "-O1")
    before = sections(lib)
    assert before[".debug_info"] > 0
    stripped = trim.strip_debug(lib.read_bytes())
    assert stripped is not None and len(stripped) < lib.stat().st_size
    lib.write_bytes(stripped)
    after = sections(lib)
    assert all(size == 0 for name, size in after.items() if name.startswith(".debug"))
    assert after[".symtab"] == before[".symtab"] and after[".text"] == before[".text"]
    loaded = ctypes.CDLL(str(lib))
    loaded.raycompat_name.restype = ctypes.c_char_p
    assert loaded.raycompat_add(2, 3) == 5
    assert loaded.raycompat_name() == b"raycompat"
    if shutil.which("nm"):  # the symbol table still names the functions
        names = subprocess.run(["nm", str(lib)], capture_output=True, text=True, check=True)
        assert "raycompat_add" in names.stdout
    assert trim.strip_debug(stripped) is None  # nothing left to strip


def test_strip_debug_leaves_what_it_cannot_or_need_not_rewrite(tmp_path: Path) -> None:
    plain = build_so(tmp_path, "libplain.so", "-O1")
    assert trim.strip_debug(plain.read_bytes()) is None  # no debug sections
    assert trim.strip_debug(b"#!/bin/sh\necho not elf\n") is None
    assert trim.strip_debug(b"\x7fELF\x01\x01" + bytes(60)) is None  # 32-bit
    assert trim.strip_debug(b"\x7fELF\x02\x01") is None  # truncated header
    debug = build_so(tmp_path, "libdebug.so", "-g")
    data = bytearray(debug.read_bytes())
    data[0x28:0x30] = (len(data) + 4096).to_bytes(8, "little")  # section table past the end
    assert trim.strip_debug(bytes(data)) is None


def site_tree(root: Path, debug_so: Path) -> Path:
    site = root / "site-packages"
    for d in ("ray/jars", "numpy/tests/data", "pkg/sub/tests", "ray/dashboard/client/build/js"):
        (site / d).mkdir(parents=True)
    (site / "ray/jars/ray_dist.jar").write_bytes(b"j" * 100)
    (site / "numpy/tests/data/x.npy").write_bytes(b"n" * 50)
    (site / "pkg/sub/tests/test_x.py").write_text("x = 1\n")
    (site / "ray/dashboard/client/build/js/main.js").write_text("main()")
    (site / "ray/dashboard/client/build/js/main.js.map").write_text("{}")
    (site / "pip/_vendor/distlib").mkdir(parents=True)
    (site / "pip/_vendor/distlib/t64.exe").write_bytes(b"MZ" + bytes(10))
    attach = site / "debugpy/_vendored/pydevd/pydevd_attach_to_process"
    attach.mkdir(parents=True)
    (attach / "attach_amd64.dll").write_bytes(b"MZ\x90\x00" + bytes(10))
    (attach / "attach_amd64.pdb").write_bytes(b"Microsoft C/C++ MSF 7.00\r\n\x1aDS" + bytes(10))
    (attach / "attach.dylib").write_bytes(bytes.fromhex("cffaedfe") + bytes(10))
    (attach / "pydevd_cython.cp311-win_amd64.pyd").write_bytes(b"MZ" + bytes(10))
    (attach / "attach_linux_amd64.so").write_bytes(b"\x7fELF" + bytes(10))
    (attach / "named.dll").write_text("not a DLL, only named like one")
    galata = site / "jupyterlab/galata/@jupyterlab/galata-extension/static"
    galata.mkdir(parents=True)
    (galata / "font.woff2").write_bytes(b"w" * 30)
    (site / "jupyterlab/static").mkdir(parents=True)
    (site / "jupyterlab/static/main.js").write_text("main()")
    embed = site / "virtualenv/seed/wheels/embed"
    embed.mkdir(parents=True)
    mine = "%d.%d" % sys.version_info[:2]  # noqa: UP031
    (embed / "__init__.py").write_text(
        "from typing import Final\n"
        "BUNDLE_SUPPORT: Final[dict[str, dict[str, str]]] = {\n"
        '    "3.8": {"pip": "pip-old.whl"},\n'
        f'    "{mine}": {{"pip": "pip-new.whl", "setuptools": "setuptools-new.whl"}},\n'
        "}\n"
        "raise SystemExit('imported, not read')\n"
    )
    for wheel in ("pip-old.whl", "pip-new.whl", "setuptools-new.whl"):
        (embed / wheel).write_bytes(b"PK")
    shutil.copy(debug_so, site / "pkg" / "_speedups.so")
    shutil.copy(debug_so, site / "ray" / "_raylet.so")
    vendored = site / "ray/_private/runtime_env/agent/thirdparty_files/aiohttp"
    vendored.mkdir(parents=True)
    shutil.copy(debug_so, vendored / "_http_parser.so")
    return site


def test_trim_removes_each_kind_and_keeps_the_rest(tmp_path: Path) -> None:
    site = site_tree(tmp_path, build_so(tmp_path, "libdebug.so", "-g"))
    raylet = (site / "ray/_raylet.so").read_bytes()
    tally = trim.trim(site)
    gone = [
        "ray/jars",
        "numpy/tests",
        "pkg/sub/tests",
        "ray/dashboard/client/build/js/main.js.map",
        "pip/_vendor/distlib/t64.exe",
        "virtualenv/seed/wheels/embed/pip-old.whl",
        "debugpy/_vendored/pydevd/pydevd_attach_to_process/attach_amd64.dll",
        "debugpy/_vendored/pydevd/pydevd_attach_to_process/attach_amd64.pdb",
        "debugpy/_vendored/pydevd/pydevd_attach_to_process/attach.dylib",
        "debugpy/_vendored/pydevd/pydevd_attach_to_process/pydevd_cython.cp311-win_amd64.pyd",
        "jupyterlab/galata",
    ]
    assert [p for p in gone if (site / p).exists()] == []
    kept = [
        "debugpy/_vendored/pydevd/pydevd_attach_to_process/attach_linux_amd64.so",
        "debugpy/_vendored/pydevd/pydevd_attach_to_process/named.dll",
        "jupyterlab/static/main.js",
        "ray/dashboard/client/build/js/main.js",
        "virtualenv/seed/wheels/embed/pip-new.whl",
        "virtualenv/seed/wheels/embed/setuptools-new.whl",
        "numpy",
    ]
    assert [p for p in kept if not (site / p).exists()] == []
    assert sections(site / "pkg/_speedups.so")[".debug_info"] == 0
    assert (site / "ray/_raylet.so").read_bytes() == raylet  # Ray's own: untouched
    vendored = site / "ray/_private/runtime_env/agent/thirdparty_files/aiohttp/_http_parser.so"
    assert sections(vendored)[".debug_info"] == 0  # vendored by Ray, not Ray's own
    assert set(tally.kinds) == {
        "ray/jars",
        "tests",
        "source maps",
        "Windows and macOS binaries",
        "JupyterLab's UI-test extension",
        "seed wheels for other Pythons",
        "debug sections",
    }
    assert tally.kinds["tests"][0] == 2
    assert tally.kinds["Windows and macOS binaries"][0] == 5
    assert tally.kinds["debug sections"][0] == 2
    assert all(p.stat().st_nlink == 1 for p in site.rglob("*") if p.is_file())  # not asked to


def test_duplicates_become_links_to_the_first_and_differences_keep_them_apart(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site-packages"
    for d in ("a", "b", "c"):
        (site / d).mkdir(parents=True)
    for d in ("a", "b", "c"):
        (site / d / "LICENSE").write_text("MIT\n" * 100)
    (site / "b/other.txt").write_text("MIT\n" * 99 + "BSD\n")  # same size, other content
    (site / "c/LICENSE").chmod(0o600)  # other mode: kept apart
    (site / "a/empty").write_text("")
    (site / "b/empty").write_text("")
    tally = trim.trim(site, link_root=site)
    first = (site / "a/LICENSE").stat()
    assert (site / "b/LICENSE").stat().st_ino == first.st_ino
    assert first.st_nlink == 2
    assert (site / "c/LICENSE").stat().st_nlink == 1
    assert (site / "b/other.txt").read_text().endswith("BSD\n")
    assert (site / "b/other.txt").stat().st_nlink == 1
    assert (site / "b/empty").stat().st_nlink == 1  # empty files: nothing to save
    assert (site / "b/LICENSE").read_text() == "MIT\n" * 100
    assert tally.kinds["duplicate files"] == [1, 400]
    assert not list(site.rglob("*.trim-link"))
    assert trim.trim(site, link_root=site).kinds == {}  # linked files stay linked


def test_files_of_lower_layers_are_neither_linked_nor_linked_to(tmp_path: Path) -> None:
    """A later layer lists what it found before its install (`--list`), installs, then links
    only among the files it wrote (`--except-listed`): a link to a lower layer's file would
    copy that file up into the layer."""
    venv = tmp_path / "venv"
    site = venv / "lib/site-packages"
    (site / "runtime").mkdir(parents=True)
    (site / "runtime/LICENSE").write_text("MIT\n" * 100)
    listed = tmp_path / "lower"
    assert trim.main(["trim.py", "--list", str(venv), str(listed)]) == 0
    assert listed.read_bytes() == b"lib/site-packages/runtime/LICENSE\0"
    static = ("share/jupyter/lab/static/app.js", "lib/site-packages/jupyterlab/static/app.js")
    for rel in static:
        (venv / rel).parent.mkdir(parents=True)
        (venv / rel).write_text("console.log(1);\n" * 50)
    (site / "notebook").mkdir()
    (site / "notebook/LICENSE").write_text("MIT\n" * 100)  # the runtime's license again
    args = ["--link-duplicates", str(venv), "--except-listed", str(listed), str(site)]
    assert trim.main(["trim.py", *args]) == 0
    assert (venv / static[0]).stat().st_ino == (venv / static[1]).stat().st_ino
    assert (site / "runtime/LICENSE").stat().st_nlink == 1
    assert (site / "notebook/LICENSE").stat().st_nlink == 1  # its twin is below: kept apart
    again = trim.trim(site, link_root=venv)  # without the list, the runtime's file is linked
    assert again.kinds["duplicate files"][0] == 1


def test_a_second_trim_changes_nothing_and_rewrites_no_file(tmp_path: Path) -> None:
    site = site_tree(tmp_path, build_so(tmp_path, "libdebug.so", "-g"))
    trim.trim(site)
    stamps = {p: p.stat().st_mtime_ns for p in site.rglob("*") if p.is_file()}
    again = trim.trim(site)
    assert again.kinds == {}
    assert {p: p.stat().st_mtime_ns for p in site.rglob("*") if p.is_file()} == stamps


def test_seed_wheels_are_kept_when_the_table_is_missing_or_lacks_this_python(
    tmp_path: Path,
) -> None:
    embed = tmp_path / "virtualenv/seed/wheels/embed"
    embed.mkdir(parents=True)
    (embed / "pip-1.whl").write_bytes(b"PK")
    (embed / "__init__.py").write_text("BUNDLE = 1\n")
    assert trim.other_seed_wheels(tmp_path) == []
    (embed / "__init__.py").write_text('BUNDLE_SUPPORT = {"2.7": {"pip": "pip-0.whl"}}\n')
    assert trim.other_seed_wheels(tmp_path) == []


def test_main_refuses_a_missing_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert trim.main(["trim.py", str(tmp_path / "nowhere")]) == 2
    assert "usage" in capsys.readouterr().err
    assert trim.main(["trim.py", "--link", str(tmp_path)]) == 2  # an unknown option
    assert trim.main(["trim.py", "--link-duplicates", str(tmp_path)]) == 2  # no root
    assert trim.main(["trim.py", "--link-duplicates", str(tmp_path), str(tmp_path)]) == 0
    listed = tmp_path / "lower"
    assert trim.main(["trim.py", "--except-listed", str(listed), str(tmp_path)]) == 2
    link = ["--link-duplicates", str(tmp_path)]
    assert trim.main(["trim.py", *link, "--except-listed", str(listed), str(tmp_path)]) == 2
    assert trim.main(["trim.py", "--list", str(tmp_path / "nowhere"), str(listed)]) == 2
    assert not listed.exists()
    assert "usage" in capsys.readouterr().err
    listed.write_bytes(b"")  # an empty list: every lower file would be linked, so refused
    assert trim.main(["trim.py", *link, "--except-listed", str(listed), str(tmp_path)]) == 2
    assert "lists no file" in capsys.readouterr().err
