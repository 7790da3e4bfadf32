"""`lock`: resolve (or, with --check, verify) every selected cell's hash-pinned locks: its
Python locks and its Debian base's lock."""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor

from harness import base, debian_lock, lock, sdists
from harness.commands import Context, context
from harness.engine import Engine
from harness.errors import HarnessError
from harness.matrix import Cell
from harness.progress import log, step
from harness.wheelhouse import Wheelhouse


def run(args: argparse.Namespace, run_id: str) -> int:
    ctx = context(args, run_id)
    m = ctx.matrix
    if args.check:
        for c in ctx.cells:
            lock.check(ctx.paths.locks, c, m)
            base.check_lock(m, c)
        print(f"{len(ctx.cells)} cell lock(s) and their Debian base locks up to date")
        return 0
    upgrade = _upgrade(args.upgrade, ctx)
    if upgrade and args.debian:
        raise HarnessError("--upgrade moves Python packages; --debian locks only Debian's")
    for c in [] if args.debian else ctx.cells:
        before = _pins(ctx, c)
        for path in lock.compile_cell(ctx.paths.locks, c, m, upgrade):
            log(f"wrote {path.relative_to(ctx.paths.root)} ({len(lock.pins_of(path))} pins)")
        for line in _moves(before, _pins(ctx, c)):
            log(f"{c.id}: {line}")
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
    _sdists_build(ctx)
    return 0


def _upgrade(value: str, ctx: Context) -> list[str]:
    """The names of `--upgrade`, each in a lock of the selected cells (else exit 2), or
    [ALL]; [] without it."""
    if not value:
        return []
    if value == lock.ALL:
        return [lock.ALL]
    names = [n.strip() for n in value.split(",")]
    if not all(names):
        raise HarnessError(f"--upgrade {value}: an empty name; give NAME[,NAME...]")
    locked = {n for c in ctx.cells for n in _pins(ctx, c)}
    unknown = [n for n in names if lock.normalize(n) not in locked]
    if unknown:
        raise HarnessError(
            f"--upgrade: {', '.join(unknown)} is in no lock of the selected cells "
            f"({len(ctx.cells)}); name a locked package (`grep -h == locks/*/*.txt`), or add "
            "a new one to `runtime_packages:` in the matrix"
        )
    return sorted({lock.normalize(n) for n in names})


def _pins(ctx: Context, c: Cell) -> dict[str, str]:
    """The cell's locked versions (both kinds) by normalized name; {} without locks."""
    out: dict[str, str] = {}
    for kind in lock.KINDS:
        path = lock.lock_path(ctx.paths.locks, c, kind)
        if path.is_file():
            out.update({lock.normalize(p.name): p.version for p in lock.pins_of(path)})
    return out


def _moves(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """What a re-lock moved, a line per package: `name a -> b`, `+name b`, `-name a`."""
    lines = [f"{n} {before[n]} -> {after[n]}" for n in sorted(before) if n in after
             and before[n] != after[n]]  # fmt: skip
    lines += [f"+{n} {after[n]}" for n in sorted(set(after) - set(before))]
    lines += [f"-{n} {before[n]}" for n in sorted(set(before) - set(after))]
    return lines or ["no pin moved"]


def _sdists_build(ctx: Context) -> None:
    """A dependency locked as an sdist must build into a wheel in its cell's base: built
    now (and kept), so one that cannot is refused here, naming it, not at `build`."""
    m, paths = ctx.matrix, ctx.paths
    cells = [
        c
        for c in ctx.cells
        if any(lock.sdist_names(lock.lock_path(paths.locks, c, k)) for k in lock.KINDS)
    ]
    if not cells:
        return
    engine = Engine()
    engine.ping()
    house = Wheelhouse(paths.wheelhouse)
    for c in cells:
        locks = [lock.lock_path(paths.locks, c, k) for k in ("runtime", "notebook")]
        house.fetch(locks[0], c)  # pip, which builds them
        made = base.ensure(engine, m, c, paths.build / "rootfs")
        names = ", ".join(sorted(set().union(*(lock.sdist_names(f) for f in locks))))
        with step(f"{c.id}: wheels from sdists ({names})"):
            built = sdists.build_for(
                engine, c, made.ref, made.id, locks, house, m.source_date_epoch
            )
        for name, wheel in sorted(built.items()):
            log(f"{c.id}: {name} built from its sdist: {wheel.relative_to(paths.wheelhouse)}")
