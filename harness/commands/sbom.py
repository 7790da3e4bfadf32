"""`sbom query NAME`: which pushed images hold a package, at which version, from the SBOMs
`push` kept by digest (harness.sbom), without pulling an image."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness import registry, sbom


def run(args: argparse.Namespace, run_id: str) -> int:
    lock_path = Path(args.images_lock)
    lock = registry.read_lock(lock_path)
    found, unsearched = sbom.query(lock_path.parent, lock, args.name)
    for line in found:
        print(line)
    if unsearched:
        print(f"{len(unsearched)} pushed image(s) have no SBOM kept and were not searched, "
              f"e.g. {unsearched[0]}")  # fmt: skip
    if not found:
        print(f"no pushed image of {lock_path} holds {args.name}")
    return 0 if found else 1
