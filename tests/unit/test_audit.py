"""`audit:locks` passes only on a complete audit: recorded pip-audit answers, and a real
pip-audit run over a committed lock (on these machines the index serves no vulnerability
data, so nothing can be audited, and the check must say so)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness import audit
from harness.results import ERROR, FAILED, PASSED, SKIPPED, WARNING
from tests.conftest import ROOT

LOCK = ROOT / "locks" / "ray2.60.0-py3.11.2-cpu" / "runtime.txt"
PINS = "idna==3.7 \\\n    --hash=sha256:00\nrequests==2.19.0 \\\n    --hash=sha256:11\n"
CLEAN = {
    "dependencies": [
        {"name": "idna", "version": "3.7", "vulns": []},
        {"name": "requests", "version": "2.19.0", "vulns": []},
    ]
}
VULNERABLE = {  # pip-audit 2.x JSON for requests 2.19.0 where PyPI serves its advisories
    "dependencies": [
        {"name": "idna", "version": "3.7", "vulns": []},
        {
            "name": "requests",
            "version": "2.19.0",
            "vulns": [
                {"id": "PYSEC-2018-28", "fix_versions": ["2.20.0"], "aliases": ["CVE-2018-18074"]},
                {"id": "GHSA-9wx4-h78v-vm56", "fix_versions": ["2.32.0"], "aliases": []},
            ],
        },
    ],
    "fixes": [],
}
UNAUDITABLE = {  # what pip-audit writes here: the index has no per-version data
    "dependencies": [
        {"name": "idna", "version": "3.7", "vulns": []},
        {
            "name": "requests",
            "skip_reason": "Dependency not found on PyPI and could not be audited: "
            "requests (2.19.0)",
        },
    ],
    "fixes": [],
}


def recorded(doc: dict[str, Any]) -> audit.Runner:
    return lambda lock_file, out: doc


@pytest.mark.parametrize(
    ("answer", "policy", "status", "fragment"),
    [
        (CLEAN, "warn", PASSED, "all 2 locked packages audited"),
        (CLEAN, "fail", PASSED, "no known vulnerabilities"),
        (VULNERABLE, "warn", WARNING, "requests 2.19.0: PYSEC-2018-28, GHSA-9wx4-h78v-vm56"),
        (VULNERABLE, "fail", FAILED, "(fixed in 2.20.0, 2.32.0)"),
        (UNAUDITABLE, "warn", SKIPPED, "1 of 2 package(s) could not be audited"),
        (UNAUDITABLE, "fail", FAILED, "audit: fail requires every package audited"),
    ],
)
def test_recorded_answers(
    tmp_path: Path, answer: dict[str, Any], policy: str, status: str, fragment: str
) -> None:
    lock = tmp_path / "runtime.txt"
    lock.write_text(PINS)
    check = audit.check([lock], tmp_path / "cache", policy, recorded(answer))
    assert check.status == status, check.detail
    assert fragment in check.detail


@pytest.mark.parametrize(
    ("pins", "fragment"),
    [
        (
            PINS + "numpy==2.1.0 \\\n    --hash=sha256:22\n",
            "reported 2 package(s), the lock(s) pin 3",
        ),
        ("", "no locked package: nothing was audited"),
        ("# only comments\n", "no locked package"),
    ],
)
def test_an_audit_that_does_not_cover_the_lock_is_an_error(
    tmp_path: Path, pins: str, fragment: str
) -> None:
    """pip-audit's count is compared with the lock's: 0 of 0 is no audit, and an answer
    about fewer (or other) packages than the lock pins proves nothing about it."""
    lock = tmp_path / "runtime.txt"
    lock.write_text(pins)
    empty: dict[str, Any] = {"dependencies": []}
    answer = CLEAN if pins.startswith(PINS) else empty
    for policy in ("warn", "fail"):
        check = audit.check([lock], tmp_path / f"cache-{policy}", policy, recorded(answer))
        assert check.status == ERROR, check.detail
        assert fragment in check.detail


def test_locked_packages_counts_pins_not_hashes_or_comments() -> None:
    assert audit.locked_packages(LOCK) == LOCK.read_text().count("==")
    assert audit.locked_packages(LOCK) >= 50


def test_the_answer_is_cached_per_lock(tmp_path: Path) -> None:
    lock = tmp_path / "runtime.txt"
    lock.write_text(PINS)
    calls: list[Path] = []

    def runner(lock_file: Path, out: Path) -> dict[str, Any]:
        calls.append(lock_file)
        return VULNERABLE

    for _ in range(2):
        assert audit.check([lock], tmp_path / "cache", "warn", runner).status == WARNING
    assert calls == [lock]


@pytest.mark.parametrize("cut", ["", '{"packages": 2, "findings": [', "[]", '{"pkgs": 1}'])
def test_a_cached_answer_that_is_not_one_is_audited_again(tmp_path: Path, cut: str) -> None:
    """A cache entry cut short (an interrupted run, a full disk) or of another format is
    asked again, not reported as "pip-audit could not run" for a day."""
    lock = tmp_path / "runtime.txt"
    lock.write_text(PINS)
    cache = tmp_path / "cache"
    audit.check([lock], cache, "warn", recorded(VULNERABLE))
    [entry] = cache.glob("*.json")
    entry.write_text(cut)
    again = audit.check([lock], cache, "warn", recorded(CLEAN))
    assert again.status == PASSED, again.detail
    assert audit.check([lock], cache, "warn", recorded(VULNERABLE)).status == PASSED  # cached


def test_pip_audit_that_cannot_run(tmp_path: Path) -> None:
    def broken(lock_file: Path, out: Path) -> dict[str, Any]:
        raise RuntimeError("network unreachable")

    lock = tmp_path / "runtime.txt"
    lock.write_text("x==1\n")
    assert audit.check([lock], tmp_path / "c1", "warn", broken).status == SKIPPED
    failed = audit.check([lock], tmp_path / "c2", "fail", broken)
    assert failed.status == FAILED and "network unreachable" in failed.detail
    assert audit.check([lock], tmp_path / "c3", "off", broken).status == SKIPPED


@pytest.mark.network  # asks PyPI
def test_real_pip_audit_over_a_committed_lock(tmp_path: Path) -> None:
    """Never `passed` unless pip-audit audited every locked package."""
    check = audit.check([LOCK], tmp_path / "cache", "warn")
    data = check.data
    print(f"audit:locks here: {check.status}: {check.detail[:300]}")
    assert data["packages"] >= 50
    if data["audited"] < data["packages"]:
        assert check.status == SKIPPED
        assert "could not be audited" in check.detail
        strict = audit.check([LOCK], tmp_path / "cache", "fail")
        assert strict.status == FAILED
    elif data["findings"]:
        assert check.status == WARNING, check.detail
    else:
        assert check.status == PASSED, check.detail
    assert data["packages"] == data["locked"] == audit.locked_packages(LOCK)
