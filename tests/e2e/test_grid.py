"""The compatibility grid for real: trixie's Python 3.13.5 and forky's 3.13.15 (same minor,
different micro) and Ray 2.51.2 vs 2.60.0, every notebook image against every cluster."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from harness.engine import Engine
from harness.labels import RUN as LABEL_RUN
from tests.conftest import ROOT
from tests.e2e.cli import harness

pytestmark = pytest.mark.e2e
OLD = "ray2.60.0-py3.13.5-cpu"
NEW = "ray2.60.0-py3.13.15-cpu"
RAY_OLD = "ray2.51.2-py3.13.5-cpu"


@pytest.fixture(scope="module")
def grid() -> dict[tuple[str, str], dict[str, Any]]:
    build_dir = ROOT / "build" / "grid-e2e"
    run_id = "grid" + uuid.uuid4().hex[:8]
    built = harness("build", "--only", "python=3.13.*,variant=cpu", run_id=run_id)
    assert built.returncode == 0, built.stderr[-3000:]
    r = harness("grid", "--build-dir", str(build_dir), run_id=run_id)
    assert r.returncode == 0, r.stderr[-3000:]
    engine = Engine()
    for kind in ("container", "network"):
        assert engine.ids(kind, {LABEL_RUN: run_id}) == []
    assert (build_dir / "grid.md").is_file() and (build_dir / "grid.html").is_file()
    doc = json.loads((build_dir / "grid.json").read_text())
    return {(p["notebook"], p["cluster"]): p for p in doc["pairs"]}


def test_every_notebook_meets_every_cluster(grid: dict[tuple[str, str], dict[str, Any]]) -> None:
    cells = {OLD, NEW, RAY_OLD}
    assert set(grid) == {(nb, cl) for nb in cells for cl in cells}


@pytest.mark.parametrize("cell", [OLD, NEW, RAY_OLD])
def test_matching_pairs_raise_no_alarm(
    grid: dict[tuple[str, str], dict[str, Any]], cell: str
) -> None:
    p = grid[(cell, cell)]
    assert (p["harness"]["verdict"], p["harness"]["reasons"]) == ("compatible", [])
    assert p["ray_client"]["verdict"] == "accepted", p["ray_client"]
    assert p["ray_driver"]["verdict"] == "accepted", p["ray_driver"]
    assert p["ray_jobs"]["verdict"] == "accepted", p["ray_jobs"]
    assert p["harness_jobs"]["verdict"] == "compatible", p["harness_jobs"]
    assert p["relaxed"] is None  # nothing to force


@pytest.mark.parametrize(("nb", "cl"), [(NEW, OLD), (OLD, NEW)], ids=["newer-client", "older"])
def test_micro_mismatch_both_directions(
    grid: dict[tuple[str, str], dict[str, Any]], nb: str, cl: str
) -> None:
    p = grid[(nb, cl)]
    micro = {OLD: "3.13.5", NEW: "3.13.15"}
    # Ray: the client connects with only a warning, the driver is rejected at patch level
    assert p["ray_client"]["verdict"] == "warned", p["ray_client"]
    assert "mismatch" in p["ray_client"]["message"].lower()
    assert p["ray_driver"]["verdict"] == "rejected", p["ray_driver"]
    assert "Version mismatch" in p["ray_driver"]["message"]
    # the harness marks the pair incompatible and says why
    assert p["harness"]["verdict"] == "incompatible"
    assert f"python: notebook {micro[nb]} vs cluster {micro[cl]}" in p["harness"]["reasons"]
    # while a job submitted from that notebook runs on the cluster's interpreter: safe
    assert p["ray_jobs"]["verdict"] == "accepted", p["ray_jobs"]
    assert p["harness_jobs"]["verdict"] == "compatible", p["harness_jobs"]
    # forcing the driver past Ray's check was tried, and what it did is recorded
    relaxed = p["relaxed"]
    assert relaxed is not None and relaxed["joined"], relaxed
    trips = relaxed["roundtrips"]
    assert set(trips) >= {"function", "class instance", "closure", "actor"}, trips
    assert "array" in trips  # numpy is in every notebook image
    # each round trip ran and came back right, not only was attempted ("ok" or Ray's error)
    assert {name: outcome for name, outcome in trips.items() if outcome != "ok"} == {}


@pytest.mark.parametrize(("nb", "cl"), [(RAY_OLD, OLD), (OLD, RAY_OLD)], ids=["older", "newer"])
def test_ray_version_mismatch(
    grid: dict[tuple[str, str], dict[str, Any]], nb: str, cl: str
) -> None:
    p = grid[(nb, cl)]
    assert p["harness"]["verdict"] == "incompatible"
    assert any(r.startswith("ray: notebook") for r in p["harness"]["reasons"])
    # Ray refuses on both paths, though not always with its version message: across these
    # Ray versions the joining node fails on GCS protocol differences first.
    assert p["ray_client"]["verdict"] in ("rejected", "error"), p["ray_client"]
    assert p["ray_driver"]["verdict"] in ("rejected", "error"), p["ray_driver"]
    assert p["harness"]["verdict"] != "compatible"
    if nb == RAY_OLD:  # Ray 2.51.2 sends no token: the server's own refusal, not a timeout
        said = p["ray_client"]["message"]
        assert "the server said: Invalid or missing authentication token" in said, said


def test_a_pair_test_proved_is_not_run_again(tmp_path: Path) -> None:
    """`test` of one cell, then a grid of that cell in the same build directory: the pair is
    taken from the test (no cluster started), and `--no-reuse` runs it all the same."""
    only = ["--only", "ray=2.60.0,python=3.13.5,variant=cpu", "--build-dir", str(tmp_path)]
    assert harness("build", *only).returncode == 0
    tested = harness("test", *only)
    assert tested.returncode == 0, tested.stderr[-3000:]
    reused = harness("grid", *only)
    assert reused.returncode == 0, reused.stderr[-3000:]
    assert "starting rh-" not in reused.stderr  # no cluster
    assert f"grid: {OLD} -> {OLD}: from test (same image ids" in reused.stderr
    doc = json.loads((tmp_path / "grid.json").read_text())
    (p,) = doc["pairs"]
    assert p["proven_by"].startswith("test") and p["harness"]["verdict"] == "compatible"
    assert [p[k]["verdict"] for k in ("ray_client", "ray_driver", "ray_jobs")] == ["accepted"] * 3
    assert "## Taken from `test`" in (tmp_path / "grid.md").read_text()
    again = harness("grid", *only, "--no-reuse")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "starting rh-" in again.stderr
    (p,) = json.loads((tmp_path / "grid.json").read_text())["pairs"]
    assert p["proven_by"] == "" and p["ray_driver"]["verdict"] == "accepted"
