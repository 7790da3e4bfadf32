"""`plan`: the selected cells, their tags, bases and lock state, and what is excluded."""

from __future__ import annotations

import argparse

from harness import base, lock
from harness.commands import context
from harness.errors import HarnessError


def run(args: argparse.Namespace, run_id: str) -> int:
    ctx = context(args, run_id)
    m = ctx.matrix
    print(f"{len(ctx.cells)} cell(s) selected from {m.path}:")
    for c in ctx.cells:
        try:
            lock.check(ctx.paths.locks, c, m)
            base.check_lock(m, c)
            lock_state = "lock ok"
        except HarnessError:
            lock_state = "lock missing or stale: run `nox -s lock`"
        print(f"  {c.id}  base {c.base.label}  ({lock_state})")
        for role, tag in c.tags(m.prefix).items():
            print(f"      {role:<8} {tag}")
    for e in [*m.excluded, *ctx.left]:
        print(f"  excluded {e.cell.id}: {e.reason}")
    return 0
