"""The commands behind `python -m harness`, one module each, all entered the same way.

`context(args)` is the one way in: it loads the matrix, selects the cells (`--only`),
names the paths and, for commands that build or test, checks the package index.
`run_cells` is the one loop that works on cells concurrently. Every command module has
`run(args, run_id) -> exit code`; the work itself takes the engine as a parameter, so the
loops can be driven without Docker.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

# Only names no command module has: `harness.commands.lock` and `.matrix` are submodules.
from harness import index, report
from harness.engine import Engine
from harness.errors import HarnessError
from harness.lock import check as check_lock
from harness.matrix import Cell, Excluded, Matrix
from harness.matrix import load as load_matrix
from harness.matrix import select as select_cells
from harness.paths import Paths
from harness.progress import bar
from harness.results import CellResult


@dataclass(frozen=True)
class Context:
    """What every command starts from."""

    matrix: Matrix
    paths: Paths
    cells: list[Cell]  # selected by --only (all cells without it)
    left: list[Excluded]  # matrix cells --only left out
    run_id: str

    def excluded(self) -> list[CellResult]:
        """Report rows for the cells not built: excluded by the matrix or by --only."""
        return report.excluded([*self.matrix.excluded, *self.left])


def context(args: argparse.Namespace, run_id: str = "", check_index: bool = True) -> Context:
    """Load and select (exit 2 on bad input); with check_index, refuse Ray versions and
    (Ray, Python) pairs the package index does not have."""
    m = load_matrix(args.matrix)
    cells, left = select_cells(m, args.only)
    paths = Paths.for_matrix(args.matrix, args.build_dir)
    index.index_url()  # a package index variable that points nowhere is refused up front
    if check_index:
        validate_against_index(m, paths)
    return Context(m, paths, cells, left, run_id)


def validate_against_index(m: Matrix, paths: Paths) -> None:
    """Refuse unknown Ray versions and (Ray, Python) pairs with no wheel, for every cell of
    the matrix. A cell whose lock is current needs no look-up: its lock proves it resolved."""
    unlocked = []
    for c in m.cells:
        try:
            check_lock(paths.locks, c, m)
        except HarnessError:
            unlocked.append(c)
    if unlocked:
        index.check(m, unlocked, index.fetch(paths.root / ".cache" / "index"))


def default_jobs(cores_per_job: int, gib_per_job: int = 3) -> int:
    """Cells at once, bounded by cores and by memory (`gib_per_job`: a cell's cluster takes
    ~3 GiB; a test slot holds two while one is in its last phase, see harness.turns).

    A build keeps about one core busy; a test cluster runs some eight Ray processes across
    three containers and wants about two: on 2 cores, two clusters at once take as long
    as two in a row and make Ray Client connects stall in Ray's retry path."""
    cpus = os.cpu_count() or 1
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem_gib = 8.0
    return max(1, min(cpus // cores_per_job, int(mem_gib // gib_per_job), 4))


def jobs(args: argparse.Namespace, n: int, cores_per_job: int, gib_per_job: int = 3) -> int:
    """--jobs, else the default for this machine; never more than there are cells."""
    return max(1, min(args.jobs or default_jobs(cores_per_job, gib_per_job), n))


def require_built(engine: Engine, m: Matrix, c: Cell) -> None:
    """Exit 2, saying how to build it, unless every image of the cell exists."""
    for tag in c.tags(m.prefix).values():
        if engine.inspect("image", tag) is None:
            raise HarnessError(
                f"image {tag} not found; build it first: `nox -s build` (or `python -m "
                f"harness build --only ray={c.ray},python={c.python},variant={c.variant}`)"
            )


def run_cells(
    cells: Sequence[Cell], work: Callable[[Cell], CellResult], at_once: int, what: str
) -> Iterator[tuple[int, CellResult]]:
    """Run `work` on every cell, `at_once` at a time; yield (n done, result) as each ends.
    An interrupt does not wait for cells still running (their children are stopped by the
    CLI's signal handling)."""
    pool = ThreadPoolExecutor(max_workers=at_once)
    try:
        futures = [pool.submit(work, c) for c in cells]
        with bar(what, len(cells)) as advance:
            for done, future in enumerate(as_completed(futures), 1):
                advance()
                yield done, future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
