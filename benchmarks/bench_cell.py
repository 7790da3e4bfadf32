"""Benchmark one cell: cold build (fresh base, no layer cache, warm wheelhouse), no-op build,
and the end-to-end test. Prints figures; asserts nothing (targets are in the README).

    nox -s bench                         # default cell
    nox -s bench -- --only python=3.11.2 # another selection (first selected cell)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def harness(args: list[str], build_dir: Path) -> float:
    start = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "harness", *args, "--build-dir", str(build_dir)],
        cwd=ROOT,
        env={**os.environ, "HARNESS_RUN_ID": "bench" + str(os.getpid())},
    )
    if r.returncode != 0:
        sys.exit(f"bench: `harness {' '.join(args)}` failed with exit {r.returncode}")
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="ray=2.60.0,python=3.11.2,variant=cpu")
    opts = parser.parse_args()
    only = ["--only", opts.only]
    with tempfile.TemporaryDirectory() as tmp:
        build_dir = Path(tmp)
        harness(["build", *only], build_dir)  # warm the wheelhouse (downloads, if any)
        cold = harness(["build", *only, "--no-cache"], build_dir)
        cells: list[dict[str, Any]] = json.loads((build_dir / "report.json").read_text())["cells"]
        cell = next(c for c in cells if c["images"])
        noop = harness(["build", *only], build_dir)
        test = harness(["test", *only], build_dir)
        tested = json.loads((build_dir / "report.json").read_text())["cells"]
        timings = next(c for c in tested if c["id"] == cell["id"])["timings"]
    rows = [
        ("cell", cell["id"]),
        ("cold build: base + 3 images + structure checks (s)", f"{cold:.1f}"),
        *[(f"  {i['role']} image build (s)", f"{i['build_seconds']:.1f}") for i in cell["images"]],
        ("no-op build, all cached (s)", f"{noop:.1f}"),
        ("end-to-end test, CLI wall time (s)", f"{test:.1f}"),
        ("  cluster up + ready (s)", f"{timings.get('cluster_ready', 0):.1f}"),
        ("  all checks incl. teardown (s)", f"{timings.get('test_seconds', 0):.1f}"),
        *[
            (f"  {i['role']} image size (MB)", f"{i['size_bytes'] / 1e6:.0f}")
            for i in cell["images"]
        ],
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
