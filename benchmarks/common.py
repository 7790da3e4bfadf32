"""What both benchmarks share: running the harness, reading its report, measuring pull
sizes. Figures are printed; nothing is asserted (the goals are in the README)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.engine import Engine  # noqa: E402
from harness.registry_api import Exporter  # noqa: E402

LAST_RUN: list[str] = []  # the run id of the latest `harness` call


def harness(
    args: Sequence[str], build_dir: Path, on_line: Callable[[str], None] | None = None
) -> tuple[float, int]:
    """Run `python -m harness ARGS --build-dir BUILD_DIR`: wall seconds and exit code. With
    `on_line`, its progress lines (stderr, plain) go to `on_line` as they come, and on."""
    start = time.monotonic()
    run_id = f"bench{os.getpid()}{int(time.time() * 1000) % 10**9}"
    LAST_RUN[:] = [run_id]
    command = [sys.executable, "-m", "harness", *args, "--build-dir", str(build_dir)]
    env = {**os.environ, "HARNESS_RUN_ID": run_id}
    if on_line is None:
        r = subprocess.run(command, cwd=ROOT, env=env)
        return time.monotonic() - start, r.returncode
    with subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True) as p:
        assert p.stderr is not None
        for line in p.stderr:
            on_line(line)
            sys.stderr.write(line)
    return time.monotonic() - start, p.returncode


def cells(build_dir: Path, name: str = "report.json", fresh: bool = True) -> list[dict[str, Any]]:
    """The report's cells; with `fresh`, [] unless the latest `harness` call wrote it (a
    round that wrote no report must not be counted from the one before)."""
    path = build_dir / name
    if not path.is_file():
        return []
    doc = json.loads(path.read_text())
    if fresh and LAST_RUN and doc.get("run_id") != LAST_RUN[0]:
        return []
    found: list[dict[str, Any]] = doc["cells"]
    return found


def mb(n: float) -> float:
    return round(n / 1e6, 1)


def not_passed(cell: dict[str, Any]) -> list[str]:
    """The flakes of a tested cell: its test checks that did not pass or skip (`name:
    status`), and those that passed only after the probe retried (`name: passed after N
    retries`). Build checks are not test runs: their warnings are `warnings`'."""
    out = []
    for c in cell.get("checks", []):
        if c.get("stage") == "build":
            continue
        retries = int((c.get("data") or {}).get("retries") or 0)
        if c["status"] not in ("passed", "skipped"):
            out.append(f"{c['name']}: {c['status']}")
        elif retries:
            out.append(f"{c['name']}: passed after {retries} retries")
    return out


def warnings(cell: dict[str, Any]) -> list[str]:
    """A cell's build checks that did not pass or skip (`name: status: detail`): what the
    world says of its inputs (a pending Debian security update, a vulnerable package),
    shown beside the figures, never counted as a flake; a failed one also fails the cell,
    which the benches count."""
    return [
        f"{c['name']}: {c['status']}: {c.get('detail', '')[:300]}"
        for c in cell.get("checks", [])
        if c.get("stage") == "build" and c["status"] not in ("passed", "skipped")
    ]


def pull_sizes(image_ids: dict[str, str], compression: str = "gzip") -> dict[str, int]:
    """Per image: the sum of its compressed layers (gzip, or zstd as `layer_compression:
    zstd` pushes them), exactly the blobs `push` uploads and a registry stores (what a node
    pulls). Layers shared between images are counted for each image, as a node pulling
    only that image downloads them."""
    with tempfile.TemporaryDirectory(prefix="bench-pull-") as tmp:
        exporter = Exporter(Engine(), Path(tmp), compression)
        sizes = {}
        for name, image_id in image_ids.items():
            sizes[name] = sum(b.size for b in exporter.export(image_id).layers)
        exporter.close()
    return sizes


def spread(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"median {statistics.median(values):.1f} s, worst {max(values):.1f} s (n={len(values)})"


def _loop(n: int) -> int:
    return sum(i * i for i in range(n))


def cpu_speed() -> float:
    """Seconds every core takes, all at once, for a fixed pure-Python loop (best of three):
    the CPU's speed at that moment, printed with every table. It catches a slower or busier
    CPU; it did not catch the drift seen here on 2026-11-30 (a cell's test went from 50 s
    to 62 s within an hour on the same code while this loop stayed at 0.355 s), so a
    steady figure here does not prove two runs comparable."""
    cores = os.cpu_count() or 1
    best = float("inf")
    with ProcessPoolExecutor(cores) as pool:
        for _ in range(3):
            start = time.perf_counter()
            list(pool.map(_loop, [10**7] * cores))
            best = min(best, time.perf_counter() - start)
    return best


def table(rows: Sequence[tuple[str, str]], speed_at_start: float) -> float:
    """Print the figures, and the machine's speed at the start (`cpu_speed()`) and now;
    the speed now."""
    end = cpu_speed()
    speed = f"{speed_at_start:.3f} s at the start, {end:.3f} s at the end"
    rows = [*rows, ("machine: a fixed loop on every core at once (lower is faster)", speed)]
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return end
