"""`freshness:os`: the security updates Debian has published for a base's locked packages.

Offline-capable: it needs only the configured mirror. apt itself does the work, with a
private configuration (no file of the host's apt is read or written but its trusted
keys): the suite's main, -updates and -security pockets are fetched into a cache of their
own (`.cache/apt/<suite>-<arch>/`, so a later run only revalidates them), a dpkg status
is written from the base's Debian lock, and `apt list --upgradable` says which locked
packages have newer versions and from which pocket. Those from a `-security` pocket are
the pending security updates: package, locked version, fixed version. Signatures are
checked as apt checks them; a snapshot mirror is read past Valid-Until.

The answer is cached per lock digest for a day, so a no-op build asks nothing.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from harness import base, children, debian_lock
from harness.errors import HarnessError
from harness.files import write_atomic
from harness.matrix import Cell, Matrix
from harness.results import PASSED, SKIPPED, WARNING, Check

CACHE_SECONDS = 24 * 3600
_LINE = re.compile(
    r"^(?P<name>[^/\s]+)/(?P<suites>\S+) (?P<new>\S+) (?P<arch>\S+) "
    r"\[upgradable from: (?P<old>[^\]]+)\]$"
)
_LOCKS: dict[str, threading.Lock] = {}  # one apt run per pocket cache at a time
_GUARD = threading.Lock()


@dataclass(frozen=True, order=True)
class Update:
    name: str
    locked: str  # the version in the image
    fixed: str  # the newer version the pocket has
    suites: str  # where it comes from, e.g. "bookworm-security"

    @property
    def security(self) -> bool:
        return any(s.endswith("-security") for s in self.suites.split(","))


def parse(listing: str) -> list[Update]:
    """`apt list --upgradable` output as updates (its header and warnings skipped);
    ValueError for output that is not apt's listing (no evidence is no pass)."""
    if "Listing..." not in listing:
        raise ValueError(f"not apt's listing: {listing.strip()[:200]!r}")
    out = []
    for line in listing.splitlines():
        m = _LINE.match(line.strip())
        # The same version string is not an update: apt lists it because the status
        # written from a lock has no dependency fields, so its record differs from the
        # index's (apt keys a version by its string and a hash of such fields).
        if m and m["new"] != m["old"]:
            out.append(Update(m["name"], m["old"], m["new"], m["suites"]))
    return sorted(out)


def status_of(locked: Sequence[debian_lock.Deb]) -> str:
    """A dpkg status file holding exactly the locked packages, installed."""
    return "".join(
        f"Package: {d.name}\nStatus: install ok installed\nArchitecture: {d.arch}\n"
        f"Version: {d.version}\n\n"
        for d in sorted(locked)
    )


def sources(matrix: Matrix, suite: str) -> list[str]:
    """The suite's main, -updates and -security pockets on the configured mirror."""
    mirror = matrix.debian_mirror
    lines = [f"deb {mirror} {suite} main", f"deb {mirror} {suite}-updates main"]
    security = debian_lock.security_mirror(mirror)
    if security:
        lines.append(f"deb {security} {suite}-security main")
    return lines


def apt_options(matrix: Matrix, root: Path, arch: str) -> list[str]:
    """apt reading only what is under `root`, for `arch`, with the host's trusted keys."""
    empty = root / "empty"
    opts = {
        "Dir::Etc::SourceList": root / "sources.list",
        "Dir::Etc::SourceParts": empty,
        "Dir::Etc::Preferences": root / "preferences",
        "Dir::Etc::PreferencesParts": empty,
        "Dir::State": root / "state",
        "Dir::State::Lists": root / "lists",
        "Dir::State::status": root / "status",
        "Dir::Cache": root / "cache",
        "APT::Architecture": arch,
        "APT::Architectures": arch,
        "Debug::NoLocking": "true",
    }
    if matrix.debian_snapshot or debian_lock.is_snapshot(matrix.debian_mirror):
        opts["Acquire::Check-Valid-Until"] = "false"
    return [a for k, v in opts.items() for a in ("-o", f"{k}={v}")]


