"""`lock`: resolve (or, with --check, verify) every selected cell's hash-pinned locks."""

from __future__ import annotations

import argparse

from harness import lock
from harness.commands import context
from harness.progress import log


def run(args: argparse.Namespace, run_id: str) -> int:
    ctx = context(args, run_id)
    if args.check:
        for c in ctx.cells:
            lock.check(ctx.paths.locks, c, ctx.matrix)
        print(f"{len(ctx.cells)} cell lock(s) up to date")
        return 0
    for c in ctx.cells:
        for path in lock.compile_cell(ctx.paths.locks, c, ctx.matrix):
            log(f"wrote {path.relative_to(ctx.paths.root)} ({len(lock.pins_of(path))} pins)")
    return 0
