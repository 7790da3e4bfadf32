"""Run liveness, the build-directory lock and which tags `clean --images` may remove."""

from __future__ import annotations

import os
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


def test_the_runs_dir_is_made_private(runs_dir: Path) -> None:
    runs.hold_run("r-private")
    assert runs_dir.stat().st_mode & 0o777 == 0o700
    assert (runs_dir / "r-private.lock").stat().st_mode & 0o777 == 0o600
    assert runs.alive("r-private")


def test_a_runs_dir_others_can_write_is_refused(runs_dir: Path) -> None:
    runs_dir.mkdir(mode=0o777)
    runs_dir.chmod(0o777)
    with pytest.raises(HarnessError, match=r"is open to others \(mode 777\); it must be 700"):
        runs.hold_run("r1")


def test_a_runs_dir_that_is_a_symlink_is_refused(runs_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    runs_dir.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(HarnessError, match="is not a directory"):
        runs.hold_run("r1")


def test_a_lock_file_planted_as_a_symlink_is_not_followed(runs_dir: Path, tmp_path: Path) -> None:
    runs_dir.mkdir(mode=0o700)
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    (runs_dir / "r1.lock").symlink_to(target)
    with pytest.raises(HarnessError, match=r"r1\.lock: it is a symlink"):
        runs.hold_run("r1")
    assert not runs.alive("r1")  # a symlink is no lock of a run
    assert target.read_text() == "keep me\n"


def test_the_default_runs_dir_is_per_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(runs.RUNS_ENV)
    assert runs.runs_dir().name == f"raycompat-runs-{os.getuid()}"


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
def test_another_users_private_run_is_alive_to_this_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user who cannot read root's runs dir must not take root's live run for dead (and
    so `clean` its containers); root sees every user's runs."""
    import shutil
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="raycompat-test-tmp-"))  # like /tmp: others enter
    shared.chmod(0o755)
    monkeypatch.delenv(runs.RUNS_ENV)
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(shared))
    at = f"import tempfile; tempfile.tempdir = {str(shared)!r}\nfrom harness import runs\n"
    holder = hold_in_child(at + "runs.hold_run('root-run')")
    try:
        assert runs.alive("root-run")
        assert (shared / "raycompat-runs-0").stat().st_mode & 0o777 == 0o700
        code = at + "import os; os.setuid(65534)\nprint(runs.alive('root-run'), runs.alive('x'))"
        seen = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert seen.stdout.split() == ["True", "True"], seen.stderr  # cannot tell: alive
    finally:
        holder.kill()
        holder.wait()
    try:
        assert not runs.alive("root-run")  # root reads it: the holder is gone
    finally:
        shutil.rmtree(shared)