def _guard(key: str) -> threading.Lock:
    """One lock per key: the cells of one base ask apt once, one after the other."""
    with _GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def upgradable(
    matrix: Matrix, suite: str, arch: str, locked: Sequence[debian_lock.Deb], cache: Path
) -> list[Update]:
    """apt's upgradable list for the locked packages; HarnessError when apt cannot tell."""
    root = cache / f"{suite}-{arch}"
    with _guard(str(root)):
        for sub in ("empty", "state", "lists/partial", "cache/archives/partial"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        write_atomic(root / "sources.list", "\n".join(sources(matrix, suite)) + "\n")
        write_atomic(root / "preferences", "")
        write_atomic(root / "status", status_of(locked))
        opts = apt_options(matrix, root, arch)
        rc, _, err = children.bounded(
            ["apt-get", *opts, "-q", "update"], timeout=600, what=f"apt-get update ({suite})"
        )
        if rc != 0 or re.search(r"^(E|Err):", err, re.M):
            said = [ln for ln in err.splitlines() if ln.startswith(("E:", "Err:", "W:"))]
            raise HarnessError(f"apt-get update of {suite}: {'; '.join(said[-3:]) or err[-300:]}")
        rc, out, err = children.bounded(
            ["apt", *opts, "list", "--upgradable"], timeout=300, what=f"apt list ({suite})"
        )
        if rc != 0:
            raise HarnessError(f"apt list --upgradable ({suite}): {err.strip()[-300:]}")
    try:
        return parse(out)
    except ValueError as exc:
        raise HarnessError(f"apt list --upgradable ({suite}): {exc}") from None


def _cached_updates(
    matrix: Matrix, cell: Cell, locked: Sequence[debian_lock.Deb], cache: Path, digest: str
) -> list[Update]:
    """The lock's updates, from the day's cache or from apt. Cells that share a base (a
    cpu and a gpu cell) share the lock: the second waits for the first and reads its
    answer instead of asking apt again."""
    cached = cache / f"{digest}.json"
    with _guard(digest):
        try:
            if time.time() - cached.stat().st_mtime < CACHE_SECONDS:
                return [Update(**u) for u in json.loads(cached.read_text())]
        except (OSError, ValueError, TypeError):
            pass  # none, cut short or of another shape: asked again
        updates = upgradable(matrix, cell.base.ref, cell.arch, locked, cache)
        cache.mkdir(parents=True, exist_ok=True)
        write_atomic(cached, json.dumps([asdict(u) for u in updates]))
        return updates


def check(matrix: Matrix, cell: Cell, cache: Path) -> Check:
    """`freshness:os` of the cell's base: `passed` when no locked package has a pending
    security update, `warning` listing them when some have, `skipped` with the reason for
    a registry base (no Debian lock) or when the mirror cannot be read."""
    name = "freshness:os"
    if cell.base.kind != "debian":
        why = "registry base (matrix.yaml `bases:`): no Debian lock to compare"
        return Check(name, SKIPPED, why, "build")
    path = base.lock_file(matrix, cell.base.ref, cell.python, cell.arch)
    try:
        locked = debian_lock.read(path)[1]
        digest = debian_lock.digest(path)
    except (OSError, HarnessError) as exc:
        return Check(name, SKIPPED, f"no readable Debian lock: {exc}", "build")
    try:
        updates = _cached_updates(matrix, cell, locked, cache, digest)
    except HarnessError as exc:
        return Check(name, SKIPPED, f"the mirror could not be read: {exc}", "build")
    pending = [u for u in updates if u.security]
    data = {
        "lock": str(path.name),
        "packages": len(locked),
        "pending_security": [asdict(u) for u in pending],
        "other_updates": len(updates) - len(pending),
    }
    if not pending:
        detail = (
            f"none of the {len(locked)} locked Debian packages has a pending security "
            f"update in {cell.base.ref}-security"
            + (f" ({len(updates)} non-security update(s) pending)" if updates else "")
        )
        return Check(name, PASSED, detail, "build", data)
    listed = "; ".join(f"{u.name} {u.locked} -> {u.fixed}" for u in pending[:8])
    detail = (
        f"{len(pending)} locked Debian package(s) have a pending security update "
        f"({listed}{' ...' if len(pending) > 8 else ''}): re-lock (`nox -s lock`) to take them"
    )
    return Check(name, WARNING, detail, "build", data)
