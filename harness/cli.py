"""`python -m harness`: plan, lock, build, test and clean a Ray image matrix.

Exit codes: 0 all passed; 1 a build or check failed; 2 bad input or environment;
130/143 interrupted (SIGINT/SIGTERM), after removing what the run created.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from types import FrameType
from typing import NoReturn

from harness import (
    audit,
    children,
    clean,
    diskspace,
    grid,
    index,
    lock,
    matrix,
    registry,
    release,
    report,
    reproduce,
    runs,
)
from harness.backends import PROBE_SOURCE, Cluster, kube, probe_result
from harness.base import BaseImage
from harness.build import BuildFailed, build_cell, prepare
from harness.children import stop_all
from harness.engine import LABEL_RUN, Engine, new_run_id
from harness.errors import HarnessError
from harness.paths import Paths
from harness.progress import bar, log
from harness.results import ERROR, FAILED, CellResult, Check
from harness.verify import CONNECT_TIMEOUT, test_cell
from harness.wheelhouse import Wheelhouse

PROBE_TIMEOUT = 30.0

EPILOG = """\
cell selection: --only KEY=GLOB[,KEY=GLOB...] with keys ray, python, variant; repeat --only
to select the union. Example: --only ray=2.60.0,python=3.11.*  (quote globs in a shell)
exit codes: 0 passed, 1 a build or check failed, 2 bad input or environment, 130/143 interrupted;
grid: 1 the harness called a pair compatible that Ray refuses, 3 a pair got no verdict
"""


# Commands that write into the build directory: one run at a time per directory.
WRITES_BUILD_DIR = ("build", "test", "verify-reproducible", "grid", "push", "manifests")


class Interrupted(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"interrupted (exit {code})")
        self.code = code


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(128 + signum)


def _ready_timeout(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ready-timeout",
        type=_positive,
        default=CONNECT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long a cluster may take to come up (default {CONNECT_TIMEOUT:.0f})",
    )


def _jobs_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"{text} must be from 1 to 64")
    return value


def _namespace(text: str) -> str:
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", text) or len(text) > 63:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a Kubernetes namespace name (a DNS-1123 label: at most 63 "
            "lower-case letters, digits and '-', starting and ending with a letter or digit)"
        )
    return text


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < 86400:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0 and less than a day")
    return value


class _Parser(argparse.ArgumentParser):
    """Bad flags: exit 2 with one line (no usage dump), like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
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
        "--jobs",
        type=_jobs_count,
        default=None,
        help="cells at once (default: a build per core, a test cluster per 2 cores, "
        "bounded by memory)",
    )
    common.add_argument(
        "--build-dir",
        type=Path,
        default=None,
        help="reports, logs and contexts (default: build/ next to the matrix)",
    )
    p = _Parser(
        prog="python -m harness",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    sub.add_parser("plan", parents=[common], help="list the selected cells, their tags and bases")
    s = sub.add_parser("lock", parents=[common], help="resolve hash-pinned lock files (uv)")
    s.add_argument("--check", action="store_true", help="only verify the locks are up to date")
    s = sub.add_parser("build", parents=[common], help="build head, worker, notebook images")
    s.add_argument(
        "--no-cache",
        action="store_true",
        help="rebuild base and images from scratch, ignoring build keys",
    )
    s = sub.add_parser(
        "test", parents=[common], help="start clusters from the images and check them"
    )
    _ready_timeout(s)
    s.add_argument(
        "--backend",
        choices=("containers", "kind"),
        default="containers",
        help="where clusters run: plain containers (default) or Kubernetes",
    )
    s.add_argument(
        "--kube-context",
        help="with --backend kind: use this existing context instead of creating a kind "
        "cluster (non-kind contexts pull the pushed images by digest)",
    )
    s.add_argument(
        "--kind-node-image",
        help=f"kindest/node image in the local engine (default ${kube.NODE_IMAGE_ENV})",
    )
    sub.add_parser(
        "verify-reproducible",
        parents=[common],
        help="rebuild cells from scratch and compare file by file with the built images",
    )
    s = sub.add_parser(
        "grid",
        parents=[common],
        help="every notebook image against every cluster: Ray's verdicts and ours",
    )
    _ready_timeout(s)
    s = sub.add_parser(
        "probe",
        parents=[common],
        help="check a running cluster against this interpreter or a notebook image",
    )
    s.add_argument("--address", required=True, help="ray://HOST:10001 or HOST:6379")
    s.add_argument("--image", help="run the client side in this image (host network)")
    s.add_argument(
        "--timeout",
        type=_positive,
        default=PROBE_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for the cluster to answer (default {PROBE_TIMEOUT:.0f})",
    )
    s = sub.add_parser(
        "push",
        parents=[common],
        help="push cells that passed their test, unchanged since, to the registry",
    )
    s.add_argument(
        "--report",
        type=Path,
        action="append",
        help="test report(s) to gate on (default: build/report.json; repeatable, e.g. "
        "one per CI shard)",
    )
    s.add_argument("--dry-run", action="store_true", help="show the gate's decisions only")
    s = sub.add_parser(
        "manifests",
        parents=[common],
        help="KubeRay RayCluster and Vertex AI image refs, pinned by digest",
    )
    s.add_argument("--images-lock", type=Path, help="default: build/images.lock.json")
    s.add_argument("--namespace", type=_namespace, help="metadata.namespace of the RayClusters")
    s = sub.add_parser("matrix", parents=[common], help="the selected cells as JSON")
    s.add_argument(
        "--github", action="store_true", help="as a GitHub Actions job matrix (cells=...)"
    )
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
    paths = Paths.for_matrix(args.matrix, args.build_dir)
    index.index_url()  # a package index variable that points nowhere is refused up front
    validate_against_index(m, paths)
    return m, paths, cells, left


def validate_against_index(m: matrix.Matrix, paths: Paths) -> None:
    """Refuse unknown Ray versions and (Ray, Python) pairs with no wheel, for every cell of
    the matrix. A cell whose lock is current needs no look-up: its lock proves it resolved."""
    unlocked = []
    for c in m.cells:
        try:
            lock.check(paths.locks, c, m)
        except HarnessError:
            unlocked.append(c)
    if unlocked:
        index.check(m, unlocked, index.fetch(paths.root / ".cache" / "index"))


def default_jobs(cores_per_job: int) -> int:
    """Cells at once, bounded by cores and by memory (a cell's cluster takes ~3 GiB).

    A build keeps about one core busy; a test cluster runs some eight Ray processes across
    three containers and wants about two: on 2 cores, two clusters at once take as long
    as two in a row and make Ray Client connects stall in Ray's retry path."""
    cpus = os.cpu_count() or 1
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem_gib = 8.0
    return max(1, min(cpus // cores_per_job, int(mem_gib // 3), 4))


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


def _jobs(args: argparse.Namespace, n: int, cores_per_job: int) -> int:
    return max(1, min(args.jobs or default_jobs(cores_per_job), n))


def _build_one(
    engine: Engine,
    m: matrix.Matrix,
    paths: Paths,
    c: matrix.Cell,
    base: BaseImage | str,
    no_cache: bool,
    previous: CellResult | None,
) -> CellResult:
    result = report.fresh(c)
    if isinstance(base, str):
        result.detail = base
        result.build_checks = [Check("build:base", FAILED, base[-1500:], "build")]
        return result
    try:
        result.images, result.build_checks = build_cell(
            engine, m, paths, c, base, no_cache, previous
        )
    except BuildFailed as exc:
        result.detail = str(exc)
        result.build_checks = [Check(f"build:{exc.role}", FAILED, exc.tail[-1500:], "build")]
    except HarnessError as exc:
        result.detail = str(exc)
        result.build_checks = [Check("build", FAILED, str(exc)[-1500:], "build")]
    locks = [lock.lock_path(paths.locks, c, kind) for kind in lock.KINDS]
    result.build_checks.append(audit.check(locks, paths.root / ".cache" / "audit", m.audit))
    return result


def cmd_build(args: argparse.Namespace, run_id: str) -> int:
    m, paths, cells, left = _setup(args)
    for c in cells:  # refuse stale locks before touching Docker
        lock.check(paths.locks, c, m)
    engine = Engine()
    engine.ping()
    wheelhouse = Wheelhouse(paths.wheelhouse)
    wheels_missing = {
        c.id
        for c in cells
        if any(wheelhouse.missing(lock.lock_path(paths.locks, c, k), c.python) for k in lock.KINDS)
    }
    diskspace.check(
        diskspace.plan(
            engine,
            m,
            cells,
            paths.build,
            paths.wheelhouse,
            diskspace.docker_root(engine),
            wheels_missing,
        )
    )
    state = _prior(paths)
    bases = prepare(engine, m, paths, cells, fresh=args.no_cache)
    jobs = _jobs(args, len(cells), cores_per_job=1)
    log(f"building {len(cells)} cell(s), {jobs} at a time")
    failed = 0
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = {
            pool.submit(
                _build_one, engine, m, paths, c, bases[c.id], args.no_cache, state.get(c.id)
            ): c
            for c in cells
        }
        with bar("building cells", len(cells)) as advance:
            for done, future in enumerate(as_completed(futures), 1):
                advance()
                result = future.result()
                previous = state.get(result.id)
                if (
                    previous
                    and previous.test_checks
                    and previous.tested_image_ids == {i.role: i.id for i in result.images}
                ):
                    # Same images as last tested: keep those results.
                    result.test_checks = previous.test_checks
                    result.tested_image_ids = previous.tested_image_ids
                result.settle()
                # The exit code and the line say what this build did; the report keeps the
                # cell's last test status when its images are the ones tested.
                broken = any(k.status in (FAILED, ERROR) for k in result.build_checks)
                failed += broken
                state[result.id] = result
                kept = f" (last test: {result.status})" if result.test_checks else ""
                log(
                    f"[{done}/{len(cells)}] {result.id}: {'build failed' if broken else 'built'}"
                    f"{kept}"
                )
                report.write(paths.build, state, str(m.path), run_id, _excluded(m, left))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # an interrupt must not wait for cells
    log(f"report: {paths.build / 'report.md'}")
    return 1 if failed else 0


def _excluded(m: matrix.Matrix, left: list[matrix.Excluded]) -> list[CellResult]:
    return report.excluded([*m.excluded, *left])


def _test_one(
    engine: Engine,
    run_id: str,
    paths: Paths,
    c: matrix.Cell,
    tags: dict[str, str],
    result: CellResult,
    ready_timeout: float,
    make_cluster: Callable[[], Cluster] | None = None,
) -> CellResult:
    if any(k.status == FAILED for k in result.build_checks):
        result.test_checks = []
        log(f"{c.id}: not tested, its build failed")
        return result
    ids = {role: str((engine.inspect("image", tag) or {}).get("Id")) for role, tag in tags.items()}
    try:
        result.test_checks, timings = test_cell(
            engine, run_id, c, tags, paths.logs(c.id) / "cluster", ready_timeout, make_cluster
        )
    except HarnessError as exc:  # this cell's infrastructure failed: the others go on
        result.test_checks = [Check("test:aborted", ERROR, f"testing stopped: {exc}")]
        log(f"{c.id}: testing stopped: {exc}")
        return result
    result.tested_image_ids = ids
    result.timings.update(timings)
    return result


def _require_built(engine: Engine, m: matrix.Matrix, c: matrix.Cell) -> None:
    """Exit 2, saying how to build it, unless every image of the cell exists."""
    for tag in c.tags(m.prefix).values():
        if engine.inspect("image", tag) is None:
            raise HarnessError(
                f"image {tag} not found; build it first: `nox -s build` (or `python -m "
                f"harness build --only ray={c.ray},python={c.python},variant={c.variant}`)"
            )


def cmd_test(args: argparse.Namespace, run_id: str) -> int:
    m, paths, cells, left = _setup(args)
    engine = Engine()
    engine.ping()
    state = _prior(paths)
    images_of: dict[str, dict[str, str]] = {}
    for c in cells:  # every image must exist before any cluster starts
        tags = c.tags(m.prefix)
        previous = state.get(c.id)
        if previous and any(k.status == FAILED for k in previous.build_checks):
            images_of[c.id] = tags  # its build failed: reported as failed, not tested
            continue
        _require_built(engine, m, c)
        images_of[c.id] = tags
    backend: kube.KubeBackend | None = None
    deploy = images_of  # what each cluster runs: local tags, or pushed digests
    if args.backend == "kind":
        backend = kube.KubeBackend(
            engine, run_id, args.kube_context, args.kind_node_image, _pushed(args, paths)
        )
        deploy = {c.id: backend.images_for(c, images_of[c.id]) for c in cells}  # before creating
    jobs = 1 if backend else _jobs(args, len(cells), cores_per_job=2)
    log(f"testing {len(cells)} cell(s), {jobs} at a time")
    failed = 0
    with backend or contextlib.nullcontext():
        if backend:
            backend.load([tag for c in cells for tag in images_of[c.id].values()])
        pool = ThreadPoolExecutor(max_workers=jobs)
        try:
            futures = [
                pool.submit(
                    _test_one,
                    engine,
                    run_id,
                    paths,
                    c,
                    images_of[c.id],
                    state.get(c.id) or report.fresh(c),
                    args.ready_timeout,
                    _kube_cluster(backend, c, deploy[c.id], paths) if backend else None,
                )
                for c in cells
            ]
            with bar("testing cells", len(cells)) as advance:
                for done, future in enumerate(as_completed(futures), 1):
                    advance()
                    result = future.result()
                    result.settle()
                    failed += result.status == FAILED
                    state[result.id] = result
                    counts = Counter(k.status for k in result.test_checks)
                    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
                    log(
                        f"[{done}/{len(cells)}] {result.id}: {result.status} "
                        f"({summary or 'no checks'})"
                    )
                    report.write(paths.build, state, str(m.path), run_id, _excluded(m, left))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
    report.write(paths.build, state, str(m.path), run_id, _excluded(m, left))
    log(f"report: {paths.build / 'report.md'}")
    return 1 if failed else 0


def _pushed(args: argparse.Namespace, paths: Paths) -> dict[str, dict[str, str]]:
    """Pushed image refs by cell and role, for a kube context that pulls from a registry."""
    lock_path = paths.build / "images.lock.json"
    if args.kube_context and lock_path.is_file():
        return registry.read_lock(lock_path).refs()
    return {}


def _kube_cluster(
    backend: kube.KubeBackend, c: matrix.Cell, images: dict[str, str], paths: Paths
) -> Callable[[], Cluster]:
    return lambda: backend.cluster(c, images, paths.logs(c.id) / "kube")


def cmd_verify_reproducible(args: argparse.Namespace, run_id: str) -> int:
    """Each selected cell's images must already exist (run `build` first)."""
    m, paths, cells, _ = _setup(args)
    engine = Engine()
    engine.ping()
    for c in cells:
        lock.check(paths.locks, c, m)
        _require_built(engine, m, c)
    failed = 0
    results: dict[str, list[Check]] = {}
    for c in cells:  # one at a time: a from-scratch rebuild already loads both cores
        checks = reproduce.verify_cell(engine, m, paths, c, run_id)
        results[c.id] = checks
        bad = [k for k in checks if k.status == FAILED]
        failed += bool(bad)
        for k in checks:
            print(f"{c.id}  {k.name:<20} {k.status:<7} {k.detail[:2000]}")
    out = paths.build / "reproducibility.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {cid: [dataclasses.asdict(k) for k in ks] for cid, ks in results.items()}, indent=1
        )
    )
    log(f"reproducibility: {len(cells) - failed}/{len(cells)} cell(s) identical; details in {out}")
    return 1 if failed else 0


def cmd_grid(args: argparse.Namespace, run_id: str) -> int:
    m, paths, cells, _ = _setup(args)
    if not args.only and m.grid.only:
        cells, _ = matrix.select(m, list(m.grid.only))
    engine = Engine()
    engine.ping()
    for c in cells:
        _require_built(engine, m, c)
    log(f"grid: {len(cells)} cluster(s) x {len(cells)} notebook image(s)")
    pairs = grid.run(engine, m, cells, run_id, paths.logs("grid"), args.ready_timeout)
    grid.write(paths.build, pairs, m.grid)
    counts = Counter(p.harness["verdict"] for p in pairs)
    log(f"grid: {dict(counts)}; {paths.build / 'grid.md'}, grid.html, grid.json")
    undecided = [p for p in pairs if p.undecided]
    for p in undecided:
        log(f"grid: no verdict for {p.notebook} -> {p.cluster}: {'; '.join(p.undecided)[:400]}")
    blind = [p for p in pairs if p.blind_spot]
    for p in blind:
        log(f"grid: harness says compatible but Ray does not agree: {p.notebook} -> {p.cluster}")
    if undecided:
        return grid.EXIT_UNDECIDED
    return grid.EXIT_BLIND_SPOT if blind else 0


def cmd_probe(args: argparse.Namespace) -> int:
    """For users who already have a cluster: Ray's verdict and ours for this client."""
    m = matrix.load(args.matrix) if args.matrix.is_file() else None
    policy = m.grid if m else matrix.GridPolicy()
    ray_client = args.address.startswith("ray://")
    if not re.fullmatch(r"(ray://)?[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}", args.address):
        raise HarnessError(
            f"--address {args.address!r}: use ray://HOST:PORT (Ray Client) or HOST:PORT (GCS)"
        )
    if not args.image and importlib.util.find_spec("ray") is None:
        raise HarnessError(
            f"Ray is not installed in {sys.executable}; run the client side in a notebook "
            "image instead: --image <prefix>/ray-notebook:<ray>-py<python>-<variant>"
        )
    timeout = int(args.timeout)
    command = (
        ["cluster", args.address, "--expect-nodes", "1", "--timeout", str(timeout)]
        if ray_client
        else ["version-check", args.address, "--timeout", str(timeout)]
    )
    unreachable = (
        f"cannot reach {args.address} within {timeout}s: check the address and port, that "
        "the cluster is up, and that this machine (or --image's container, on the host "
        "network) can reach it"
    )
    if args.image:
        engine = Engine()
        engine.ping()
        cmd = [engine.cli, "run", "--rm", "-i", "--network", "host"]
        cmd += ["--entrypoint", "python", args.image, "-", *command]
    else:
        cmd = [sys.executable, "-", *command]
    try:  # the probe bounds itself; this bounds Python and Ray starting up around it
        rc, out, err = children.run(cmd, input=PROBE_SOURCE, timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        raise HarnessError(unreachable) from None
    result = probe_result(out)
    if result is None:
        why = (err.strip().splitlines() or ["no output"])[-1][:300]
        raise HarnessError(f"the probe gave no answer (exit {rc}): {why}")
    if not result.get("ok") and "client" not in result:
        raise HarnessError(f"{unreachable} ({str(result.get('message') or result)[:200]})")
    if not ray_client:
        cluster = result.get("cluster") or {}
        node = {"python": cluster.get("python_version"), "ray": cluster.get("ray_version")}
        checked = tuple(k for k in policy.fail if k in node)
        ours = grid.judge(result["client"], [node], matrix.GridPolicy(fail=checked, warn=()))
        print(f"Ray's driver check against {args.address}: {result['verdict']}")
        print(f"  {' '.join(str(result.get('message')).split())[:600]}")
        print(f"harness: {ours['verdict']} (cluster metadata: {checked})")
        for reason in ours["reasons"]:
            print(f"  - {reason}")
        print("(for node-by-node parity and wire libraries, probe ray://HOST:10001)")
        return 0 if ours["verdict"] != grid.INCOMPATIBLE and result["verdict"] == "accepted" else 1
    client = grid.ray_client_verdict(result)
    nodes = [n.get("facts") or {} for n in result.get("nodes", [])]
    if client["verdict"] in ("error", grid.UNDECIDED) and not nodes:
        raise HarnessError(f"{unreachable} ({client['message'][:200]})")
    ours = grid.judge(result.get("client") or {}, nodes, policy)
    print(f"Ray Client {args.address}: {client['verdict']}: {client['message'][:500]}")
    print(f"harness: {ours['verdict']} over {len(nodes)} node(s)")
    for reason in ours["reasons"]:
        print(f"  - {reason}")
    return 0 if ours["verdict"] != grid.INCOMPATIBLE and client["verdict"] != "rejected" else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    run_id = os.environ.get("HARNESS_RUN_ID") or new_run_id()
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        if args.command not in ("plan", "matrix", "clean"):
            runs.hold_run(run_id)  # alive until this process ends: `clean` leaves it alone
        if args.command in WRITES_BUILD_DIR:
            runs.own_build_dir(Paths.for_matrix(args.matrix, args.build_dir).build, args.command)
        if args.command == "plan":
            return cmd_plan(args)
        if args.command == "lock":
            return cmd_lock(args)
        if args.command == "build":
            return cmd_build(args, run_id)
        if args.command == "test":
            return cmd_test(args, run_id)
        if args.command == "verify-reproducible":
            return cmd_verify_reproducible(args, run_id)
        if args.command == "grid":
            return cmd_grid(args, run_id)
        if args.command == "probe":
            return cmd_probe(args)
        if args.command == "push":
            return release.cmd_push(args)
        if args.command == "manifests":
            return release.cmd_manifests(args)
        if args.command == "matrix":
            return release.cmd_matrix(args)
        if args.command == "clean":
            return clean.cmd_clean(args)
        raise AssertionError(args.command)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Interrupted as exc:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(f"\n{exc}: removing what run {run_id} created", file=sys.stderr)
        stop_all()
        try:
            kube.close_all()
        except HarnessError as cleanup_error:
            print(f"cleanup failed: {cleanup_error}", file=sys.stderr)
        try:
            counts = Engine(cleanup=True).remove_labelled({LABEL_RUN: run_id}, images=True)
            print(f"removed {counts}", file=sys.stderr)
        except HarnessError as cleanup_error:
            print(f"cleanup failed: {cleanup_error}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exc.code)  # do not wait for worker threads still unwinding
