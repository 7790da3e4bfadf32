"""Benchmark one cell: cold build (fresh base, no layer cache, warm wheelhouse), no-op
build, the end-to-end test (`--repeat N` times in a row, counting every run that does not
pass as a flake), and the pull size of each image. Prints figures; asserts nothing.

    nox -s bench                           # default cell, one test run
    nox -s bench -- --repeat 30            # the flake measure: 30 runs in a row
    nox -s bench -- --only python=3.13.5   # another selection (first selected cell)
    nox -s bench -- --matrix matrix-arm64.yaml --only platform=linux/arm64   # under QEMU
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
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
from cpu_profile import Profiler


def main() -> None:
    speed = cpu_speed()
    parser = argparse.ArgumentParser()
    parser.add_argument("--matrix", default="matrix.yaml")
    parser.add_argument("--only", default="ray=2.60.0,python=3.11.2,variant=cpu")
    parser.add_argument("--repeat", type=int, default=1, help="test the cell this many times")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold build")
    parser.add_argument(
        "--no-profile", action="store_true", help="skip the profiled run after the timed ones"
    )
    opts = parser.parse_args()
    only = ["--matrix", opts.matrix, "--only", opts.only]
    with tempfile.TemporaryDirectory() as tmp:
        build_dir = Path(tmp)
        _, rc = harness(["build", *only], build_dir)  # warm the wheelhouse (downloads, if any)
        if rc != 0:
            sys.exit(f"bench: the build failed (exit {rc})")
        cold = None if opts.no_cold else harness(["build", *only, "--no-cache"], build_dir)[0]
        cell = next(c for c in cells(build_dir) if c["images"])
        noop, _ = harness(["build", *only], build_dir)
        walls: list[float] = []
        inside: list[float] = []
        flakes: list[str] = []
        rounds: list[dict[str, object]] = []
        timings: dict[str, float] = {}
        profile: dict[str, Any] = {}
        total = opts.repeat + (0 if opts.no_profile else 1)
        for i in range(total):
            # the timed runs, then one more profiled: sampling /proc costs CPU of its own,
            # which a CPU-bound test would pay in wall time
            profiled = i == opts.repeat
            with Profiler() if profiled else contextlib.nullcontext() as profiler:
                wall, rc = harness(["test", *only], build_dir, profiler.line if profiler else None)
            if profiler is not None:
                profile = profiler.result()
            found = [c for c in cells(build_dir) if c["id"] == cell["id"]]
            tested: dict[str, Any] = found[0] if found else {"status": "none", "timings": {}}
            if not profiled:
                walls.append(wall)
                inside.append(float(tested["timings"].get("test_seconds", 0)))
                timings = tested["timings"] or timings
            bad = not_passed(tested) if found else []
            status = tested["status"]
            rounds.append(
                {"exit": rc, "seconds": round(wall, 1), "status": status, "profiled": profiled}
            )
            if rc != 0 or bad or status != "passed":
                flakes.append(f"run {i + 1}: exit {rc}, {', '.join(bad) or status}")
            what = " (profiled, not timed)" if profiled else ""
            print(f"bench: run {i + 1}/{total}{what}: {status} in {wall:.1f} s")
        ids = {i["role"]: i["id"] for i in cell["images"]}
    pulls = pull_sizes(ids)
    zstd = pull_sizes({"notebook": ids["notebook"]}, "zstd")["notebook"]
    warned = warnings(cell)
    rows = [
        ("cell", cell["id"]),
        ("cold build: base + 3 images + structure checks (s)", f"{cold:.1f}" if cold else "-"),
        *[(f"  {i['role']} image build (s)", f"{i['build_seconds']:.1f}") for i in cell["images"]],
        ("no-op build, all cached (s)", f"{noop:.1f}"),
        ("end-to-end test, CLI wall time", spread(walls)),
        ("  cluster up to last check, inside the harness", spread(inside)),
        ("  last run: cluster up + ready (s)", f"{timings.get('cluster_ready', 0):.1f}"),
        (f"runs that did not pass (of {total})", str(len(flakes))),
        *[(f"  {f}", "") for f in flakes],
        ("build checks that warned", str(len(warned))),
        *[(f"  {w[:100]}", "") for w in warned],
        *[
            (f"  {i['role']} image size (MB)", f"{i['size_bytes'] / 1e6:.0f}")
            for i in cell["images"]
        ],
        *[(f"  {role} pull size, gzip layers (MB)", f"{n / 1e6:.0f}") for role, n in pulls.items()],
        ("  notebook pull size, zstd layers (MB)", f"{zstd / 1e6:.0f}"),
    ]
    end = table(rows, speed)
    sizes = {i["role"]: i["size_bytes"] for i in cell["images"]}
    figures = {
        "cold_build_s": round(cold, 1) if cold else None,
        "noop_build_s": round(noop, 2),
        "test_median_s": round(statistics.median(walls), 1),
        "test_worst_s": round(max(walls), 1),
        "inside_median_s": round(statistics.median(inside), 1),
        "runs": len(rounds),
        "not_passed": len(flakes),
        "size_head_mb": mb(sizes["head"]),
        "size_notebook_mb": mb(sizes["notebook"]),
        **{f"pull_{role}_mb": mb(n) for role, n in pulls.items()},
        "pull_notebook_zstd_mb": mb(zstd),
    }
    details = {
        "cell": cell["id"],
        "flakes": flakes,
        "warnings": warned,
        "timings": timings,
        "profile": profile,
    }
    if profile:
        print()
        print(f"profiled run: {profile['wall_s']} s, host CPU {profile['host_cpu_s']} s "
              f"({profile['processes_cpu_s']} s in processes seen)")  # fmt: skip
        for s in profile["steps"]:
            cpu = f"{s['host_cpu_s']:>5} CPU-s"
            print(f"  {s['start_s']:>5} s  {s['wall_s']:>5} s  {cpu}  {s['step']}")
        for k in profile["by_kind"]:
            print(f"  {k['cpu_s']:>5} CPU-s  {k['processes']:>3}  {k['kind']}")
    results.record("cell", figures, rounds, (speed, end), details)


if __name__ == "__main__":
    main()
