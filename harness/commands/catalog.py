"""`catalog`: the image catalog (HTML and Markdown) from images.lock.json, the SBOMs push
kept and the test reports (harness.catalog)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness import catalog, registry, report
from harness.errors import HarnessError
from harness.progress import log
from harness.results import CellResult


def run(args: argparse.Namespace, run_id: str) -> int:
    lock_path = Path(args.images_lock)
    lock = registry.read_lock(lock_path)
    reports = [Path(p) for p in args.report] or [
        p for p in [lock_path.parent / "report.json"] if p.is_file()
    ]
    results: dict[str, tuple[CellResult, str]] = {}
    for rep in (report.read(p) for p in reports):
        for cid, result in rep.cells.items():
            if result.status == "passed":
                results[cid] = (result, rep.generated)
    table = catalog.rows(lock, lock_path.parent, results)
    out = Path(args.out) if args.out else lock_path.parent / "catalog"
    try:
        html_path, md_path = catalog.write(out, lock, table)
    except OSError as exc:
        raise HarnessError(
            f"--out {out}: cannot write the catalog there ({exc.strerror})"
        ) from None
    with_sbom = sum(1 for r in table if r.packages)
    with_checks = sum(1 for r in table if r.passed)
    log(
        f"catalog: {len(table)} image(s) ({with_sbom} with an SBOM, {with_checks} with their "
        f"test report): {html_path}, {md_path}"
    )
    return 0
