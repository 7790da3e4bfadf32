"""`lock`: resolve (or, with --check, verify) every selected cell's hash-pinned locks: its
Python locks and its Debian base's lock."""

from __future__ import annotations

import argparse
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness import audit, base, debian_lock, diff, freshness, lock, sdists
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
    if args.security and (upgrade or args.debian or args.upgrade_debian):
        raise HarnessError("--security chooses what moves itself: not with --upgrade or --debian")
    if args.security:
        return _security(ctx)
    if args.upgrade_debian:
        if upgrade:
            raise HarnessError("--upgrade-debian and --upgrade: one at a time")
        return _upgrade_debian(ctx, args.upgrade_debian)
    for c in [] if args.debian else ctx.cells:
        before = _pins(ctx, c)
        for path in lock.compile_cell(ctx.paths.locks, c, m, upgrade):
            log(f"wrote {path.relative_to(ctx.paths.root)} ({len(lock.pins_of(path))} pins)")
        for line in _moves(before, _pins(ctx, c)):
            log(f"{c.id}: {line}")
    _lock_bases(ctx, _debian_bases(ctx))
    _sdists_build(ctx)
    return 0


def _debian_bases(ctx: Context) -> list[tuple[str, str, str]]:
    return sorted({(c.base.ref, c.python, c.arch) for c in ctx.cells if c.base.kind == "debian"})


def _lock_bases(
    ctx: Context,
    bases: Sequence[tuple[str, str, str]],
    move: Mapping[tuple[str, str, str], Collection[str]] | None = None,
) -> None:
    """Lock these Debian bases anew; with `move`, each keeps its lock but those names."""

    def one(suite: str, python: str, arch: str) -> None:
        m = ctx.matrix
        names = None if move is None else move[(suite, python, arch)]
        path = base.lock_file(m, suite, python, arch)
        before = _debs(path)
        with step(f"Debian lock of debian:{suite} (Python {python}, {arch}): mmdebstrap"):
            base.lock_base(m, suite, python, arch, scratch=ctx.paths.build / "rootfs", move=names)
        count = len(debian_lock.read(path)[1])
        log(f"wrote {path.relative_to(ctx.paths.root)} ({count} packages)")
        if before:
            for line in _moves(before, _debs(path)):
                log(f"debian:{suite} ({arch}): {line}")

    # mmdebstrap waits on the mirror and dpkg: two bases at a time on two cores
    with ThreadPoolExecutor(2, thread_name_prefix="raycompat-lock") as pool:
        for future in [pool.submit(one, *b) for b in bases]:
            future.result()


def _security(ctx: Context) -> int:
    """`lock --security`: the Python packages pip-audit finds a fixed vulnerability in move
    (`--upgrade` of exactly those, per cell), and each Debian base whose lock has pending
    security updates is re-locked. What could not be asked is said, never taken as none."""
    m, paths = ctx.matrix, ctx.paths
    for c in ctx.cells:
        names: set[str] = set()
        for kind in lock.KINDS:
            path = lock.lock_path(paths.locks, c, kind)
            try:
                found = audit.audit_lock(path, paths.root / ".cache" / "audit")
            except (RuntimeError, OSError, ValueError) as exc:
                log(f"{c.id}: pip-audit could not run ({exc}): its Python pins stay")
                names = set()
                break
            if found.unaudited:
                example = next(iter(found.unaudited))
                log(
                    f"{c.id}: {len(found.unaudited)} of {found.packages} Python packages "
                    f"could not be audited in {kind} (e.g. {example})"
                )
            names |= {lock.normalize(f["name"]) for f in found.findings if f["fix_versions"]}
        if not names:
            log(f"{c.id}: no Python package with a known fix to move")
            continue
        before = _pins(ctx, c)
        lock.compile_cell(paths.locks, c, m, sorted(names))
        for line in _moves(before, _pins(ctx, c)):
            log(f"{c.id}: {line}")
    stale: dict[tuple[str, str, str], list[str]] = {}
    for suite, python, arch in _debian_bases(ctx):
        path = base.lock_file(m, suite, python, arch)
        try:
            locked = debian_lock.read(path)[1]
            updates = freshness.upgradable(
                m, suite, arch, locked, paths.root / ".cache" / "freshness"
            )
        except (OSError, HarnessError) as exc:
            log(f"debian:{suite} ({arch}): pending security updates could not be read: {exc}")
            continue
        pending = [u for u in updates if u.security]
        if pending:
            listed = ", ".join(f"{u.name} {u.locked} -> {u.fixed}" for u in pending[:6])
            log(f"debian:{suite} ({arch}): {len(pending)} security update(s): {listed}")
            stale[(suite, python, arch)] = sorted({u.name for u in pending})
        else:
            log(f"debian:{suite} ({arch}): no pending security update")
    _lock_bases(ctx, sorted(stale), move=stale)
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
    return diff.moves(before, after) or ["no pin moved"]


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


def _upgrade_debian(ctx: Context, value: str) -> int:
    """`lock --upgrade-debian NAME,...`: in each selected Debian base whose lock has some
    of the names, those move and every other locked package stays."""
    names = {n.strip() for n in value.split(",")}
    if not all(names):
        raise HarnessError(f"--upgrade-debian {value}: an empty name; give NAME[,NAME...]")
    move: dict[tuple[str, str, str], list[str]] = {}
    for b in _debian_bases(ctx):
        have = set(_debs(base.lock_file(ctx.matrix, *b)))
        if names & have:
            move[b] = sorted(names & have)
    unknown = sorted(names - {n for ns in move.values() for n in ns})
    if unknown:
        raise HarnessError(
            f"--upgrade-debian: {', '.join(unknown)} is in no Debian lock of the selected "
            "cells (binary package names, as in locks/bases/*.txt)"
        )
    _lock_bases(ctx, sorted(move), move=move)
    return 0


def _debs(path: Path) -> dict[str, str]:
    """A Debian lock's versions by package name; {} without one."""
    try:
        return {d.name: d.version for d in debian_lock.read(path)[1]}
    except (OSError, HarnessError):
        return {}
