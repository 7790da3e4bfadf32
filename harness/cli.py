"""`python -m harness`: plan, lock, build, test and clean a Ray image matrix.

Exit codes: 0 all passed; 1 a build or check failed; 2 bad input or environment;
130/143 interrupted (SIGINT/SIGTERM), after removing what the run created.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from harness import lock, matrix, report
from harness.build import BuildFailed, build_cell
from harness.engine import LABEL_MANAGED, LABEL_RUN, Engine, new_run_id
from harness.errors import HarnessError
from harness.paths import Paths
from harness.progress import log
from harness.results import FAILED, CellResult, Check
from harness.verify import test_cell

EPILOG = """\
cell selection: --only KEY=GLOB[,KEY=GLOB...] with keys ray, python, variant; repeat --only
to select the union. Example: --only ray=2.60.0,python=3.11.*  (quote globs in a shell)
exit codes: 0 passed, 1 a build or check failed, 2 bad input or environment, 130/143 interrupted
"""


class Interrupted(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"interrupted (exit {code})")
        self.code = code


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(128 + signum)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--matrix", default="matrix.yaml", type=Path, help="matrix file (default: ./matrix.yaml)"
    )
    common.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="KEY=GLOB,...",
        help="select cells, e.g. ray=2.60.0,python=3.11.* (repeatable: union)",
    )
    common.add_argument(
        "--build-dir",
        type=Path,
        default=None,
        help="reports, logs and contexts (default: build/ next to the matrix)",
    )
    p = argparse.ArgumentParser(
        prog="python -m harness",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("plan", parents=[common], help="list the selected cells, their tags and bases")
    s = sub.add_parser("lock", parents=[common], help="resolve hash-pinned lock files (uv)")
    s.add_argument("--check", action="store_true", help="only verify the locks are up to date")
    s = sub.add_parser("build", parents=[common], help="build head, worker, notebook images")
    s.add_argument(
        "--no-cache",
        action="store_true",
        help="rebuild base and images from scratch, ignoring build keys",
    )
    sub.add_parser("test", parents=[common], help="start clusters from the images and check them")
    s = sub.add_parser(
        "clean", parents=[common], help="remove containers/networks left by crashed runs (by label)"
    )
    s.add_argument("--images", action="store_true", help="also remove built images and bases")
    return p


def _setup(
    args: argparse.Namespace,
) -> tuple[matrix.Matrix, Paths, list[matrix.Cell], list[matrix.Excluded]]:
    m = matrix.load(args.matrix)
    cells, left = matrix.select(m, args.only)
    return m, Paths.for_matrix(args.matrix, args.build_dir), cells, left


def cmd_plan(args: argparse.Namespace) -> int:
    m, paths, cells, left = _setup(args)
    print(f"{len(cells)} cell(s) selected from {m.path}:")
    for c in cells:
        try:
            lock.check(paths.locks, c, m)
            lock_state = "lock ok"
        except HarnessError:
            lock_state = "lock missing or stale: run `nox -s lock`"
        print(f"  {c.id}  base {c.base.label}  ({lock_state})")
        for role, tag in c.tags(m.prefix).items():
            print(f"      {role:<8} {tag}")
    for e in [*m.excluded, *left]:
        print(f"  excluded {e.cell.id}: {e.reason}")
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    m, paths, cells, _ = _setup(args)
    if args.check:
        for c in cells:
            lock.check(paths.locks, c, m)
        print(f"{len(cells)} cell lock(s) up to date")
        return 0
    for c in cells:
        for path in lock.compile_cell(paths.locks, c, m):
            log(f"wrote {path.relative_to(paths.root)} ({len(lock.pins_of(path))} pins)")
    return 0


def _prior(paths: Paths) -> dict[str, CellResult]:
    return report.load_state(paths.state)


def cmd_build(args: argparse.Namespace, run_id: str) -> int:
    m, paths, cells, left = _setup(args)
    for c in cells:  # refuse stale locks before touching Docker
        lock.check(paths.locks, c, m)
    engine = Engine()
    engine.ping()
    state = _prior(paths)
    failed = 0
    for c in cells:
        result = report.fresh(c)
        previous = state.get(c.id)
        try:
            result.images, result.build_checks = build_cell(engine, m, paths, c, args.no_cache)
        except BuildFailed as exc:
            result.detail = str(exc)
            result.build_checks = [Check(f"build:{exc.role}", FAILED, exc.tail[-1500:], "build")]
        if (
            previous
            and previous.test_checks
            and previous.tested_image_ids == {i.role: i.id for i in result.images}
        ):
            # Same images as last tested: keep those results.
            result.test_checks = previous.test_checks
            result.tested_image_ids = previous.tested_image_ids
        result.settle()
        failed += result.status == FAILED
        state[c.id] = result
        log(f"{c.id}: {result.status}")
    report.write(paths.build, state, str(m.path), run_id, report.excluded([*m.excluded, *left]))
    log(f"report: {paths.build / 'report.md'}")
    return 1 if failed else 0


def cmd_test(args: argparse.Namespace, run_id: str) -> int:
    m, paths, cells, left = _setup(args)
    engine = Engine()
    engine.ping()
    state = _prior(paths)
    images_of: dict[str, dict[str, str]] = {}
    for c in cells:  # every image must exist before any cluster starts
        tags = c.tags(m.prefix)
        for tag in tags.values():
            if engine.inspect("image", tag) is None:
                raise HarnessError(
                    f"image {tag} not found; build it first: `nox -s build` "
                    f"(or `python -m harness build --only ray={c.ray},python={c.python}`)"
                )
        images_of[c.id] = tags
    failed = 0
    for c in cells:
        result = state.get(c.id) or report.fresh(c)
        if any(k.status == FAILED for k in result.build_checks):
            result.test_checks = []
            result.settle()
            failed += 1
            log(f"{c.id}: not tested, its build failed")
            continue
        ids = {
            role: str((engine.inspect("image", tag) or {}).get("Id"))
            for role, tag in images_of[c.id].items()
        }
        result.test_checks, timings = test_cell(
            engine, run_id, c, images_of[c.id], paths.logs(c.id) / "cluster"
        )
        result.tested_image_ids = ids
        result.timings.update(timings)
        result.settle()
        failed += result.status == FAILED
        state[c.id] = result
        passed = sum(1 for k in result.test_checks if k.status == "passed")
        log(f"{c.id}: {result.status} ({passed}/{len(result.test_checks)} checks passed)")
        report.write(paths.build, state, str(m.path), run_id, report.excluded([*m.excluded, *left]))
    report.write(paths.build, state, str(m.path), run_id, report.excluded([*m.excluded, *left]))
    log(f"report: {paths.build / 'report.md'}")
    return 1 if failed else 0


def cmd_clean(args: argparse.Namespace) -> int:
    paths = Paths.for_matrix(args.matrix, args.build_dir)
    engine = Engine()
    engine.ping()
    counts = engine.remove_labelled({LABEL_MANAGED: ""}, images=args.images)
    print("removed " + ", ".join(f"{n} {k}(s)" for k, n in counts.items()))
    for sub in ("context", "rootfs"):
        shutil.rmtree(paths.build / sub, ignore_errors=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    run_id = os.environ.get("HARNESS_RUN_ID") or new_run_id()
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        if args.command == "plan":
            return cmd_plan(args)
        if args.command == "lock":
            return cmd_lock(args)
        if args.command == "build":
            return cmd_build(args, run_id)
        if args.command == "test":
            return cmd_test(args, run_id)
        if args.command == "clean":
            return cmd_clean(args)
        raise AssertionError(args.command)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Interrupted as exc:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(f"\n{exc}: removing what run {run_id} created", file=sys.stderr)
        try:
            Engine().remove_labelled({LABEL_RUN: run_id})
        except HarnessError as cleanup_error:
            print(f"cleanup failed: {cleanup_error}", file=sys.stderr)
        return exc.code
