"""The build and test loops driven with a fake engine and fake per-cell work (no Docker),
as cibuildwheel's unit tests patch the process layer: concurrency, one failing cell not
stopping the others, results carried forward, reports and exit codes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import audit, diskspace, freshness, matrix, report, timeouts
from harness.backends import Cluster
from harness.base import BaseImage
from harness.build import BuildFailed
from harness.commands import Context
from harness.commands import build as build_cmd
from harness.commands import test as test_cmd
from harness.engine import Engine
from harness.errors import EngineError
from harness.matrix import ROLES, Cell
from harness.paths import Paths
from harness.results import PASSED, REQUIRED_CHECKS, SKIPPED, Check, Image, Status
from tests.conftest import ROOT

TEXT = 'version: 1\nray: ["2.60.0"]\npython: ["3.11.2", "3.13.5"]\nvariants: [cpu]\n'


class FakeEngine:
    """Answers `inspect` for the images a build made, and has no replaced base to list."""

    cli = "docker"

    def __init__(self) -> None:
        self.images: dict[str, str] = {}

    def inspect(self, kind: str, ref: str) -> dict[str, Any] | None:
        return {"Id": self.images[ref]} if ref in self.images else None

    def ids(self, kind: str, labels_: dict[str, str]) -> list[str]:
        return []


class Peak:
    """How many cells ran at once."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self.lock = threading.Lock()

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    (tmp_path / "matrix.yaml").write_text(TEXT)
    m = matrix.load(tmp_path / "matrix.yaml")
    paths = Paths(tmp_path, tmp_path / "build", ROOT / "locks", ROOT / "images", tmp_path / "wh")
    return Context(m, paths, list(m.cells), [], "run1")


@pytest.fixture
def fake_build(
    monkeypatch: pytest.MonkeyPatch, ctx: Context
) -> Iterator[tuple[FakeEngine, Peak, set[str]]]:
    """build_cell and the shared work faked; cells named in `broken` fail to build."""
    engine, peak, broken = FakeEngine(), Peak(), set[str]()
    base = BaseImage("b", "sha256:b", "3.11.2", None, "debian:bookworm")

    def build_cell(eng: Any, m: Any, paths: Any, c: Cell, *rest: Any) -> Any:
        with peak:
            if c.id in broken:
                raise BuildFailed("head", paths.logs(c.id) / "head.log", "exit code: 3")
            images = []
            for role in ROLES:
                engine.images[c.tag(m.prefix, role)] = f"sha256:{c.id}-{role}"
                images.append(Image(role, c.tag(m.prefix, role), f"sha256:{c.id}-{role}", 1))
            checks = [Check(f"image:{role}:python", PASSED, "ok", "build") for role in ROLES]
            return images, checks

    monkeypatch.setattr(build_cmd, "build_cell", build_cell)
    monkeypatch.setattr(build_cmd, "prepare", lambda *a, **k: {c.id: base for c in ctx.cells})
    monkeypatch.setattr(diskspace, "plan", lambda *a, **k: [])
    monkeypatch.setattr(diskspace, "docker_root", lambda *a: None)
    unaudited = Check("audit:locks", SKIPPED, "no data", "build")
    monkeypatch.setattr(audit, "check", lambda *a, **k: unaudited)
    unknown = Check("freshness:os", SKIPPED, "no mirror here", "build")
    monkeypatch.setattr(freshness, "check", lambda *a, **k: unknown)
    yield engine, peak, broken


def as_engine(fake: FakeEngine) -> Engine:
    return fake  # type: ignore[return-value]


def test_build_loop_runs_cells_at_once_and_one_failure_stops_nothing(
    ctx: Context, fake_build: tuple[FakeEngine, Peak, set[str]]
) -> None:
    engine, peak, broken = fake_build
    broken.add("ray2.60.0-py3.11.2-cpu")
    rc = build_cmd.build_cells(as_engine(engine), ctx, no_cache=False, at_once=2)
    assert rc == 1
    assert peak.most == 2
    cells = report.read(ctx.paths.build / "report.json").cells
    assert cells["ray2.60.0-py3.11.2-cpu"].status == "failed"
    assert cells["ray2.60.0-py3.11.2-cpu"].build_checks[0].name == "build:head"
    assert cells["ray2.60.0-py3.13.5-cpu"].status == "built"


def test_build_keeps_the_last_test_of_the_same_images_and_exits_on_the_build(
    ctx: Context, fake_build: tuple[FakeEngine, Peak, set[str]]
) -> None:
    engine, _, _ = fake_build
    assert build_cmd.build_cells(as_engine(engine), ctx, False, 1) == 0
    state = report.load_state(ctx.paths.state)
    cell = state["ray2.60.0-py3.13.5-cpu"]
    cell.test_checks = [Check("workload:tasks", Status("failed"), "wrong results")]
    cell.tested_image_ids = {i.role: i.id for i in cell.images}
    report.write(ctx.paths.build, state, "m", "run0")
    assert build_cmd.build_cells(as_engine(engine), ctx, False, 1) == 0  # the build is fine
    kept = report.read(ctx.paths.build / "report.json").cells["ray2.60.0-py3.13.5-cpu"]
    assert kept.status == "failed" and kept.test_checks[0].name == "workload:tasks"


