"""Shared fixtures."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def write_matrix(tmp_path: Path) -> Callable[[str], Path]:
    """Write a matrix file into a temporary directory and return its path."""

    def write(text: str) -> Path:
        path = tmp_path / "matrix.yaml"
        path.write_text(text)
        return path

    return write


# --- tests that must not skip where they can run -----------------------------------------
# CI jobs that can run a skippable test (the workflow's kind job has a kindest/node image)
# set RAYCOMPAT_REQUIRE=kind (comma-separated markers): a skip of a test carrying one of
# those markers is then a failure, so such a job can never pass by skipping.
REQUIRE_ENV = "RAYCOMPAT_REQUIRE"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    rep = outcome.get_result()
    required = {m.strip() for m in os.environ.get(REQUIRE_ENV, "").split(",") if m.strip()}
    marks = required & {m.name for m in item.iter_markers()}
    if rep.skipped and marks and not hasattr(rep, "wasxfail"):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = (
            f"{REQUIRE_ENV}={','.join(sorted(required))}: this {'/'.join(sorted(marks))} test "
            f"must run here, but it skipped: {reason}"
        )
