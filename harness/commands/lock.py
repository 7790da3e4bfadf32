"""`lock`: resolve (or, with --check, verify) every selected cell's hash-pinned locks: its
Python locks and its Debian base's lock."""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor

from harness import base, debian_lock, lock
from harness.commands import context
from harness.progress import log, step


def run(args: argparse.Namespace, run_id: str) -> int:
    ctx = context(args, run_id)
    m = ctx.matrix
    if args.check:
        for c in ctx.cells:
            lock.check(ctx.paths.locks, c, m)
            base.check_lock(m, c)
        print(f"{len(ctx.cells)} cell lock(s) and their Debian base locks up to date")
        return 0
    for c in [] if args.debian else ctx.cells:
        for path in lock.compile_cell(ctx.paths.locks, c, m):
            log(f"wrote {path.relative_to(ctx.paths.root)} ({len(lock.pins_of(path))} pins)")
    bases = sorted({(c.base.ref, c.python, c.arch) for c in ctx.cells if c.base.kind == "debian"})

    def one(suite: str, python: str, arch: str) -> None:
        with step(f"Debian lock of debian:{suite} (Python {python}, {arch}): mmdebstrap"):
            path = base.lock_base(m, suite, python, arch, scratch=ctx.paths.build / "rootfs")
        count = len(debian_lock.read(path)[1])
        log(f"wrote {path.relative_to(ctx.paths.root)} ({count} packages)")

    # mmdebstrap waits on the mirror and dpkg: two bases at a time on two cores
    with ThreadPoolExecutor(2, thread_name_prefix="raycompat-lock") as pool:
        for future in [pool.submit(one, *b) for b in bases]:
            future.result()
    return 0
