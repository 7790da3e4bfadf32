"""`freshness:os` on recorded `apt list --upgradable` answers (apt against the real mirror
is in tests/e2e/test_debian_lock.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import children, freshness, matrix
from harness.debian_lock import Deb
from harness.matrix import BaseSpec, Cell, Variant
from tests.conftest import ROOT

CURRENT = """Listing...
wget/oldstable 1.21.3-1+deb12u1 amd64 [upgradable from: 1.21.3-1+deb12u1]
libssl3/oldstable-security 3.0.22-1~deb12u2 amd64 [upgradable from: 3.0.22-1~deb12u2]
"""
BEHIND = """WARNING: apt does not have a stable CLI interface. Use with caution in scripts.

Listing...
libssl3/oldstable-security 3.0.22-1~deb12u2 amd64 [upgradable from: 3.0.20-1~deb12u2]
tzdata/oldstable-updates 2026g-0+deb12u1 all [upgradable from: 2026f-0+deb12u1]
libgnutls30/oldstable,oldstable-security 3.7.9-2+deb12u8 amd64 [upgradable from: 3.7.9-2+deb12u7]
"""


def test_an_image_whose_lock_is_current_has_nothing_pending() -> None:
    assert freshness.parse(CURRENT) == []  # the same version string is no update


@pytest.mark.parametrize("listing", ["", "E: could not open lock file", "\n\n"])
def test_output_that_is_not_apts_listing_is_no_evidence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listing: str
) -> None:
    with pytest.raises(ValueError, match="not apt's listing"):
        freshness.parse(listing)
    m = matrix.load(ROOT / "matrix.yaml", env={})
    cell = next(c for c in m.cells if c.id == "ray2.60.0-py3.11.2-cpu")
    monkeypatch.setattr(children, "bounded", lambda cmd, **k: (0, listing, ""))
    check = freshness.check(m, cell, tmp_path)
    assert check.status == "skipped" and "not apt's listing" in check.detail


def test_pending_security_updates_are_told_from_other_updates() -> None:
    updates = freshness.parse(BEHIND)
    assert [(u.name, u.locked, u.fixed, u.security) for u in updates] == [
        ("libgnutls30", "3.7.9-2+deb12u7", "3.7.9-2+deb12u8", True),
        ("libssl3", "3.0.20-1~deb12u2", "3.0.22-1~deb12u2", True),
        ("tzdata", "2026f-0+deb12u1", "2026g-0+deb12u1", False),
    ]


@pytest.mark.parametrize(
    ("listing", "status", "pending"), [(CURRENT, "passed", 0), (BEHIND, "warning", 2)]
)
def test_the_check_on_a_recorded_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listing: str, status: str, pending: int
) -> None:
    m = matrix.load(ROOT / "matrix.yaml", env={})
    cell = next(c for c in m.cells if c.id == "ray2.60.0-py3.11.2-cpu")
    monkeypatch.setattr(freshness, "upgradable", lambda *a, **k: freshness.parse(listing))
    check = freshness.check(m, cell, tmp_path)
    assert check.status == status, check.detail
    assert len(check.data["pending_security"]) == pending
    if pending:
        assert "libssl3 3.0.20-1~deb12u2 -> 3.0.22-1~deb12u2" in check.detail
        assert "tzdata" not in check.detail  # not a security update


def test_apt_reads_nothing_of_the_hosts_own_configuration(tmp_path: Path) -> None:
    m = matrix.load(ROOT / "matrix.yaml", env={})
    opts = dict(o.split("=", 1) for o in freshness.apt_options(m, tmp_path, "arm64")[1::2])
    for key in ("Dir::Etc::SourceList", "Dir::Etc::SourceParts", "Dir::State::status",
                "Dir::State::Lists", "Dir::Etc::PreferencesParts", "Dir::Cache"):  # fmt: skip
        assert opts[key].startswith(str(tmp_path)), key
    assert opts["APT::Architecture"] == "arm64"
    assert freshness.sources(m, "bookworm") == [
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]
    status = freshness.status_of([Deb("wget", "1.0", "amd64", "0" * 64)])
    assert (
        status
        == "Package: wget\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n\n"
    )


def test_a_registry_base_has_no_debian_lock_to_compare(tmp_path: Path) -> None:
    m = matrix.load(ROOT / "matrix.yaml", env={})
    cell = Cell("2.60.0", "3.11.9", Variant.CPU, BaseSpec("image", "python:3.11.9-slim"))
    check = freshness.check(m, cell, tmp_path)
    assert check.status == "skipped" and "registry base" in check.detail
