"""`build`: bases, then each cell's head, worker and notebook images and their checks."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor

from harness import audit, base, diskspace, freshness, lock, report
from harness.base import BaseImage
from harness.base import drop_replaced as drop_replaced_bases
from harness.build import BuildFailed, build_cell, pins_sdists, prepare, with_sdists
from harness.commands import Context, context, jobs, run_cells
from harness.engine import Engine
from harness.errors import HarnessError
from harness.matrix import Cell
from harness.progress import log
from harness.results import ERROR, FAILED, CellResult, Check
from harness.wheelhouse import Wheelhouse

REPORT_EVERY = 1.0  # seconds: how far the report may lag the cells built
AUDITS_AT_ONCE = 4  # pip-audits at once: each waits on PyPI, not on the CPU


def run(args: argparse.Namespace, run_id: str) -> int:
    ctx = context(args, run_id)
    for c in ctx.cells:  # refuse stale locks before touching Docker
        lock.check(ctx.paths.locks, c, ctx.matrix)
        base.check_lock(ctx.matrix, c)
    engine = Engine()
    engine.look_for_cli()  # in the background; needed before anything is built
    engine.ping()
    return build_cells(engine, ctx, args.no_cache, jobs(args, len(ctx.cells), cores_per_job=1))


def build_cells(engine: Engine, ctx: Context, no_cache: bool, at_once: int) -> int:
    """Shared work once (wheels, bases), then every cell; the report after each cell.
    Exit code 1 when a cell's build or structure checks failed."""
    m, paths, cells = ctx.matrix, ctx.paths, ctx.cells
    wheelhouse = Wheelhouse(paths.wheelhouse)
    wheels_missing = {
        c.id
        for c in cells
        if any(
            wheelhouse.missing(lock.lock_path(paths.locks, c, k), c.python, c.arch)
            for k in lock.KINDS
        )
    }
    diskspace.check(
        diskspace.plan(
            engine,
            m,
            cells,
            paths.build,
            paths.wheelhouse,
            diskspace.docker_root(engine),
            wheels_missing,
        ),
        engine,
    )
    state = report.load_state(paths.state)
    # pip-audit waits on PyPI and apt on the mirror, not on the CPU: every cell's audit and
    # its base's security freshness run while the wheels, bases and images build (a fresh
    # audit takes ~16 s per cell, apt's pockets a few seconds per base; cached, none)
    auditor = ThreadPoolExecutor(max_workers=AUDITS_AT_ONCE, thread_name_prefix="raycompat-audit")
    try:
        audits = {c.id: auditor.submit(audit_cell, ctx, c) for c in cells}
        fresh = {
            c.id: auditor.submit(freshness.check, m, c, paths.root / ".cache" / "freshness")
            for c in cells
        }
        return _build_all(engine, ctx, no_cache, at_once, state, audits, fresh, wheelhouse)
    finally:
        auditor.shutdown(wait=False, cancel_futures=True)


def audit_cell(ctx: Context, c: Cell) -> Check:
    """The cell's `audit:locks` check (harness.audit), cached per lock for a day."""
    locks = [lock.lock_path(ctx.paths.locks, c, kind) for kind in lock.KINDS]
    return audit.check(locks, ctx.paths.root / ".cache" / "audit", ctx.matrix.audit)


def _build_all(
    engine: Engine,
    ctx: Context,
    no_cache: bool,
    at_once: int,
    state: dict[str, CellResult],
    audits: Mapping[str, Future[Check]],
    fresh: Mapping[str, Future[Check]],
    wheelhouse: Wheelhouse,
) -> int:
    m, paths, cells = ctx.matrix, ctx.paths, ctx.cells
    _ = engine.cli  # the BuildKit CLI must exist before anything is built
    bases = prepare(engine, m, paths, cells, fresh=no_cache, wheelhouse=wheelhouse)
    log(f"building {len(cells)} cell(s), {at_once} at a time")

    def work(c: Cell) -> CellResult:
        base = with_sdists(engine, m, paths, c, bases[c.id])
        result = build_one(engine, ctx, c, base, no_cache, state.get(c.id))
        result.build_checks += [audits[c.id].result(), fresh[c.id].result()]
        return result

    # a cell that builds wheels from sdists has the longest chain: it starts first, so its
    # sdists build beside the other cells' images instead of after them
    order = sorted(cells, key=lambda c: not pins_sdists(paths, c))
    failed = 0
    written, unwritten = time.monotonic(), False
    try:
        for done, result in run_cells(order, work, at_once, "building cells"):
            previous = state.get(result.id)
            if (
                previous
                and previous.test_checks
                and previous.tested_image_ids == {i.role: i.id for i in result.images}
            ):
                # Same images as last tested: keep those results.
                result.test_checks = previous.test_checks
                result.tested_image_ids = previous.tested_image_ids
                result.tested_on = previous.tested_on
            result.settle()
            # The exit code and the line say what this build did; the report keeps the
            # cell's last test status when its images are the ones tested.
            broken = any(k.status in (FAILED, ERROR) for k in result.build_checks)
            failed += broken
            state[result.id] = result
            kept = f" (last test: {result.status})" if result.test_checks else ""
            log(f"[{done}/{len(cells)}] {result.id}: {'build failed' if broken else 'built'}{kept}")
            # the report follows the run (a second at most behind), and is whole at the end;
            # once per cell made a no-op build of 12 cells spend 2 s writing reports
            unwritten = True
            if time.monotonic() - written >= REPORT_EVERY:
                report.write(paths.build, state, str(m.path), ctx.run_id, ctx.excluded())
                written, unwritten = time.monotonic(), False
    finally:  # interrupted too: the cells built so far are in the report
        if unwritten:
            report.write(paths.build, state, str(m.path), ctx.run_id, ctx.excluded())
    # a base rebuilt under a new key took the old one's tag: the old one can go
    drop_replaced_bases(engine)
    log(f"report: {paths.build / 'report.md'}")
    return 1 if failed else 0


def build_one(
    engine: Engine,
    ctx: Context,
    c: Cell,
    base: BaseImage | str,
    no_cache: bool,
    previous: CellResult | None,
) -> CellResult:
    """One cell's images and structure checks; a failure is recorded, not raised."""
    result = report.fresh(c)
    if isinstance(base, str):
        result.detail = base
        result.build_checks = [Check("build:base", FAILED, base[-1500:], "build")]
        return result
    try:
        result.images, result.build_checks = build_cell(
            engine, ctx.matrix, ctx.paths, c, base, no_cache, previous
        )
    except BuildFailed as exc:
        result.detail = str(exc)
        result.build_checks = [Check(f"build:{exc.role}", FAILED, exc.tail[-1500:], "build")]
    except HarnessError as exc:
        result.detail = str(exc)
        result.build_checks = [Check("build", FAILED, str(exc)[-1500:], "build")]
    return result
