"""Prove reproducibility: rebuild cells from scratch and compare with the images we have.

The rebuild uses a temporary tag prefix, a freshly built base rootfs and no layer cache.
Compared: the base rootfs digest, and each image's whole filesystem (content, mode,
owner, link target; timestamps ignored), file by file. Temporary images carry the run-id
label and are removed at the end, pass or fail.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import tarfile
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import IO

from harness import labels, sbom
from harness.base import ensure as ensure_base
from harness.build import build_cell
from harness.engine import Engine
from harness.errors import EngineError
from harness.matrix import ROLES, Cell, Matrix
from harness.paths import Paths
from harness.progress import log, step
from harness.results import Check

Entry = tuple[str, ...]  # (type, mode, uid:gid, size, sha256 or link target)
MAX_LISTED = 40


def _entries(stream: IO[bytes]) -> Iterator[tuple[str, Entry]]:
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            path = "/" + member.name.lstrip("./")
            owner = f"{member.uid}:{member.gid}"
            mode = oct(member.mode)
            if member.isfile():
                f = tar.extractfile(member)
                digest = hashlib.sha256(f.read() if f else b"").hexdigest()
                yield path, ("file", mode, owner, str(member.size), digest)
            elif member.issym():
                yield path, ("symlink", mode, owner, "", member.linkname)
            elif member.islnk():
                yield path, ("hardlink", mode, owner, "", "/" + member.linkname.lstrip("./"))
            elif member.isdir():
                yield path, ("dir", mode, owner, "", "")
            else:
                yield path, ("other", mode, owner, "", str(member.type))


def filesystem(engine: Engine, image: str, run_id: str) -> dict[str, Entry]:
    """Every path of the image's filesystem with its content digest (mtimes ignored)."""
    cid = engine.create(image, labels_={labels.MANAGED: "repro", labels.RUN: run_id})
    try:
        try:
            out = dict(_entries(engine.export(cid)))
        except (OSError, tarfile.TarError) as exc:
            raise EngineError(f"export of {image} failed: {exc}") from None
        # Files Docker itself writes into every container, not part of the image.
        for path in ("/.dockerenv", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"):
            out.pop(path, None)
        return out
    finally:
        engine.remove("container", cid)


def compare(before: Mapping[str, Entry], after: Mapping[str, Entry]) -> list[str]:
    """Human-readable differences, one line per path."""
    lines: list[str] = []
    for path in sorted(before.keys() | after.keys()):
        a, b = before.get(path), after.get(path)
        if a == b:
            continue
        if a is None:
            lines.append(f"+ {path} (only in the rebuild)")
        elif b is None:
            lines.append(f"- {path} (missing from the rebuild)")
        else:
            fields = ("type", "mode", "owner", "size", "content")
            changed = [
                f"{n} {x}->{y}" if n != "content" else "content"
                for n, x, y in zip(fields, a, b, strict=True)
                if x != y
            ]
            lines.append(f"~ {path}: {', '.join(changed)}")
    return lines


def _check(name: str, diffs: list[str], what: str) -> Check:
    if not diffs:
        return Check.of(name, True, f"{what}: identical")
    shown = diffs[:MAX_LISTED]
    more = f" (+{len(diffs) - MAX_LISTED} more)" if len(diffs) > MAX_LISTED else ""
    return Check.of(
        name,
        False,
        f"{what}: {len(diffs)} difference(s){more}: " + "; ".join(shown),
        differences=diffs[:500],
    )


def _sbom_check(paths: Paths, scratch: Paths, cell: Cell, role: str) -> Check:
    """`repro:<role>:sbom`: the rebuild's SBOM (made from the rebuilt image by the same
    probe) is byte-identical to the original's, but for the rebuild's own identity."""
    name = f"repro:{role}:sbom"
    try:
        original = paths.sbom(cell.id, role).read_text(encoding="utf-8")
        rebuild = scratch.sbom(cell.id, role).read_text(encoding="utf-8")
    except OSError as exc:
        return Check.of(name, False, f"no SBOM to compare: {exc}")
    return _check(name, sbom.rebuild_differences(original, rebuild), f"{role} SBOM")


def verify_cell(
    engine: Engine, matrix: Matrix, paths: Paths, cell: Cell, run_id: str
) -> list[Check]:
    """Rebuild `cell` from scratch under a temporary prefix and compare with its images.
    The rebuild's contexts, logs and build manifests go to a scratch directory, removed at
    the end: build/manifests keeps describing the images that were built and tested."""
    temp = dataclasses.replace(matrix, prefix=f"{matrix.prefix}-repro-{run_id}")
    scratch = dataclasses.replace(paths, build=paths.build / "repro" / run_id)
    run_labels = {labels.RUN: run_id}
    checks: list[Check] = []
    since = datetime.now(timezone.utc)
    try:
        with step(f"{cell.id}: rebuild from scratch (fresh rootfs, no layer cache)"):
            base = ensure_base(
                engine, temp, cell, scratch.build / "rootfs", fresh=True, extra_labels=run_labels
            )
            build_cell(engine, temp, scratch, cell, base, no_cache=True, extra_labels=run_labels)
        original_base = engine.image_labels(f"{matrix.prefix}/base:{base.ref.rsplit(':', 1)[1]}")
        if base.rootfs_sha256 is not None:
            before = (original_base or {}).get(labels.ROOTFS)
            checks.append(
                Check.of(
                    "repro:base-rootfs",
                    before == base.rootfs_sha256,
                    f"rootfs sha256 {str(before)[:16]} (existing) vs "
                    f"{base.rootfs_sha256[:16]} (rebuild)",
                )
            )
        for role in ROLES:
            with step(f"{cell.id}: compare {role} file by file"):
                diffs = compare(
                    filesystem(engine, cell.tag(matrix.prefix, role), run_id),
                    filesystem(engine, cell.tag(temp.prefix, role), run_id),
                )
            checks.append(_check(f"repro:{role}", diffs, f"{role} filesystem"))
            checks.append(_sbom_check(paths, scratch, cell, role))
    finally:
        engine.remove_labelled(run_labels, images=True)
        shutil.rmtree(scratch.build, ignore_errors=True)
        # A rebuild without layer cache writes a cache record for every step (578 MiB for
        # the 2.60.0 CPU cell) that no later build uses; with its images gone, nothing
        # shares them. Another build's unshared records of these minutes go too: cache only.
        freed = engine.prune_build_cache_since(since)
        log(f"{cell.id}: removed the rebuild's build cache ({freed / 2**20:.0f} MiB)")
    return checks
