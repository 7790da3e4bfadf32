"""Run liveness, the build-directory lock and which tags `clean --images` may remove."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness import runs
from harness.commands import clean
from harness.errors import HarnessError
from tests.conftest import ROOT


@pytest.fixture(autouse=True)
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path / "runs"))
    return tmp_path / "runs"


def hold_in_child(code: str) -> subprocess.Popen[str]:
    """A separate process that takes a lock, says so, and waits to be killed."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"{code}\nimport sys, time\nprint('held', flush=True)\ntime.sleep(600)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_run_is_alive_while_its_process_lives_even_after_sigkill() -> None:
    assert not runs.alive("r1")
    proc = hold_in_child("from harness import runs; runs.hold_run('r1')")
    try:
        assert runs.alive("r1")
        assert not runs.alive("r2")
    finally:
        proc.kill()
        proc.wait()
    assert not runs.alive("r1")  # SIGKILL: the kernel dropped the lock


def test_run_ids_cannot_escape_the_runs_dir() -> None:
    assert not runs.alive("../etc/passwd") and not runs.alive("")


def test_a_build_dir_has_one_owner(tmp_path: Path) -> None:
    build = tmp_path / "build"
    proc = hold_in_child(
        "from pathlib import Path; from harness import runs\n"
        f"runs.own_build_dir(Path({str(build)!r}), 'test')"
    )
    try:
        with pytest.raises(HarnessError, match=r"is in use by pid \d+ \(`test`") as exc:
            runs.own_build_dir(build, "build")
        assert "--build-dir" in str(exc.value)
    finally:
        proc.kill()
        proc.wait()
    runs.own_build_dir(build, "build")  # free again


@pytest.mark.parametrize(
    ("tags", "labels", "ours"),
    [
        (
            ["localhost/raycompat/ray-head:2.60.0-py3.11.2-cpu", "me/head:prod"],
            {
                "io.raycompat.managed": "image",
                "io.raycompat.role": "head",
                "org.opencontainers.image.version": "2.60.0-py3.11.2-cpu",
            },
            ["localhost/raycompat/ray-head:2.60.0-py3.11.2-cpu"],
        ),
        (  # a user's image FROM ours: inherits every label, has its own name
            ["acme/notebook:latest"],
            {
                "io.raycompat.managed": "image",
                "io.raycompat.role": "notebook",
                "org.opencontainers.image.version": "2.60.0-py3.11.2-cpu",
            },
            [],
        ),
        (
            ["localhost/raycompat/base:debian-bookworm-py3.11.2"],
            {
                "io.raycompat.managed": "base",
                "io.raycompat.base.source": "debian:bookworm",
                "io.raycompat.python.version": "3.11.2",
            },
            ["localhost/raycompat/base:debian-bookworm-py3.11.2"],
        ),
        (  # a user's image FROM our base
            ["acme/tools:1"],
            {
                "io.raycompat.managed": "base",
                "io.raycompat.base.source": "debian:bookworm",
                "io.raycompat.python.version": "3.11.2",
            },
            [],
        ),
    ],
)
def test_clean_images_removes_only_the_harness_names(
    tags: list[str], labels: dict[str, str], ours: list[str]
) -> None:
    assert clean.harness_tags(tags, labels) == ours
