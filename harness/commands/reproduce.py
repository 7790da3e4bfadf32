"""`verify-reproducible`: rebuild each selected cell from scratch and diff it file by file."""

from __future__ import annotations

import argparse
import dataclasses
import json

from harness import base, lock, reproduce
from harness.commands import context, require_built
from harness.engine import Engine, find_cli
from harness.files import write_atomic
from harness.progress import log
from harness.results import FAILED, Check


def run(args: argparse.Namespace, run_id: str) -> int:
    """Each selected cell's images must already exist (run `build` first)."""
    ctx = context(args, run_id)
    m, paths = ctx.matrix, ctx.paths
    engine = Engine(find_cli())  # the BuildKit CLI must exist before anything is rebuilt
    engine.ping()
    for c in ctx.cells:
        lock.check(paths.locks, c, m)
        base.check_lock(m, c)
        require_built(engine, m, c)
    failed = 0
    results: dict[str, list[Check]] = {}
    for c in ctx.cells:  # one at a time: a from-scratch rebuild already loads both cores
        checks = reproduce.verify_cell(engine, m, paths, c, run_id)
        results[c.id] = checks
        failed += any(k.status == FAILED for k in checks)
        for k in checks:
            print(f"{c.id}  {k.name:<20} {k.status:<7} {k.detail[:2000]}")
    out = paths.build / "reproducibility.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {cid: [dataclasses.asdict(k) for k in ks] for cid, ks in results.items()}
    write_atomic(out, json.dumps(doc, indent=1))
    n = len(ctx.cells)
    log(f"reproducibility: {n - failed}/{n} cell(s) identical; details in {out}")
    return 1 if failed else 0
