"""`test` as a user who is not root but in the docker group, on a machine where root ran
the harness before (root's private runs dir exists): it must run the cell to the end.
Root only creates the user; the harness then needs no privilege of its own (the Kubeflow
notebook's 1000:100 home is a volume a throwaway container prepares, not a chown)."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import sysconfig
import tempfile
import uuid
from pathlib import Path

import pytest

from harness import runs
from tests.conftest import ROOT
from tests.e2e.cli import harness

pytestmark = pytest.mark.e2e
USER = "raycompat-e2e"
ONLY = ["--only", "ray=2.60.0,python=3.11.2,variant=cpu"]


def _system_python() -> str:
    """An interpreter every user may run with this environment's packages: Debian's,
    of the same minor (the packages' compiled parts match it)."""
    import sys

    for candidate in ("/usr/bin/python3", sys.executable):
        out = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if out.stdout.strip() == str(sys.version_info[:2]):
            return candidate
    raise AssertionError(f"no interpreter of Python {sys.version_info[:2]} for other users")


@pytest.fixture(scope="module")
def user() -> str:
    if os.getuid() != 0:
        pytest.fail("this test creates a user: run the e2e tests as root (as .ci/run does)")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", USER], check=True)
    subprocess.run(["usermod", "-a", "-G", "docker", USER], check=True)
    return USER


def test_a_docker_group_user_runs_test_where_root_ran_before(user: str) -> None:
    # root was here first: a build as root (its own build dir) and root's runs dir
    built = harness("build", *ONLY, "--build-dir", str(ROOT / "build" / "e2e-nonroot-root"))
    assert built.returncode == 0, built.stderr[-2000:]
    runs.hold_run("root-was-here")  # root's runs dir exists, private to root
    home = Path(tempfile.mkdtemp(prefix="raycompat-nonroot-"))
    home.chmod(0o755)
    uid, gid = pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid
    os.chown(home, uid, gid)
    build = home / "build"
    try:
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(home),
            "PYTHONPATH": f"{ROOT}:{sysconfig.get_paths()['purelib']}",
            "HARNESS_RUN_ID": "e2enr" + uuid.uuid4().hex[:8],
            "TESTCONTAINERS_RYUK_DISABLED": "true",
        }
        reach = subprocess.run(
            [
                "test",
                "-r",
                f"{ROOT}/harness/__init__.py",
                "-a",
                "-r",
                sysconfig.get_paths()["purelib"],
            ],
            user=uid,
            group=gid,
        )
        if reach.returncode != 0:  # e.g. a checkout under /root: nothing to run as the user
            pytest.skip(f"{ROOT} or this environment's packages are not readable by {user}")
        r = subprocess.run(
            [_system_python(), "-m", "harness", "test", *ONLY, "--build-dir", str(build)],
            cwd=ROOT,
            user=uid,
            group=gid,
            extra_groups=[grp.getgrnam("docker").gr_gid],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert r.returncode == 0, r.stderr[-4000:]
        report = json.loads((build / "report.json").read_text())
        [cell] = [c for c in report["cells"] if c["id"] == "ray2.60.0-py3.11.2-cpu"]
        assert cell["status"] == "passed"
        checks = {c["name"]: c["status"] for c in cell["checks"]}
        assert checks["kubeflow:contract"] == "passed"  # the home made without root
        own = Path(tempfile.gettempdir()) / f"raycompat-runs-{uid}"
        assert own.stat().st_uid == uid and own.stat().st_mode & 0o777 == 0o700
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(Path(tempfile.gettempdir()) / f"raycompat-runs-{uid}", ignore_errors=True)
