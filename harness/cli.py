"""`python -m harness`: plan, lock, build, test and clean a Ray image matrix.

Exit codes: 0 all passed; 1 a build or check failed; 2 bad input or environment;
130/143 interrupted (SIGINT/SIGTERM), after removing what the run created.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from harness import interrupts, labels, runs, timeouts
from harness.backends import NODE_IMAGE_ENV
from harness.children import stop_all
from harness.engine import Engine, new_run_id
from harness.errors import HarnessError
from harness.lock import ALL as UPGRADE_ALL
from harness.paths import Paths

EPILOG = """\
cell selection: --only KEY=GLOB[,KEY=GLOB...] with keys ray, python, variant; repeat --only
to select the union. Example: --only ray=2.60.0,python=3.11.*  (quote globs in a shell)
exit codes: 0 passed, 1 a build or check failed or a cell was not verified, 2 bad input or
environment, 130/143 interrupted;
grid: 1 the harness called a pair compatible that Ray refuses, 3 a pair got no verdict
(all of them: docs/reference/exit-codes.md)
"""


Command = Callable[[argparse.Namespace, str], int]
# Each command's module under harness.commands, imported when that command runs: a run of
# `build` does not import the grid, the Kubernetes backend or the registry client.
COMMANDS: dict[str, str] = {
    "plan": "plan",
    "lock": "lock",
    "build": "build",
    "test": "test",
    "verify-reproducible": "reproduce",
    "grid": "grid",
    "probe": "probe",
    "push": "push",
    "manifests": "manifests",
    "matrix": "matrix",
    "clean": "clean",
    "diff": "diff",
    "verify": "verify",
    "sbom": "sbom",
    "catalog": "catalog",
}


def command(name: str) -> Command:
    """The `run(args, run_id)` of command `name`."""
    run: Command = importlib.import_module(f"harness.commands.{COMMANDS[name]}").run
    return run


# Commands that write into the build directory: one run at a time per directory.
WRITES_BUILD_DIR = ("lock", "build", "test", "verify-reproducible", "grid", "push", "manifests")


def _ready_timeout(p: argparse.ArgumentParser, defaults: timeouts.Timeouts) -> None:
    p.add_argument(
        "--ready-timeout",
        type=_positive,
        metavar="SECONDS",
        help="how long a cluster's nodes may take to come up and register (default "
        f"{defaults.ready:.0f}; {timeouts.KUBE.ready:.0f} with --backend kind)",
    )
    p.add_argument(
        "--connect-timeout",
        type=_positive,
        metavar="SECONDS",
        help="how long a client may take to connect, probe every node and run its work "
        f"(default {defaults.connect:.0f})",
    )


def _backend(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        choices=("containers", "kind"),
        default="containers",
        help="where clusters run: plain containers (default) or Kubernetes",
    )
    p.add_argument(
        "--kube-context",
        help="with --backend kind: use this existing context instead of creating a kind "
        "cluster (non-kind contexts pull the pushed images by digest)",
    )
    p.add_argument(
        "--kind-node-image",
        help=f"kindest/node image in the local engine (default ${NODE_IMAGE_ENV})",
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
        "bounded by memory; a test's next cluster starts during the last phase)",
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
    s = sub.add_parser(
        "lock",
        parents=[common],
        help="resolve hash-pinned Python locks (uv) and the Debian base locks (mmdebstrap)",
    )
    s.add_argument("--check", action="store_true", help="only verify the locks are up to date")
    s.add_argument(
        "--debian",
        action="store_true",
        help="only the Debian base locks (the Python locks stay as they are)",
    )
    s.add_argument(
        "--upgrade",
        nargs="?",
        const=UPGRADE_ALL,
        default="",
        metavar="NAME[,NAME...]",
        help="move these Python packages (and what they newly require) to their newest; "
        "alone, every package. Without it a lock keeps its pins wherever they still fit",
    )
    s.add_argument(
        "--upgrade-debian",
        default="",
        metavar="NAME[,NAME...]",
        help="move these Debian packages in the selected cells' Debian base locks (and "
        "what they newly need); every other locked package stays",
    )
    s.add_argument(
        "--security",
        action="store_true",
        help="move exactly what has a known fix: Python packages pip-audit names (where its "
        "data is reachable), and the Debian bases with pending security updates (re-locked)",
    )
    s = sub.add_parser("build", parents=[common], help="build head, worker, notebook images")
    s.add_argument(
        "--no-cache",
        action="store_true",
        help="rebuild base and images from scratch, ignoring build keys",
    )
    s = sub.add_parser(
        "test", parents=[common], help="start clusters from the images and check them"
    )
    _ready_timeout(s, timeouts.DEFAULT)
    _backend(s)
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
    _ready_timeout(s, timeouts.GRID)
    _backend(s)
    s.add_argument(
        "--no-reuse",
        action="store_true",
        help="run every pair, also a cell's notebook against its own cluster where the last "
        "`test` of the build directory proved it on the same images",
    )
    s = sub.add_parser(
        "probe",
        parents=[common],
        help="check a running cluster against this interpreter or a notebook image",
    )
    s.add_argument(
        "--address",
        required=True,
        help="ray://HOST:10001 (Ray Client), http://HOST:8265 (Jobs API) or HOST:6379 (GCS)",
    )
    s.add_argument("--image", help="run the client side in this image (host network)")
    s.add_argument(
        "--timeout",
        type=_positive,
        default=timeouts.PROBE_COMMAND,
        metavar="SECONDS",
        help=f"how long to wait for the cluster to answer (default {timeouts.PROBE_COMMAND:.0f})",
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
    s.add_argument(
        "--scans",
        action="append",
        default=[],
        metavar="DIR",
        help="scanner reports (Trivy or Grype JSON, one per image) the gate reads with "
        "`vulnerabilities:` in the matrix (default: scans/ beside each report; repeatable)",
    )
    s.add_argument("--dry-run", action="store_true", help="show the gate's decisions only")
    s = sub.add_parser(
        "manifests",
        parents=[common],
        help="KubeRay RayCluster and RayJob, Vertex AI image refs, pinned by digest",
    )
    s.add_argument("--images-lock", type=Path, help="default: build/images.lock.json")
    s.add_argument("--namespace", type=_namespace, help="metadata.namespace of what is rendered")
    s.add_argument(
        "--crd",
        type=Path,
        action="append",
        metavar="FILE",
        help="also validate against these KubeRay CRDs, e.g. your cluster's from `kubectl get "
        "crd rayclusters.ray.io rayjobs.ray.io rayservices.ray.io -o yaml` (repeatable)",
    )
    s.add_argument(
        "--policy-key",
        type=Path,
        metavar="PUB",
        help="also render deploy/policy/clusterimagepolicy.yaml admitting the pushed "
        "repositories only signed by this cosign public key, with a passed test report",
    )
    s.add_argument(
        "--policy-identity",
        metavar="REGEXP",
        help="the same for keyless signatures: the signing workflow's identity, e.g. "
        "^https://github.com/ORG/REPO/",
    )
    s = sub.add_parser("matrix", parents=[common], help="the selected cells as JSON")
    s.add_argument(
        "--github", action="store_true", help="as a GitHub Actions job matrix (cells=...)"
    )
    s = sub.add_parser(
        "clean", parents=[common], help="remove containers/networks left by crashed runs (by label)"
    )
    s.add_argument("--images", action="store_true", help="also remove built images and bases")
    s = sub.add_parser(
        "verify",
        help="a pushed image's tag still names the gate's digest, which carries a valid "
        "signature, SBOM, provenance and a passed test report of itself",
    )
    s.add_argument(
        "--images-lock",
        default="build/images.lock.json",
        help="the push's record (default: %(default)s)",
    )
    s.add_argument("--key", help="the cosign public key (or KMS URI) the push signed with")
    s.add_argument("--certificate-identity", help="keyless: the signer's identity (regexp)")
    s.add_argument(
        "--certificate-oidc-issuer",
        default="https://token.actions.githubusercontent.com",
        help="keyless: the identity's issuer (default: %(default)s)",
    )
    s.add_argument(
        "refs",
        nargs="*",
        metavar="REF",
        help="REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:... (default: every image of the "
        "images lock, whose tags must still name the pushed digests)",
    )
    s = sub.add_parser(
        "catalog",
        help="the image catalog for the images' users: an HTML and a Markdown page of every "
        "pushed tag (digest, Python, Ray, key packages, checks), which notebook goes with "
        "which cluster, and the lines to copy",
    )
    s.add_argument(
        "--images-lock",
        default="build/images.lock.json",
        help="the push's record (default: %(default)s); its pushed-sboms/ beside it",
    )
    s.add_argument(
        "--report",
        action="append",
        default=[],
        metavar="FILE",
        help="a test report whose checks the catalog lists (default: report.json beside "
        "the images lock, if there is one)",
    )
    s.add_argument("--out", help="where to write index.html and catalog.md (default: "
                   "catalog/ beside the images lock)")  # fmt: skip
    s = sub.add_parser(
        "sbom", help="which pushed images hold a package, and at which version (their SBOMs)"
    )
    q = s.add_subparsers(dest="sbom_command", required=True, metavar="ACTION")
    s = q.add_parser("query", help="the pushed images (now and earlier) holding a package")
    s.add_argument("name", metavar="NAME", help="a Python or Debian package name, e.g. openssl")
    s.add_argument(
        "--images-lock",
        default="build/images.lock.json",
        help="the push's record (default: %(default)s)",
    )
    s = sub.add_parser(
        "diff",
        help="what changed between two lock trees (locks/) or two images.lock.json: "
        "packages moved per image, and whether a Python micro or Ray version changed",
    )
    s.add_argument("old", metavar="OLD", help="the lock tree or images.lock.json before")
    s.add_argument("new", metavar="NEW", help="the one after")
    s.add_argument(
        "--patch",
        action="store_true",
        help="exit 1 if any image's Python micro or Ray version changed (a patch must not)",
    )
    return p


def entry() -> NoReturn:
    """`python -m harness` and the `ray-harness` script: main's exit code. Ctrl-C before
    main has set its own handler exits 130 without a traceback (nothing was started)."""
    try:
        code = main()
    except KeyboardInterrupt:
        print("\ninterrupted (exit 130)", file=sys.stderr)
        code = 130
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    run_id = os.environ.get("HARNESS_RUN_ID") or new_run_id()
    # Every throwaway container (Engine.run_once) is labelled from here, so that an
    # interrupt's cleanup below finds it by this run's label.
    os.environ["HARNESS_RUN_ID"] = run_id
    signal.signal(signal.SIGTERM, interrupts.handle)
    signal.signal(signal.SIGINT, interrupts.handle)
    try:
        if args.command not in ("plan", "matrix", "clean", "diff", "verify", "sbom", "catalog"):
            runs.hold_run(run_id)  # alive until this process ends: `clean` leaves it alone
        if args.command in WRITES_BUILD_DIR:
            runs.own_build_dir(Paths.for_matrix(args.matrix, args.build_dir).build, args.command)
        return command(args.command)(args, run_id)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `python -m harness plan | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except interrupts.Interrupted as exc:
        _clean_up(exc, run_id)


# How long the cleanup waits for calls making engine objects (each bounded by the SDK's
# timeout; they take milliseconds) before it looks for what the run made.
SETTLE_SECONDS = 30.0


def _clean_up(exc: interrupts.Interrupted, run_id: str) -> NoReturn:
    """After SIGINT or SIGTERM: stop every child, remove what this run created, exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(f"\n{exc}: removing what run {run_id} created", file=sys.stderr)
    stop_all()  # no child and no engine object starts from here on
    if not interrupts.settle(timeout=SETTLE_SECONDS):
        print(
            "an engine call still ran; `python -m harness clean` removes the rest", file=sys.stderr
        )
    kube = sys.modules.get("harness.backends.kube")  # imported by a run that used it
    try:
        if kube is not None:
            kube.close_all()
    except HarnessError as cleanup_error:
        print(f"cleanup failed: {cleanup_error}", file=sys.stderr)
    try:
        counts = Engine(cleanup=True).remove_labelled({labels.RUN: run_id}, images=True)
        print(f"removed {counts}", file=sys.stderr)
    except HarnessError as cleanup_error:
        print(f"cleanup failed: {cleanup_error}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exc.code)  # do not wait for worker threads still unwinding
