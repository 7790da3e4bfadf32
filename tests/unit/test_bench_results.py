"""The benchmarks page's tables and plots are the results file's, never typed by hand."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import ROOT


def bench_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", ROOT / "benchmarks" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def results_module() -> ModuleType:
    return bench_module("results")


def recorded(bench: str, figures: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """One run as `results.record` writes it; `fields` replace the defaults."""
    return {
        "bench": bench,
        "commit": "abc",
        "dirty": False,
        "finished": "2026-12-06T00:00:00Z",
        "machine": {"cores": 2, "loop_s_start": 0.5, "loop_s_end": 0.5},
        "rounds": [{"exit": 0, "seconds": 30.0}],
        "figures": figures,
        "details": {},
        **fields,
    }


def test_the_readme_tables_are_generated_from_the_results_file() -> None:
    results = results_module()
    assert results.main(["--check"]) == 0, "run `python benchmarks/results.py`"


def test_a_figure_changed_in_the_file_or_the_readme_is_caught(tmp_path: Path) -> None:
    results = results_module()
    run = recorded(
        "cell",
        {"test_median_s": 30.1, "not_passed": 1},
        rounds=[{"exit": 0, "seconds": 30.1}, {"exit": 1, "seconds": 31.0}],
        details={"cell": "ray2.60.0-py3.11.2-cpu"},
    )
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


LOG = [
    (1.0, "[10:41:39] ray2.60.0-py3.11.2-cpu: starting rh-a1-b1: head, 1 worker(s), notebook"),
    (7.0, "[10:41:45] ray2.60.0-py3.11.2-cpu: waiting for head + worker ..."),
    (7.5, "[10:41:45] ray2.60.0-py3.11.2-cpu: Serve application over HTTP ..."),
    (9.5, "[10:41:47] ray2.60.0-py3.11.2-cpu: waiting for head + worker: done in 2.5s"),
    (9.6, "[10:41:47] ray2.60.0-py3.11.2-cpu: a node without the token: refused in 13s"),
    (20.0, "[10:42:05] ray2.60.0-py3.11.2-cpu: Serve application over HTTP: done in 12.5s"),
    (21.0, "[10:42:14] ray2.60.0-py3.11.2-cpu: removed 3 containers, the network"),
]


def test_the_profile_times_each_logged_step_and_the_start_and_teardown() -> None:
    profile = bench_module("cpu_profile")
    got = profile.steps(LOG, 0.5, lambda t0, t1: 2 * (t1 - t0))  # a host busy on 2 cores
    assert [(s["step"], s["start_s"], s["wall_s"], s["host_cpu_s"]) for s in got] == [
        (profile.STARTUP, 0.5, 6.0, 12.0),
        ("waiting for head + worker", 6.5, 2.5, 5.0),
        ("Serve application over HTTP", 7.0, 12.5, 25.0),
        (profile.TEARDOWN, 19.5, 1.0, 2.0),
    ]


@pytest.mark.parametrize(
    ("cmdline", "kind"),
    [
        ("ray::ServeReplica:raycompat:Facts", "Serve: controller, proxies, replicas"),
        ("ray::JobSupervisor", "Jobs API: job supervisors"),
        ("ray::IDLE", "Ray workers (tasks, actors, idle)"),
        (
            "/opt/ray/bin/python /opt/ray/bin/ray start --address=ray-head:6379 --num-cpus=0",
            "`ray start --address` (the notebook joining)",
        ),
        ("python - auth --dashboard http://ray-head:8265", "probe: auth attempts"),
        ("/usr/sbin/dockerd -H fd://", "Docker engine (dockerd, containerd, runc)"),
        ("something else", "other processes"),
    ],
)
def test_processes_are_named_by_their_kind(cmdline: str, kind: str) -> None:
    assert bench_module("cpu_profile").kind(cmdline)[0] == kind


def test_the_profile_is_on_the_page() -> None:
    results = results_module()
    run = recorded(
        "cell",
        {"test_median_s": 30.1},
        details={
            "cell": "c",
            "profile": {
                "wall_s": 10.0,
                "host_cpu_s": 15.0,
                "cores": 2,
                "processes_cpu_s": 12.0,
                "steps": [{"step": "waiting", "start_s": 1.0, "wall_s": 2.0, "host_cpu_s": 3.0}],
                "by_kind": [{"kind": "raylet", "serves": "cluster", "processes": 3, "cpu_s": 6.0}],
            },
        },
    )
    text = results.render([run])
    assert "the host was busy 15.0 CPU-s of 2 cores x 10.0 s (75 %)" in text
    assert "| waiting | 1.0 | 2.0 | 3.0 |" in text
    assert "| raylet | cluster | 3 | 6.0 | 50 % |" in text


def test_a_figure_the_newest_run_skipped_comes_from_the_newest_run_that_measured_it() -> None:
    results = results_module()

    def run(commit: str, finished: str, figures: dict[str, Any]) -> dict[str, Any]:
        return recorded("matrix", figures, commit=commit, finished=finished)

    older = run("aaa", "2026-12-05T00:00:00Z", {"grid_s": 150.0, "noop_build_s": 1.1})
    old = run("bbb", "2026-12-06T00:00:00Z", {"grid_s": 145.8, "noop_build_s": 1.0})
    new = run("ccc", "2026-12-07T00:00:00Z", {"grid_s": None, "noop_build_s": 0.8})
    text = results.render([older, old, new])
    assert "| no-op build | 0.8 s | ≤ 1 s |" in text  # the newest run's own figure
    assert (
        "| compatibility grid | 145.8 s (not measured in this run; commit `bbb`, "
        "2026-12-06T00:00:00Z) | ≤ 150 s |"
    ) in text
    # never measured by any run: shown as such, not dropped
    alone = results.render([run("ddd", "2026-12-07T00:00:00Z", {"grid_s": None})])
    assert "| compatibility grid | – | ≤ 150 s |" in alone


def test_a_build_warning_is_shown_but_not_a_flake_and_a_retry_is() -> None:
    common = bench_module("common")
    cell: dict[str, Any] = {
        "checks": [
            {"name": "freshness:os", "status": "warning", "stage": "build", "detail": "libssl"},
            {"name": "cluster:ready", "status": "passed", "stage": "test", "data": {}},
            {
                "name": "client:connect",
                "status": "passed",
                "stage": "test",
                "data": {"retries": 1},
            },
            {"name": "gpu:e2e", "status": "skipped", "stage": "test"},
        ]
    }
    assert common.not_passed(cell) == ["client:connect: passed after 1 retries"]
    assert common.warnings(cell) == ["freshness:os: warning: libssl"]
    failed = {"checks": [{"name": "jobs:submit", "status": "failed", "stage": "test"}]}
    assert common.not_passed(failed) == ["jobs:submit: failed"]
    results = results_module()
    run = recorded(
        "fresh",
        {"not_passed": 0},
        details={"warnings": {"ray2.60.0-py3.13.5-cpu": common.warnings(cell)}},
    )
    assert "- ray2.60.0-py3.13.5-cpu: freshness:os: warning: libssl" in results.render([run])


def test_a_builds_only_matrix_run_shows_no_test_time_and_both_pull_sizes() -> None:
    """A `--rounds 0` run tested nothing: its cells show "–" for the test, even where an
    older record says 0.0; each notebook shows its gzip and its zstd pull."""
    results = results_module()
    cell = {"id": "c1", "status": "built", "test_s": 0.0, "size_head_mb": 471.3}
    cell |= {"size_notebook_mb": 623.8, "pull_head_mb": 148.0, "pull_notebook_mb": 190.8}
    cell |= {"pull_notebook_zstd_mb": 156.7}
    figures = {"cells": 1, "pull_notebook_max_mb": 190.8, "pull_notebook_zstd_max_mb": 156.7}
    text = results.render([recorded("matrix", figures, rounds=[], details={"cells": [cell]})])
    assert "| c1 | built | – | 471.3 | 623.8 | 148.0 | 190.8 | 156.7 |" in text
    assert "| largest notebook pull, gzip layers | 190.8 MB | ≤ 160 MB |" in text
    assert "| largest notebook pull, zstd layers (opt-in) | 156.7 MB | ≤ 160 MB |" in text
    tested = recorded("matrix", figures, details={"cells": [cell | {"test_s": 33.0}]})
    assert "| c1 | built | 33.0 | 471.3 |" in results.render([tested])
