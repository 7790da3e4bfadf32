"""`grid`: every notebook image of the selection against every cluster of it."""

from __future__ import annotations

import argparse
from collections import Counter

from harness import grid, matrix, report, timeouts
from harness.backends import open_backend
from harness.commands import Context, context, require_built
from harness.commands.test import pushed
from harness.engine import Engine, image_ids
from harness.matrix import Cell
from harness.progress import log


def run(args: argparse.Namespace, run_id: str) -> int:
    ctx = context(args, run_id)
    m, paths, cells = ctx.matrix, ctx.paths, ctx.cells
    if not args.only and m.grid.only:
        cells, _ = matrix.select(m, list(m.grid.only))
    foreign = [c.id for c in cells if not c.native]
    if foreign:  # N x N clusters under QEMU would take hours; the arch is not Ray's concern
        log(f"grid: {', '.join(foreign)} left out: the grid pairs linux/amd64 cells (native)")
        cells = [c for c in cells if c.native]
    engine = Engine()
    engine.ping()
    for c in cells:
        require_built(engine, m, c)
    kube = args.backend == "kind"
    waits = timeouts.from_args(args, timeouts.KUBE if kube else timeouts.GRID)
    backend = open_backend(
        args.backend, engine, run_id, args.kube_context, args.kind_node_image, pushed(args, ctx)
    )
    for c in cells:  # pushed digests exist for every cell where the cluster pulls
        backend.images_for(c, c.tags(m.prefix))
    log(f"grid: {len(cells)} cluster(s) x {len(cells)} notebook image(s)")
    proven = {} if args.no_reuse else proven_pairs(engine, ctx, cells, args.backend)
    with backend:
        backend.load([tag for c in cells for tag in c.tags(m.prefix).values()])
        pairs = grid.run(backend, m, cells, paths.logs("grid"), waits, proven)
    grid.write(paths.build, pairs, m.grid)
    counts = Counter(p.harness.verdict for p in pairs)
    log(f"grid: {dict(counts)}; {paths.build / 'grid.md'}, grid.html, grid.json")
    undecided = [p for p in pairs if p.undecided]
    for p in undecided:
        log(f"grid: no verdict for {p.notebook} -> {p.cluster}: {'; '.join(p.undecided)[:400]}")
    blind = [p for p in pairs if p.blind_spot]
    for p in blind:
        log(f"grid: harness says compatible but Ray does not agree: {p.notebook} -> {p.cluster}")
    if undecided:
        return grid.EXIT_UNDECIDED
    return grid.EXIT_BLIND_SPOT if blind else 0


def proven_pairs(
    engine: Engine, ctx: Context, cells: list[Cell], backend: str
) -> dict[tuple[str, str], grid.Pair]:
    """Each cell's notebook-to-own-cluster pair that the build directory's last `test`
    proved on the images the grid would run, on the same backend (grid.from_test)."""
    state = report.load_state(ctx.paths.state)
    out: dict[tuple[str, str], grid.Pair] = {}
    for c in cells:
        ids = image_ids(engine, c.tags(ctx.matrix.prefix))
        pair, why = grid.from_test(state.get(c.id), ids, backend, ctx.matrix.grid)
        if pair is None:
            log(f"grid: {c.id} -> itself: run here ({why})")
        else:
            out[(c.id, c.id)] = pair
    return out
