"""Benchmark the whole default matrix: cold build (fresh bases, no layer cache, warm
wheelhouse), warm build + test, the end-to-end test of every cell (`--rounds N` times,
counting every cell that does not pass as a flake), the no-op build, the compatibility
grid, and per-image sizes and pull sizes. Prints figures; asserts nothing.

    nox -s bench -- matrix                 # one round
    nox -s bench -- matrix --rounds 3      # the flake measure: the matrix three times
    nox -s bench -- matrix --rounds 0 --no-cold --no-grid   # the no-op build alone
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import results
from common import (
    cells,
    cpu_speed,
    harness,
    mb,
    not_passed,
    pull_sizes,
    spread,
    table,
    warnings,
)


def main() -> None:
    speed = cpu_speed()
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1, help="test the matrix this many times")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold build")
    parser.add_argument("--no-grid", action="store_true", help="skip the compatibility grid")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        build_dir = Path(tmp)
        harness(["build"], build_dir)  # warm the wheelhouse
        cold, rc_cold = (None, 0) if opts.no_cold else harness(["build", "--no-cache"], build_dir)
        warm_build, _ = harness(["build"], build_dir)
        noop, _ = harness(["build"], build_dir)
        per_cell: dict[str, list[float]] = {}
        rounds: list[float] = []
        exits: list[dict[str, object]] = []
        flakes: list[str] = []
        # the build's own report until a test round writes one (`--rounds 0`: builds only)
        tested: list[dict[str, Any]] = cells(build_dir)
        for i in range(opts.rounds):
            wall, rc = harness(["test"], build_dir)
            rounds.append(wall)
            exits.append({"exit": rc, "seconds": round(wall, 1)})
            found = cells(build_dir)  # this round's report only, never the one before
            if rc != 0:
                flakes.append(f"round {i + 1}: exit {rc}")
            if not found:
                flakes.append(f"round {i + 1}: wrote no report")
                continue
            tested = found
            for c in tested:
                if c["status"] == "excluded":
                    continue
                per_cell.setdefault(c["id"], []).append(float(c["timings"].get("test_seconds", 0)))
                bad = not_passed(c)
                if c["status"] != "passed" or bad:
                    flakes.append(f"round {i + 1} {c['id']}: {', '.join(bad) or c['status']}")
            print(f"bench: round {i + 1}/{opts.rounds}: exit {rc} in {wall:.1f} s")
        grid = None if opts.no_grid else harness(["grid"], build_dir)
        grid_doc = build_dir / "grid.json"
        pairs = json.loads(grid_doc.read_text())["pairs"] if grid and grid_doc.is_file() else []
        from_test = sum(1 for p in pairs if p.get("proven_by"))
        built = [c for c in tested if c["images"]]
    every = [t for ts in per_cell.values() for t in ts]
    warned = {c["id"]: w for c in built if (w := warnings(c))}
    rows = [
        ("cells", str(len(built))),
        (
            "cold build: bases + images + checks (s)",
            f"{cold:.1f} (exit {rc_cold})" if cold else "-",
        ),
        ("warm build, all cached (s)", f"{warm_build:.1f}"),
        ("no-op build (s)", f"{noop:.1f}"),
        ("test of every cell, wall per round", spread(rounds)),
        ("warm build + test (s)", f"{warm_build + rounds[0]:.1f}" if rounds else "-"),
        ("one cell end to end, over all cells and rounds", spread(every)),
        ("grid (s)", f"{grid[0]:.1f} (exit {grid[1]})" if grid else "-"),
        ("  grid pairs taken from `test`", str(from_test)),
        (f"cells that did not pass (of {len(every)})", str(len(flakes))),
        *[(f"  {f}", "") for f in flakes],
        ("cells whose build checks warned", str(len(warned))),
        *[(f"  {cell}", "; ".join(why)[:120]) for cell, why in warned.items()],
    ]
    end = table(rows, speed)
    print()
    print(
        f"{'cell':<28} {'status':<7} {'test s':>7} {'head/worker MB':>15} {'notebook MB':>12} "
        f"{'pull h/w MB':>13} {'pull nb MB':>11} {'zstd nb MB':>11}"
    )
    per_image: list[dict[str, object]] = []
    notebook_pulls: dict[str, list[float]] = {"gzip": [], "zstd": []}  # MB, every cell
    for c in built:
        sizes = {i["role"]: i["size_bytes"] for i in c["images"]}
        # head and worker share every layer (only their command differs): one pull size
        pulls = pull_sizes({i["role"]: i["id"] for i in c["images"] if i["role"] != "worker"})
        notebook = next(i["id"] for i in c["images"] if i["role"] == "notebook")
        zstd = pull_sizes({"notebook": notebook}, "zstd")["notebook"]
        notebook_pulls["gzip"].append(mb(pulls["notebook"]))
        notebook_pulls["zstd"].append(mb(zstd))
        times = per_cell.get(c["id"])
        median = statistics.median(times) if times else None
        test_s = f"{median:.0f}" if median is not None else "-"
        print(
            f"{c['id']:<28} {c['status']:<7} {test_s:>7} {sizes['head'] / 1e6:>15.0f} "
            f"{sizes['notebook'] / 1e6:>12.0f} {pulls['head'] / 1e6:>13.0f} "
            f"{pulls['notebook'] / 1e6:>11.0f} {zstd / 1e6:>11.0f}"
        )
        per_image.append(
            {
                "id": c["id"],
                "status": c["status"],
                "test_s": round(median, 1) if median is not None else None,
                "size_head_mb": mb(sizes["head"]),
                "size_notebook_mb": mb(sizes["notebook"]),
                "pull_head_mb": mb(pulls["head"]),
                "pull_notebook_mb": mb(pulls["notebook"]),
                "pull_notebook_zstd_mb": mb(zstd),
            }
        )
    figures = {
        "cells": len(built),
        "cold_build_s": round(cold, 1) if cold else None,
        "warm_build_s": round(warm_build, 1),
        "noop_build_s": round(noop, 2),
        "test_round_median_s": round(statistics.median(rounds), 1) if rounds else None,
        "warm_build_and_test_s": round(warm_build + rounds[0], 1) if rounds else None,
        "cell_median_s": round(statistics.median(every), 1) if every else None,
        "cell_worst_s": round(max(every), 1) if every else None,
        "grid_s": round(grid[0], 1) if grid and grid[1] == 0 else None,
        "cell_runs": len(every),
        "not_passed": len(flakes),
        "pull_notebook_max_mb": max(notebook_pulls["gzip"], default=None),
        "pull_notebook_zstd_max_mb": max(notebook_pulls["zstd"], default=None),
    }
    details = {
        "cells": per_image,
        "flakes": flakes,
        "warnings": warned,
        "grid_exit": grid[1] if grid else None,
        "grid_pairs": len(pairs),
        "grid_pairs_from_test": from_test,
    }
    results.record("matrix", figures, exits, (speed, end), details)


if __name__ == "__main__":
    main()
