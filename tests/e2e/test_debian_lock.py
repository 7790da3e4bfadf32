"""The Debian half of a base, pinned to the byte, against the real mirror and mmdebstrap:
a lock the mirror no longer serves stops the build with exit 2, names the package and the
two ways out, and changes no image."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from harness import base, debian_lock, matrix
from harness.engine import Engine
from tests.e2e.cli import harness
from tests.e2e.test_failures import copy_project

pytestmark = pytest.mark.e2e
ONLY = ["--only", "ray=2.60.0,python=3.11.2,variant=cpu"]


def test_a_mirror_that_moved_a_locked_package_stops_the_build(tmp_path: Path) -> None:
    prefix = f"localhost/raycompat-moved-{uuid.uuid4().hex[:6]}"
    path = copy_project(tmp_path / "project", prefix)
    m = matrix.load(path)
    lock = base.lock_file(m, "bookworm", "3.11.2")
    text = lock.read_text()
    # the mirror "moved": the locked wget is a version it does not have (any more)
    moved, n = re.subn(r"^wget (\S+) amd64", "wget 1.21.3-1+b1 amd64", text, flags=re.M)
    assert n == 1
    lock.write_text(moved)
    build_dir = tmp_path / "build"
    r = harness("build", "--matrix", str(path), *ONLY, "--build-dir", str(build_dir))
    assert r.returncode == 2, r.stderr[-3000:]
    line = r.stderr.strip().splitlines()[-1]
    assert "Traceback" not in r.stderr
    assert f"no longer serves the Debian packages locked in {lock}" in line
    assert "wget: locked 1.21.3-1+b1, the mirror gave" in line
    assert "re-lock (`nox -s lock`" in line and "debian_mirror` at a snapshot" in line
    # nothing was tagged under the copy's prefix, and no scratch file stayed behind
    engine = Engine()
    assert engine.inspect("image", f"{prefix}/base:debian-bookworm-py3.11.2") is None
    scratch = build_dir / "rootfs"
    assert not scratch.exists() or list(scratch.iterdir()) == []


def test_a_base_records_its_lock_and_installs_exactly_it() -> None:
    """The default base carries its lock's digest, and its dpkg status is the lock."""
    m = matrix.load(Path(__file__).resolve().parents[2] / "matrix.yaml")
    cell = next(c for c in m.cells if c.id == "ray2.60.0-py3.11.2-cpu")
    built = harness("build", *ONLY)
    assert built.returncode == 0, built.stderr[-2000:]
    lock = base.lock_file(m, "bookworm", "3.11.2")
    engine = Engine()
    ref = f"{m.prefix}/base:debian-bookworm-py3.11.2"
    found = engine.image_labels(ref) or {}
    assert found["io.raycompat.base.lock.sha256"] == debian_lock.digest(lock)
    head = engine.image_labels(cell.tag(m.prefix, "head")) or {}
    assert head["io.raycompat.base.lock.sha256"] == debian_lock.digest(lock)
    status = engine.run_once(ref, ["cat", "/var/lib/dpkg/status"], entrypoint=[], timeout=60)
    installed = debian_lock.installed(status.stdout)
    locked = {(d.name, d.arch): d.version for d in debian_lock.read(lock)[1]}
    assert installed == locked
    prefs = engine.run_once(ref, ["ls", "/etc/apt/preferences.d"], entrypoint=[], timeout=60)
    assert debian_lock.PREFS_NAME not in prefs.stdout  # the pins did not stay in the rootfs


def test_freshness_lists_what_apt_lists_for_the_same_packages(tmp_path: Path) -> None:
    """An image one security update behind (libssl3 from bookworm's main pocket, which the
    security pocket has fixed since): freshness:os names it, exactly as apt itself does
    for a dpkg status holding the same packages."""
    import subprocess

    from harness import freshness

    m = matrix.load(Path(__file__).resolve().parents[2] / "matrix.yaml")
    locked = debian_lock.read(base.lock_file(m, "bookworm", "3.11.2"))[1]
    behind = [
        d if d.name != "libssl3" else debian_lock.Deb(d.name, "3.0.20-1~deb12u2", d.arch, d.sha256)
        for d in locked
    ]
    ours = freshness.upgradable(m, "bookworm", "amd64", behind, tmp_path)
    pending = [(u.name, u.locked, u.fixed) for u in ours if u.security]
    assert ("libssl3", "3.0.20-1~deb12u2", "3.0.22-1~deb12u2") in pending
    root = tmp_path / "bookworm-amd64"
    apt = subprocess.run(
        ["apt", *freshness.apt_options(m, root, "amd64"), "list", "--upgradable"],
        capture_output=True,
        text=True,
        check=True,
    )
    theirs = [
        line.split()[0].split("/")[0]
        for line in apt.stdout.splitlines()
        if "-security" in line.split(" ")[0]
        and "[upgradable from:" in line
        and line.split()[1] != line.rsplit(" ", 1)[-1].rstrip("]")
    ]
    assert sorted(u.name for u in ours if u.security) == sorted(theirs)


def test_upgrade_debian_moves_only_the_named_package(tmp_path: Path) -> None:
    """`lock --upgrade-debian tar`: tar moves (here from a version the mirror never had to
    the one it serves) and every other locked package stays; a kept package the mirror no
    longer has stops it (exit 2, naming it) and leaves the lock as it was."""
    path = copy_project(tmp_path / "project", f"localhost/raycompat-up-{uuid.uuid4().hex[:6]}")
    m = matrix.load(path)
    lock = base.lock_file(m, "bookworm", "3.11.2")
    real = debian_lock.by_name(debian_lock.read(lock)[1])
    old_tar = real["tar"].version + "~old"
    text = re.sub(r"^tar \S+ ", f"tar {old_tar} ", lock.read_text(), flags=re.M)
    gone = re.sub(r"^wget \S+ ", "wget 1.21.3-1+b1 ", text, flags=re.M)
    lock.write_text(gone)
    args = ["lock", "--matrix", str(path), *ONLY, "--build-dir", str(tmp_path / "build")]
    r = harness(*args, "--upgrade-debian", "tar")
    assert r.returncode == 2, r.stderr[-2000:]
    assert "wget 1.21.3-1+b1 -> " in r.stderr and "Traceback" not in r.stderr
    assert lock.read_text() == gone
    lock.write_text(text)
    r = harness(*args, "--upgrade-debian", "tar")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"tar {old_tar} -> {real['tar'].version}" in r.stderr
    after = debian_lock.by_name(debian_lock.read(lock)[1])
    assert after == real  # tar moved back to the mirror's; nothing else moved
