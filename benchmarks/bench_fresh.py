"""Benchmark a new user's first run: a fresh clone of this checkout's HEAD, the harness's
images and bases removed from the engine, BuildKit's cache pruned, and an empty
wheelhouse, pip cache and uv cache; then the README's main job, `nox -s build` and
`nox -s test`, each timed (downloads included). Prints figures; asserts nothing.

    nox -s bench -- fresh

It removes every image the harness built (`python -m harness clean --images`) and the
engine's build cache: the next build here is a cold one too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import results
from common import ROOT, cells, cpu_speed, not_passed, table, warnings


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int]:
    start = time.monotonic()
    rc = subprocess.run(args, cwd=cwd, env=env).returncode
    return time.monotonic() - start, rc


def main() -> None:
    speed = cpu_speed()
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    if dirty:
        print("bench: uncommitted changes are not measured: the clone is of HEAD")
    tmp = Path(tempfile.mkdtemp(prefix="bench-fresh-"))
    try:
        clone = tmp / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=clone,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        env = {
            **os.environ,
            "HARNESS_WHEELHOUSE": str(tmp / "wheelhouse"),
            "PIP_CACHE_DIR": str(tmp / "pip-cache"),
            "UV_CACHE_DIR": str(tmp / "uv-cache"),
            "HARNESS_RUN_ID": f"benchfresh{os.getpid()}",
        }
        env.pop("VIRTUAL_ENV", None)  # nox's own session, not the bench session's venv
        print("bench: emptying the engine of the harness's images and the build cache")
        subprocess.run(
            [sys.executable, "-m", "harness", "clean", "--images"], cwd=clone, env=env, check=True
        )
        subprocess.run(["docker", "builder", "prune", "-af"], check=True, capture_output=True)
        build, rc_build = timed(["nox", "-s", "build"], clone, env)
        test, rc_test = timed(["nox", "-s", "test"], clone, env)
        # then nothing to do: the harness's own time (nox's venv check not counted), which
        # also finds every wheel built from an sdist again rather than building it
        python = clone / ".nox" / "build" / "bin" / "python"
        noop, rc_noop = timed([str(python), "-m", "harness", "build"], clone, env)
        tested = [c for c in cells(clone / "build", fresh=False) if c["status"] != "excluded"]
        # a cell that did not pass, or passed only after a retry: what and why
        flaky = {c["id"]: not_passed(c) for c in tested}
        bad = {
            c["id"]: flaky[c["id"]] or [c["status"]]
            for c in tested
            if c["status"] != "passed" or flaky[c["id"]]
        }
        warned = {c["id"]: w for c in tested if (w := warnings(c))}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    end = table(
        [
            ("cells", str(len(tested))),
            ("fresh clone: nox -s build, downloads included (s)", f"{build:.1f} (exit {rc_build})"),
            ("fresh clone: nox -s test (s)", f"{test:.1f} (exit {rc_test})"),
            ("fresh clone: build + test (s)", f"{build + test:.1f}"),
            ("then a no-op build, python -m harness build (s)", f"{noop:.1f} (exit {rc_noop})"),
            (f"cells that did not pass (of {len(tested)})", str(len(bad))),
            *[(f"  {cell}", "; ".join(why)) for cell, why in bad.items()],
            (f"cells whose build checks warned (of {len(tested)})", str(len(warned))),
            *[(f"  {cell}", "; ".join(why)[:120]) for cell, why in warned.items()],
        ],
        speed,
    )
    figures = {
        "cells": len(tested),
        "build_s": round(build, 1),
        "test_s": round(test, 1),
        "total_s": round(build + test, 1),
        "noop_build_s": round(noop, 2),
        "not_passed": len(bad),
    }
    rounds = [
        {"exit": rc_build, "seconds": round(build, 1), "step": "nox -s build"},
        {"exit": rc_test, "seconds": round(test, 1), "step": "nox -s test"},
        {"exit": rc_noop, "seconds": round(noop, 2), "step": "python -m harness build (no-op)"},
    ]
    details = {"not_passed": bad, "warnings": warned}
    results.record("fresh", figures, rounds, (speed, end), details, measured=head)


if __name__ == "__main__":
    main()
