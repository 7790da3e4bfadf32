"""The Debian lock's logic on recorded dpkg and apt files (the real builds are e2e)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import base, debian_lock, matrix
from harness.debian_lock import Deb
from harness.errors import HarnessError
from tests.conftest import ROOT

STATUS = """Package: wget
Status: install ok installed
Architecture: amd64
Version: 1.21.3-1+deb12u1
Description: retrieves files from the web
 a continuation line: Version: 9.9

Package: adduser
Status: install ok installed
Architecture: all
Version: 3.134

Package: gone
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
"""
PACKAGES = """Package: wget
Version: 1.21.3-1+deb12u1
Architecture: amd64
SHA256: {w}

Package: wget
Version: 1.21.3-1+b2
Architecture: amd64
SHA256: {old}

Package: adduser
Version: 3.134
Architecture: all
SHA256: {a}
""".format(w="1" * 64, old="2" * 64, a="3" * 64)


def test_the_installed_set_with_each_debs_hash() -> None:
    got = debian_lock.debs(STATUS, [PACKAGES], "amd64")
    assert got == [
        Deb("adduser", "3.134", "all", "3" * 64),
        Deb("wget", "1.21.3-1+deb12u1", "amd64", "1" * 64),
    ]


def test_a_package_no_index_lists_is_refused() -> None:
    with pytest.raises(HarnessError, match=r"wget 1\.21\.3-1\+deb12u1 amd64"):
        debian_lock.debs(STATUS, [PACKAGES.split("\n\n", 1)[1]], "amd64")


def test_a_lock_round_trips_and_refuses_a_hand_edited_line(tmp_path: Path) -> None:
    got = debian_lock.debs(STATUS, [PACKAGES], "amd64")
    path = tmp_path / "debian-bookworm-py3.11.2.txt"
    path.write_text(debian_lock.render(got, "debian:bookworm", "a" * 64, "http://m/debian"))
    assert debian_lock.read(path) == ("a" * 64, got)
    assert debian_lock.check(path, "debian:bookworm", "a" * 64) == got
    with pytest.raises(HarnessError, match="stale Debian lock"):
        debian_lock.check(path, "debian:bookworm", "b" * 64)
    path.write_text(path.read_text() + "wget 1.0 amd64\n")
    with pytest.raises(HarnessError, match=r":7: not `package version architecture sha256`"):
        debian_lock.read(path)
    with pytest.raises(HarnessError, match=r"missing Debian lock.*run `nox -s lock`"):
        debian_lock.check(tmp_path / "absent.txt", "debian:bookworm", "a" * 64)


def test_what_moved_is_named_package_by_package() -> None:
    locked = [
        Deb("wget", "1.21.3-1+b2", "amd64", "2" * 64),
        Deb("adduser", "3.134", "all", "3" * 64),
    ]
    got = [
        Deb("wget", "1.21.3-1+deb12u1", "amd64", "1" * 64),
        Deb("adduser", "3.134", "all", "4" * 64),
        Deb("extra", "1", "amd64", "5" * 64),
    ]
    assert debian_lock.differences(locked, got) == [
        f"adduser 3.134: the mirror's .deb is sha256 {'4' * 16}..., locked {'3' * 16}...",
        "extra 1 (amd64): installed, not in the lock",
        "wget: locked 1.21.3-1+b2, the mirror gave 1.21.3-1+deb12u1",
    ]
    assert debian_lock.differences(locked, locked) == []
    error = str(debian_lock.moved(Path("locks/bases/x.txt"), "http://m/debian", ["wget: ..."]))
    assert "re-lock (`nox -s lock`" in error and "snapshot" in error and "wget" in error


def test_apt_is_pinned_to_every_locked_version() -> None:
    prefs = debian_lock.preferences(
        [Deb("wget", "1.21.3-1+b2", "amd64", "2" * 64), Deb("adduser", "3.134", "all", "3" * 64)]
    )
    assert "Package: wget:amd64\nPin: version 1.21.3-1+b2\nPin-Priority: 1001\n" in prefs
    assert "Package: adduser\nPin: version 3.134\nPin-Priority: 1001\n" in prefs


@pytest.mark.parametrize(
    ("mirror", "security", "snapshot"),
    [
        ("http://deb.debian.org/debian", "http://deb.debian.org/debian-security", False),
        (
            "https://snapshot.debian.org/archive/debian/20261201T000000Z",
            "https://snapshot.debian.org/archive/debian-security/20261201T000000Z",
            True,
        ),
        ("http://mirror.example/ubuntu", None, False),
    ],
)
def test_the_security_pocket_beside_a_mirror(
    mirror: str, security: str | None, snapshot: bool
) -> None:
    assert debian_lock.security_mirror(mirror) == security
    assert debian_lock.is_snapshot(mirror) == snapshot


def test_a_snapshot_mirror_is_read_past_valid_until(write_matrix: object) -> None:
    path = ROOT / "matrix.yaml"
    m = matrix.load(path, env={})
    snap = matrix.load(path, env={})
    object.__setattr__(
        snap, "debian_mirror", "https://snapshot.debian.org/archive/debian/20261201T000000Z"
    )
    assert base._apt_options(m) == []
    assert base._apt_options(snap) == ['--aptopt=Acquire::Check-Valid-Until "false"']
    assert base._sources(snap, "bookworm")[1].startswith(
        "deb https://snapshot.debian.org/archive/debian-security/20261201T000000Z bookworm-security"
    )


def test_every_committed_base_lock_is_current() -> None:
    """The committed Debian locks match the recipes of the committed matrices."""
    for name in ("matrix.yaml", "matrix-arm64.yaml"):
        m = matrix.load(ROOT / name, env={})
        for cell in m.cells:
            base.check_lock(m, cell)