def no_cluster(c: Cell) -> Callable[[], Cluster]:
    def make() -> Cluster:
        raise AssertionError("the fake test_cell starts no cluster")

    return make


def test_test_loop_records_tested_ids_and_an_aborted_cell_stops_only_itself(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = FakeEngine()
    for c in ctx.cells:
        for role in ROLES:
            engine.images[c.tag(ctx.matrix.prefix, role)] = f"sha256:{c.id}-{role}"
    peak = Peak()

    def test_cell(c: Cell, *rest: Any) -> Any:
        with peak:
            if "3.11.2" in c.id:
                raise EngineError("`docker network create ...` failed: pool overlaps")
            return [Check(n, PASSED, "same") for n in REQUIRED_CHECKS], {"test_seconds": 1.0}

    monkeypatch.setattr(test_cmd, "test_cell", test_cell)
    images = {c.id: c.tags(ctx.matrix.prefix) for c in ctx.cells}
    rc = test_cmd.test_cells(as_engine(engine), ctx, images, timeouts.DEFAULT, 1, no_cluster)
    assert rc == 1 and peak.most == 1
    cells = report.read(ctx.paths.build / "report.json").cells
    aborted = cells["ray2.60.0-py3.11.2-cpu"]
    assert aborted.status == "failed"
    assert (
        aborted.test_checks[0].status == "error"
        and "pool overlaps" in aborted.test_checks[0].detail
    )
    ok = cells["ray2.60.0-py3.13.5-cpu"]
    assert ok.status == "passed"
    assert ok.tested_image_ids == {r: f"sha256:ray2.60.0-py3.13.5-cpu-{r}" for r in ROLES}


def test_run_cells_yields_every_result(ctx: Context) -> None:
    from harness.commands import run_cells

    work: Callable[[Cell], Any] = lambda c: report.fresh(c)  # noqa: E731
    done = [r.id for _, r in run_cells(ctx.cells, work, 2, "x")]
    assert sorted(done) == sorted(c.id for c in ctx.cells)


def test_bases_build_while_the_wheels_download_and_each_failure_stays_with_its_cells(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness import build as build_mod
    from harness.errors import HarnessError

    base_started = threading.Event()

    def ensure_base(engine: Any, m: Any, cell: Cell, work: Path, fresh: bool = False) -> Any:
        base_started.set()
        if cell.python == "3.13.5":
            raise HarnessError("mmdebstrap trixie failed")
        return BaseImage("b", "sha256:b", cell.python, None, "debian:bookworm")

    def fetch_wheels(paths: Paths, cells: list[Cell], house: object) -> dict[str, str]:
        # with bases built only after the wheels, this would wait in vain
        assert base_started.wait(10), "no base started while the wheels downloaded"
        return {"ray2.60.0-py3.11.2-cpu": "wheels: no wheel for numpy"}

    monkeypatch.setattr(build_mod, "ensure_base", ensure_base)
    monkeypatch.setattr(build_mod, "_fetch_wheels", fetch_wheels)
    out = build_mod.prepare(as_engine(FakeEngine()), ctx.matrix, ctx.paths, ctx.cells)
    assert out["ray2.60.0-py3.11.2-cpu"] == "wheels: no wheel for numpy"
    assert out["ray2.60.0-py3.13.5-cpu"] == (
        "base debian:trixie for Python 3.13.5: mmdebstrap trixie failed"
    )


def test_each_platform_gets_its_own_base(
    write_matrix: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness import build as build_mod
    from harness import matrix as matrix_mod

    m = matrix_mod.load(
        write_matrix('ray: ["2.60.0"]\npython: ["3.11.2"]\nplatforms: [linux/amd64, linux/arm64]\n')
    )
    asked: list[str] = []

    def ensure_base(engine: Any, m: Any, cell: Cell, work: Path, fresh: bool = False) -> Any:
        asked.append(cell.platform)
        return BaseImage(cell.arch, "sha256:" + cell.arch, cell.python, None, "debian:bookworm")

    monkeypatch.setattr(build_mod, "ensure_base", ensure_base)
    monkeypatch.setattr(build_mod, "_fetch_wheels", lambda paths, cells, house: {})
    paths = Paths.for_matrix(m.path)
    out = build_mod.prepare(as_engine(FakeEngine()), m, paths, list(m.cells))
    assert sorted(asked) == ["linux/amd64", "linux/arm64"]
    assert {cid: b.ref for cid, b in out.items() if isinstance(b, BaseImage)} == {
        "ray2.60.0-py3.11.2-cpu": "amd64",
        "ray2.60.0-py3.11.2-cpu-arm64": "arm64",
    }
