"""Refuse up front when the disk cannot hold the planned builds, with the numbers.

Estimates, measured on the default matrix (uncompressed, per item, generous):
a Debian base needs its rootfs tarball on the host and its layer in Docker; a cell's
images (runtime layer + notebook layer + build cache) need ~1.5 GiB in Docker; a cell
whose wheels are not yet downloaded needs ~0.3 GiB of wheelhouse.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.engine import Engine
from harness.errors import HarnessError
from harness.matrix import Cell, Matrix

GIB = 2**30
BASE_HOST = int(0.35 * GIB)
BASE_DOCKER = int(0.35 * GIB)
CELL_DOCKER = int(1.5 * GIB)
CELL_WHEELS = int(0.3 * GIB)
MARGIN = int(1.0 * GIB)  # never plan to fill a disk to the last byte


@dataclass(frozen=True)
class Need:
    where: str  # what the space is for, for the message
    path: Path
    bytes: int


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    st = os.statvfs(_existing(path))
    return st.f_bavail * st.f_frsize


def plan(
    engine: Engine,
    matrix: Matrix,
    cells: Iterable[Cell],
    build_dir: Path,
    wheelhouse: Path,
    docker_root: Path | None,
    wheels_missing: set[str],
) -> list[Need]:
    """What the builds of `cells` need where: only images and bases not yet present count."""
    cells = list(cells)
    listed = engine.image_tags()  # one call; a tag not listed is asked for by name

    def absent(tag: str) -> bool:
        return tag not in listed and engine.inspect("image", tag) is None

    to_build = [c for c in cells if any(absent(t) for t in c.tags(matrix.prefix).values())]
    bases = {(c.base.label, c.python, c.platform) for c in to_build if c.base.kind == "debian"}
    needs = [
        Need("Debian rootfs tarballs", build_dir, BASE_HOST * min(len(bases), 1)),
        Need("wheels", wheelhouse, CELL_WHEELS * len(wheels_missing)),
    ]
    if docker_root is not None:
        needs.append(
            Need(
                "images (Docker data root)",
                docker_root,
                BASE_DOCKER * len(bases) + CELL_DOCKER * len(to_build),
            )
        )
    return [n for n in needs if n.bytes > 0]


def reclaimable(engine: Engine | None) -> str:
    """What the engine holds that a prune would give back, for the refusal's message."""
    df = engine.disk_usage() if engine is not None else {}
    if not df:  # the numbers are a hint; the refusal stands without them
        return ""
    untagged = [
        i
        for i in df.get("Images") or []
        if not [t for t in i.get("RepoTags") or [] if t != "<none>:<none>"]
    ]
    unshared = sum(int(i.get("Size") or 0) - int(i.get("SharedSize") or 0) for i in untagged)
    cache = sum(
        int(r.get("Size") or 0)
        for r in df.get("BuildCache") or []
        if not r.get("InUse") and not r.get("Shared")
    )
    return (
        f"; the engine holds {cache / GIB:.1f} GiB of build cache no image shares "
        f"(`docker builder prune`) and {len(untagged)} untagged image(s), "
        f"{max(unshared, 0) / GIB:.1f} GiB of their own (`docker image prune`)"
    )


def check(needs: Iterable[Need], engine: Engine | None = None) -> None:
    """Sum the needs per file system and compare with what is free there; the refusal
    says what the engine could give back."""
    by_device: dict[int, list[Need]] = {}
    for need in needs:
        by_device.setdefault(os.stat(_existing(need.path)).st_dev, []).append(need)
    for group in by_device.values():
        total = sum(n.bytes for n in group) + MARGIN
        free = free_bytes(group[0].path)
        if free < total:
            parts = ", ".join(f"{n.where} ~{n.bytes / GIB:.1f} GiB in {n.path}" for n in group)
            raise HarnessError(
                f"not enough disk: the planned builds need about {total / GIB:.1f} GiB "
                f"({parts}, plus {MARGIN / GIB:.0f} GiB margin) but only {free / GIB:.2f} GiB "
                f"is free on {_existing(group[0].path)}; free space (`python -m harness clean "
                "--images`, `docker builder prune`) or select fewer cells with --only"
                + reclaimable(engine)
            )


def docker_root(engine: Engine) -> Path | None:
    """The engine's data root when it is on this machine (a local socket), else None."""
    host = os.environ.get("DOCKER_HOST", "unix://")
    if not host.startswith("unix://"):
        return None
    try:
        path = Path(str(engine.info().get("DockerRootDir") or ""))
    except Exception:  # an engine that does not answer is reported by ping, not here
        return None
    return path if path.is_absolute() and path.exists() else None
