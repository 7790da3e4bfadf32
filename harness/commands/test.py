"""`test`: a cluster from each cell's images (containers, or Kubernetes), every check."""

from __future__ import annotations

import argparse
import contextlib
from collections import Counter
from collections.abc import Callable

from harness import registry, report, timeouts
from harness.backends import Cluster, open_backend
from harness.commands import Context, context, jobs, require_built, run_cells
from harness.engine import Engine, image_ids
from harness.errors import HarnessError
from harness.matrix import Cell
from harness.progress import log
from harness.results import ERROR, FAILED, CellResult, CellStatus, Check
from harness.turns import Alone, Turn, Turns
from harness.verify import test_cell

ClusterFor = Callable[[Cell], Callable[[], Cluster]]


def run(args: argparse.Namespace, run_id: str) -> int:
    ctx = context(args, run_id)
    engine = Engine()
    engine.ping()
    state = report.load_state(ctx.paths.state)
    images_of: dict[str, dict[str, str]] = {}
    for c in ctx.cells:  # every image must exist before any cluster starts
        previous = state.get(c.id)
        if not (previous and any(k.status == FAILED for k in previous.build_checks)):
            require_built(engine, ctx.matrix, c)  # a failed build is reported, not tested
        images_of[c.id] = c.tags(ctx.matrix.prefix)
    kube = args.backend == "kind"
    foreign = [c.id for c in ctx.cells if not c.native]
    if kube and foreign:
        raise HarnessError(
            f"--backend kind runs linux/amd64 nodes: {', '.join(foreign)} cannot be tested "
            "there; test them with the containers backend (under emulation) and select the "
            "others with --only platform=linux/amd64"
        )
    waits = timeouts.from_args(args, timeouts.KUBE if kube else timeouts.DEFAULT)
    backend = open_backend(
        args.backend, engine, run_id, args.kube_context, args.kind_node_image, pushed(args, ctx)
    )
    # what each cluster runs: local tags, or pushed digests where it pulls (checked before
    # anything is created)
    deploy = {c.id: backend.images_for(c, images_of[c.id]) for c in ctx.cells}
    at_once = 1 if kube else jobs(args, len(ctx.cells), cores_per_job=2, gib_per_job=6)
    with backend:
        backend.load([tag for c in ctx.cells for tag in images_of[c.id].values()])

        def cluster_for(c: Cell) -> Callable[[], Cluster]:
            log_dir = ctx.paths.logs(c.id) / ("kube" if kube else "cluster")
            return lambda: backend.cluster(c, deploy[c.id], log_dir, bounds(waits, c))

        # Kubernetes: one cell at a time, each alone (the overlap was measured on
        # containers only)
        turns = None if kube else Turns(at_once)
        return test_cells(
            engine, ctx, images_of, waits, at_once, cluster_for, turns, tested_on=args.backend
        )


def bounds(waits: timeouts.Timeouts, c: Cell) -> timeouts.Timeouts:
    """A cell's time bounds: `waits`, longer for a cell run under emulation."""
    return waits if c.native else waits.scaled(timeouts.EMULATION)


def test_cells(
    engine: Engine,
    ctx: Context,
    images_of: dict[str, dict[str, str]],
    waits: timeouts.Timeouts,
    at_once: int,
    cluster_for: ClusterFor,
    turns: Turns | None = None,
    tested_on: str = "containers",
) -> int:
    """Test every cell on the clusters `cluster_for` makes, `at_once` checking at a time
    (with `turns`, the next cluster starts while one is in its last phase); the report
    after each. Exit code 1 when a cell failed, errored or was not verified."""
    state = report.load_state(ctx.paths.state)
    overlaps = turns is not None and len(ctx.cells) > 1
    overlap = ", the next cluster starting during the last phase" if overlaps else ""
    log(f"testing {len(ctx.cells)} cell(s), {at_once} at a time{overlap}")

    def work(c: Cell) -> CellResult:
        previous = state.get(c.id) or report.fresh(c)
        with turns.cell() if turns else contextlib.nullcontext(Alone()) as turn:
            return test_one(
                engine,
                ctx,
                c,
                images_of[c.id],
                previous,
                bounds(waits, c),
                cluster_for(c),
                turn,
                tested_on,
            )

    failed = 0
    workers = turns.cells_at_once if turns else at_once
    for done, result in run_cells(ctx.cells, work, workers, "testing cells"):
        result.settle()
        failed += result.status in (CellStatus.FAILED, CellStatus.NOT_VERIFIED)
        state[result.id] = result
        counts = Counter(k.status for k in result.test_checks)
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        log(f"[{done}/{len(ctx.cells)}] {result.id}: {result.status} ({summary or 'no checks'})")
        report.write(ctx.paths.build, state, str(ctx.matrix.path), ctx.run_id, ctx.excluded())
    report.write(ctx.paths.build, state, str(ctx.matrix.path), ctx.run_id, ctx.excluded())
    log(f"report: {ctx.paths.build / 'report.md'}")
    return 1 if failed else 0


def test_one(
    engine: Engine,
    ctx: Context,
    c: Cell,
    tags: dict[str, str],
    result: CellResult,
    waits: timeouts.Timeouts,
    make_cluster: Callable[[], Cluster],
    turn: Turn,
    tested_on: str = "containers",
) -> CellResult:
    """One cell's cluster checks; an infrastructure failure stops only this cell."""
    if any(k.status == FAILED for k in result.build_checks):
        result.test_checks = []
        log(f"{c.id}: not tested, its build failed")
        return result
    ids = image_ids(engine, tags)
    log_dir = ctx.paths.logs(c.id) / "cluster"
    result.timings = {}  # this run's, not a mix with an earlier run's phases
    try:
        result.test_checks, timings = test_cell(c, log_dir, waits, make_cluster, turn)
    except HarnessError as exc:  # this cell's infrastructure failed: the others go on
        result.test_checks = [Check("test:aborted", ERROR, f"testing stopped: {exc}")]
        log(f"{c.id}: testing stopped: {exc}")
        return result
    result.tested_image_ids = ids
    result.tested_on = tested_on
    result.timings = timings
    return result


def pushed(args: argparse.Namespace, ctx: Context) -> dict[str, dict[str, str]]:
    """Pushed image refs by cell and role, for a kube context that pulls from a registry."""
    lock_path = ctx.paths.build / "images.lock.json"
    if args.kube_context and lock_path.is_file():
        return registry.read_lock(lock_path).refs()
    return {}
