"""The CLI as a user meets it: exit codes, one-line errors, no tracebacks, no Docker touched."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.unit.test_matrix import BAD


def harness(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_help_lists_the_subcommands() -> None:
    r = harness("--help")
    assert r.returncode == 0
    for sub in ("plan", "lock", "build", "test", "clean"):
        assert sub in r.stdout


def test_every_command_has_its_module_and_the_parser_knows_it() -> None:
    """The CLI imports a command's module only when it runs: each name must resolve."""
    from harness import cli

    helped = cli._parser().format_help().split("COMMAND\n", 1)[1]
    assert set(re.findall(r"^    ([a-z-]+)", helped, re.MULTILINE)) == set(cli.COMMANDS)
    for name in cli.COMMANDS:
        assert callable(cli.command(name)), name


def test_build_does_not_import_what_only_other_commands_use() -> None:
    code = (
        "import sys; from harness import cli; cli.command('build'); "
        "print(' '.join(m for m in ('harness.grid', 'harness.backends.kube', "
        "'harness.registry_api', 'harness.signing') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""


def test_plan_shows_cells_and_tags() -> None:
    r = harness("plan")
    assert r.returncode == 0, r.stderr
    assert "ray2.60.0-py3.11.2-cpu" in r.stdout
    assert "localhost/raycompat/ray-head:2.60.0-py3.11.2-cpu" in r.stdout


@pytest.mark.parametrize("command", ["plan", "build", "test", "lock"])
def test_bad_matrix_exits_2_with_one_line_and_no_traceback(
    write_matrix: Callable[[str], Path], command: str
) -> None:
    path = write_matrix('ray: ["2.60"]\npython: ["3.11.2"]\n')
    r = harness(command, "--matrix", str(path))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{path}:1: ray.0:" in lines[0]


def test_bad_selector_exits_2() -> None:
    r = harness("plan", "--only", "pyton=3.11.*")
    assert r.returncode == 2 and "did you mean 'python'" in r.stderr


def test_unreachable_engine_exits_2_naming_the_fix(tmp_path: Path) -> None:
    r = harness("build", env={"DOCKER_HOST": f"unix://{tmp_path}/no.sock"})
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert "not reachable" in r.stderr and "setup-engine.sh" in r.stderr


@pytest.mark.network  # asks PyPI
def test_stale_lock_is_refused_before_docker(tmp_path: Path) -> None:
    (tmp_path / "matrix.yaml").write_text(
        (ROOT / "matrix.yaml")
        .read_text()
        .replace("[jupyterlab, nbclient, ipykernel]", "[jupyterlab]")
    )
    subprocess.run(["cp", "-r", str(ROOT / "locks"), str(tmp_path / "locks")], check=True)
    r = harness(
        "build",
        "--matrix",
        str(tmp_path / "matrix.yaml"),
        env={"DOCKER_HOST": f"unix://{tmp_path}/no.sock"},
    )
    assert r.returncode == 2
    assert "stale lock" in r.stderr and "nox -s lock" in r.stderr


@pytest.mark.parametrize(("name", "text", "key", "fragment"), BAD, ids=[b[0] for b in BAD])
def test_every_bad_matrix_exits_2_before_docker(
    tmp_path: Path, name: str, text: str, key: str, fragment: str
) -> None:
    """The catalogue of bad files, through the CLI: exit 2, one line, no traceback, and no
    engine needed (DOCKER_HOST points nowhere, so touching Docker would fail differently)."""
    path = tmp_path / "matrix.yaml"
    path.write_text(text)
    r = harness("build", "--matrix", str(path), env={"DOCKER_HOST": f"unix://{tmp_path}/no.sock"})
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    [line] = r.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}") and fragment in line


AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to become a user without access to a socket",
)
def test_no_permission_on_the_socket_exits_2_naming_the_fix(tmp_path: Path) -> None:
    """A user outside the docker group: the socket refuses the connection (EACCES)."""
    sock_dir = tmp_path / "private"
    sock_dir.mkdir(mode=0o700)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_dir / "docker.sock"))
    server.listen()
    runs = Path(tempfile.mkdtemp(prefix="runs-", dir="/tmp"))
    runs.chmod(0o777)
    try:
        r = subprocess.run(
            [*AS_NOBODY, sys.executable, "-m", "harness", "build", "--build-dir", str(runs)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env={
                **os.environ,
                "DOCKER_HOST": f"unix://{sock_dir}/docker.sock",
                "HARNESS_RUNS_DIR": str(runs / "runs"),  # made by the user, private
                "HOME": str(runs),
            },
        )
    finally:
        server.close()
        shutil.rmtree(runs, ignore_errors=True)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    [line] = r.stderr.strip().splitlines()
    assert "no permission to use the Docker socket" in line and "docker` group" in line


NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (("build", "--jobs", "0"), {}, "--jobs: 0 must be from 1 to 64"),
        (("test", "--jobs", "-3"), {}, "--jobs: -3 must be from 1 to 64"),
        (("build", "--jobs", "two"), {}, "'two' is not a whole number"),
        (("test", "--ready-timeout", "-1"), {}, "must be more than 0"),
        (("manifests", "--namespace", "Ray_NS"), {}, "not a Kubernetes namespace name"),
        (("build",), {"HARNESS_DOCKER": "/nonexistent/docker"}, "HARNESS_DOCKER=/nonexistent"),
        (("plan",), {"PIP_INDEX_URL": "pypi.example/simple"}, "PIP_INDEX_URL=pypi.example"),
        (("plan",), {"UV_INDEX_URL": "ftp://x/simple"}, "UV_INDEX_URL=ftp://x/simple"),
        (("plan",), {"HARNESS_DEBIAN_SNAPSHOT": "sometimes"}, "HARNESS_DEBIAN_SNAPSHOT"),
        (
            ("matrix", "--github"),
            {"GITHUB_OUTPUT": "/nonexistent/dir/out"},
            "GITHUB_OUTPUT=/nonexistent/dir/out: cannot append",
        ),
        (("probe", "--address", "not an address"), {}, "use ray://HOST:PORT"),
        (("build", "--build-dir", str(ROOT / "README.md")), {}, "README.md cannot be used as a"),
        (("test", "--build-dir", str(ROOT / "README.md" / "x")), {}, "(Not a directory)"),
        (("build",), {"HARNESS_WHEELHOUSE": str(ROOT / "README.md")}, "HARNESS_WHEELHOUSE="),
        (("probe", "--address", "ray://10.0.0.1:99999"), {}, "PORT 1-65535"),
        (("frobnicate",), {}, "invalid choice: 'frobnicate'"),
        (("catalog", "--images-lock", "/nonexistent/images.lock.json"), {}, "no images lock"),
        (("catalog", "--images-lock", str(ROOT / "README.md")), {}, "README.md: not"),
    ],
)
def test_bad_flags_and_environment_exit_2_in_one_line(
    args: tuple[str, ...], env: dict[str, str], fragment: str
) -> None:
    r = harness(*args, env={**NO_DOCKER, **env})
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    [line] = r.stderr.strip().splitlines()
    assert fragment in line


def test_probe_without_ray_here_says_to_use_an_image() -> None:
    r = harness("probe", "--address", "ray://127.0.0.1:9", env={**NO_DOCKER, "PYTHONPATH": ""})
    if r.returncode == 2 and "Ray is not installed" in r.stderr:
        [line] = r.stderr.strip().splitlines()
        assert "--image" in line
    else:  # an interpreter with Ray: the address is refused at once, with what to check
        assert r.returncode == 2 and "cannot reach ray://127.0.0.1:9" in r.stderr


def test_probe_takes_rays_token_from_the_environment_as_ray_reads_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`probe --image` hands the container the token Ray would use here (never as env)."""
    from harness.commands.probe import _token
    from harness.errors import HarnessError

    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert _token() == ""  # no token auth: nothing handed over
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    with pytest.raises(HarnessError, match="RAY_AUTH_MODE=token but no token"):
        _token()
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-home\n")
    assert _token() == "from-home"  # Ray's default path
    (tmp_path / "t").write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "t"))
    assert _token() == "from-path"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert _token() == "from-env"


def _interrupted_at(patch: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m harness ARGS` in a process where `patch` (Python source) first arranges a
    SIGINT at a chosen point."""
    script = "import os, runpy, signal, sys, time\n" + patch
    script += f"sys.argv = ['harness', *{list(args)!r}]\n"
    script += "runpy.run_module('harness', run_name='__main__')\n"
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_an_interrupt_inside_a_broad_except_still_stops_the_run(tmp_path: Path) -> None:
    """SIGINT while code under `except Exception` runs (the disk plan asking the engine's
    data root; the Docker SDK asking its API version) is not swallowed: exit 130, the
    run's cleanup, no report written after it."""
    patch = (
        "import harness.engine\n"
        "def info(self):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(5)\n"
        "harness.engine.Engine.info = info\n"
        "harness.engine.Engine.ping = lambda self: 'ok'\n"
        "harness.engine.Engine.look_for_cli = lambda self: None\n"
    )
    r = _interrupted_at(patch, "build", "--build-dir", str(tmp_path / "build"))
    assert r.returncode == 130, r.stderr
    assert "interrupted (exit 130): removing what run" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "build" / "report.json").exists()


def test_an_interrupt_before_the_cli_handles_signals_exits_130_quietly() -> None:
    patch = (
        "import harness.cli\n"
        "def main():\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(5)\n"
        "harness.cli.main = main\n"
    )
    r = _interrupted_at(patch, "plan")
    assert r.returncode == 130, r.stderr
    assert r.stderr.strip() == "interrupted (exit 130)"
