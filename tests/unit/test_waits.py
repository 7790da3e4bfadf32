"""docs/explanation/waits.md lists every wait in the harness's code, and only those."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import ROOT

PAGE = ROOT / "docs" / "explanation" / "waits.md"
WAITS = {"sleep", "wait", "with_poll_interval", "wait_until_ready"}
LISTED = re.compile(r"^\| `([\w/]+\.py): ([\w.]+)` \|", re.MULTILINE)


def waits_in_code(root: Path = ROOT / "harness") -> set[str]:
    """`module: function` for every call of a waiting function under `root`."""
    found: set[str] = set()
    for path in sorted(root.rglob("*.py")):

        def walk(node: ast.AST, names: list[str], path: Path = path) -> None:
            for child in ast.iter_child_nodes(node):
                inner = names
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                    inner = [*names, child.name]
                if isinstance(child, ast.Call):
                    f = child.func
                    name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                    if name in WAITS:
                        where = path.relative_to(root).as_posix()
                        found.add(f"{where}: {'.'.join(names) or '<module>'}")
                walk(child, inner)

        walk(ast.parse(path.read_text(encoding="utf-8")), [])
    return found


def test_every_wait_in_the_code_is_on_the_page_and_only_those() -> None:
    listed = {f"{m}: {f}" for m, f in LISTED.findall(PAGE.read_text(encoding="utf-8"))}
    code = waits_in_code()
    assert code - listed == set(), "a wait the page does not list (docs/explanation/waits.md)"
    assert listed - code == set(), "the page lists a wait the code no longer has"


def test_the_scan_finds_a_new_wait(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("import time\ndef f():\n    def g():\n        time.sleep(3)\n")
    assert waits_in_code(tmp_path) == {"m.py: f.g"}
