"""Benchmark the whole default matrix: cold build (fresh bases, no layer cache, warm
wheelhouse) and the end-to-end test of every cell, with per-image sizes. Prints figures;
asserts nothing.

    nox -s bench -- matrix
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def harness(args: list[str], build_dir: Path) -> tuple[float, int]:
    start = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "harness", *args, "--build-dir", str(build_dir)],
        cwd=ROOT,
        env={**os.environ, "HARNESS_RUN_ID": "bench" + str(os.getpid())},
    )
    return time.monotonic() - start, r.returncode


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        build_dir = Path(tmp)
        harness(["build"], build_dir)  # warm the wheelhouse
        cold, rc_build = harness(["build", "--no-cache"], build_dir)
        noop, _ = harness(["build"], build_dir)
        test, rc_test = harness(["test"], build_dir)
        cells: list[dict[str, Any]] = json.loads((build_dir / "report.json").read_text())["cells"]
    print()
    print(f"whole matrix: {sum(1 for c in cells if c['images'])} cells built")
    print(f"cold build (bases + images + structure checks): {cold:7.1f} s (exit {rc_build})")
    print(f"end-to-end test of every cell:                  {test:7.1f} s (exit {rc_test})")
    print(f"cold build + test:                              {cold + test:7.1f} s")
    print(f"no-op build (all cached):                       {noop:7.1f} s")
    print()
    print(f"{'cell':<28} {'status':<9} {'head MB':>8} {'worker MB':>10} {'notebook MB':>12}")
    for c in cells:
        sizes = {i["role"]: i["size_bytes"] / 1e6 for i in c["images"]}
        if not sizes:
            print(f"{c['id']:<28} {c['status']:<9} ({c.get('detail', '')[:60]})")
            continue
        print(
            f"{c['id']:<28} {c['status']:<9} {sizes['head']:>8.0f} {sizes['worker']:>10.0f} "
            f"{sizes['notebook']:>12.0f}"
        )


if __name__ == "__main__":
    main()
