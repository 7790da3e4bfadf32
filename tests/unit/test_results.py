"""A cell's verdict: passed only on the evidence of its required checks, never on skips."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import report
from harness.results import (
    PASSED,
    REQUIRED_CHECKS,
    SKIPPED,
    CellResult,
    CellStatus,
    Check,
    Status,
)


def verdict(checks: list[Check], platform: str = "linux/amd64") -> CellResult:
    r = CellResult(
        id="ray2.60.0-py3.11.2-cpu", ray="2.60.0", python="3.11.2", variant="cpu", platform=platform
    )
    r.build_checks = [Check("image:head:python", PASSED, "ok", "build")]
    r.test_checks = checks
    r.settle()
    return r


def required(**status: Status) -> list[Check]:
    return [Check(n, status.get(n.replace(":", "_"), PASSED), "x") for n in REQUIRED_CHECKS]


def test_every_required_check_passed_is_a_pass() -> None:
    r = verdict([*required(), Check("auth:token", SKIPPED, "no token auth in this Ray")])
    assert r.status == CellStatus.PASSED
    assert r.unproven() == []


def test_all_checks_skipped_is_not_a_pass() -> None:
    r = verdict([Check(n, SKIPPED, "not run here") for n in REQUIRED_CHECKS])
    assert r.status == CellStatus.NOT_VERIFIED
    assert r.unproven() == [f"{n} skipped" for n in REQUIRED_CHECKS]


@pytest.mark.parametrize("name", REQUIRED_CHECKS)
def test_one_required_check_skipped_or_missing(name: str) -> None:
    skipped = [c if c.name != name else Check(name, SKIPPED, "why") for c in required()]
    assert verdict(skipped).status == CellStatus.NOT_VERIFIED
    missing = [c for c in required() if c.name != name]
    r = verdict(missing)
    assert r.status == CellStatus.NOT_VERIFIED
    assert r.unproven() == [f"{name} missing"]


def test_unrequired_checks_alone_are_not_a_pass() -> None:
    r = verdict([Check("workload:tasks", PASSED, "24 tasks"), Check("serve:http", PASSED, "ok")])
    assert r.status == CellStatus.NOT_VERIFIED


def test_a_failure_outweighs_everything() -> None:
    r = verdict([*required(), Check("serve:http", Status("failed"), "404")])
    assert r.status == CellStatus.FAILED


def test_under_emulation_the_driver_is_proven_by_the_jobs_api() -> None:
    checks = required(driver_parity=SKIPPED)
    assert verdict(checks, "linux/arm64").status == CellStatus.PASSED
    assert verdict(checks, "linux/amd64").status == CellStatus.NOT_VERIFIED
    without_jobs = [c for c in checks if c.name != "jobs:submit"]
    assert verdict(without_jobs, "linux/arm64").status == CellStatus.NOT_VERIFIED


def test_not_verified_survives_the_report_and_says_why(tmp_path: Path) -> None:
    build = tmp_path
    r = verdict(required(driver_parity=SKIPPED))
    report.write(build, {r.id: r}, "matrix.yaml", "run1")
    back = report.read(build / "report.json").cells[r.id]
    assert back.status == CellStatus.NOT_VERIFIED
    md = (build / "report.md").read_text()
    assert "not verified" in md and "driver:parity skipped" in md
    assert 'name="cell:verified"' in (build / "junit.xml").read_text()
