"""The benchmarks page's tables and plots are the results file's, never typed by hand."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import ROOT


def results_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_results", ROOT / "benchmarks" / "results.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_tables_are_generated_from_the_results_file() -> None:
    results = results_module()
    assert results.main(["--check"]) == 0, "run `python benchmarks/results.py`"


def test_a_figure_changed_in_the_file_or_the_readme_is_caught(tmp_path: Path) -> None:
    results = results_module()
    run: dict[str, Any] = {
        "bench": "cell",
        "commit": "abc",
        "dirty": False,
        "finished": "2026-12-06T00:00:00Z",
        "machine": {"cores": 2, "loop_s_start": 0.35, "loop_s_end": 0.36},
        "rounds": [{"exit": 0, "seconds": 30.1}, {"exit": 1, "seconds": 31.0}],
        "figures": {"test_median_s": 30.1, "not_passed": 1},
        "details": {"cell": "ray2.60.0-py3.11.2-cpu"},
    }
    text = results.render([run])
    assert "| end-to-end test, CLI wall time, median | 30.1 s | ≤ 20 s |" in text
    assert "Rounds' exit codes: 0, 1." in text  # a failed round is shown, not dropped
    edited = results.render([{**run, "figures": {**run["figures"], "test_median_s": 19.0}}])
    assert edited != text


def test_recording_appends_and_refuses_unknown_figures(tmp_path: Path) -> None:
    results = results_module()
    path = tmp_path / "results.json"
    results.record("cell", {"runs": 1}, [{"exit": 0, "seconds": 1.0}], (0.3, 0.4), path=path)
    results.record("fresh", {"total_s": 500.0}, [], (0.3, 0.4), path=path)
    runs = json.loads(path.read_text())["runs"]
    assert [r["bench"] for r in runs] == ["cell", "fresh"]
    assert runs[0]["rounds"] == [{"exit": 0, "seconds": 1.0}] and runs[0]["commit"]
    with pytest.raises(ValueError, match="made_up"):
        results.record("cell", {"made_up": 1}, [], (0.3, 0.4), path=path)
