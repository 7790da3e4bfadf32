"""`push`: the gate, then every approved cell to the registry, whole or not at all."""

from __future__ import annotations

import argparse
import sys

from harness import registry, report
from harness.commands import context
from harness.engine import Engine
from harness.errors import HarnessError
from harness.progress import log


def run(args: argparse.Namespace, run_id: str) -> int:
    ctx = context(args, run_id, check_index=False)
    m, paths, cells = ctx.matrix, ctx.paths, ctx.cells
    target = registry.target(m)
    reports = args.report or [paths.build / "report.json"]
    results, conflicts = registry.load_reports(reports)
    engine = Engine()
    engine.ping()
    approved, refused = registry.gate(engine, m, cells, results, conflicts)
    for r in refused:
        log(f"push: refused {r}")
    cells_ok = sorted({a.cell.id for a in approved})
    log(f"push: {len(cells_ok)} cell(s) pass the gate, {len({r.cell for r in refused})} refused")
    for cid, note in sorted({(a.cell.id, a.note) for a in approved if a.note}):
        log(f"push: WARNING {cid}: {note} (gpu_e2e: optional in {m.path})")
    if args.dry_run:
        for a in approved:
            log(f"push: would push {a.local_tag} ({a.image_id[:19]}) to {target}")
        return 1 if refused else 0
    pushed, failures = registry.push(
        engine, target, approved, paths.build / "push", build=paths.build
    )
    if pushed and (paths.build / "report.json").is_file():
        try:  # with the pull sizes push measured; the push itself is done
            report.rerender(paths.build)
        except HarnessError as exc:
            log(f"push: report.md not rendered again: {exc}")
    lock_path = paths.build / "images.lock.json"
    if pushed:
        registry.write_lock(lock_path, target, pushed)
        log(f"push: {len(pushed)} image(s) recorded in {lock_path}")
    if failures:
        raise HarnessError("; ".join(failures))
    if refused:
        print("push refused for: " + "; ".join(str(r) for r in refused), file=sys.stderr)
        return 1
    return 0
