"""Every child process of the host side goes through the one bounded runner."""

from __future__ import annotations

import re
import sys

import pytest

from harness import children
from harness.errors import HarnessError
from tests.conftest import ROOT

SPAWNS = re.compile(r"\bsubprocess\.(run|Popen|call|check_call|check_output)\(|\bos\.system\(")


def test_no_host_side_module_starts_a_child_of_its_own() -> None:
    """A child started elsewhere is not stopped by SIGTERM (stop_all does not know it) and
    its timeout is a traceback. Code run inside the images (harness/inside) is apart."""
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "harness").rglob("*.py"))
        if "inside" not in path.parts and path.name != "children.py"
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if SPAWNS.search(line)
    ]
    assert offenders == []


def test_a_child_that_overruns_is_a_harness_error_naming_the_work() -> None:
    with pytest.raises(HarnessError, match=r"resolving the x lock: `.*python.*` did not finish"):
        children.bounded(
            [sys.executable, "-c", "import time; time.sleep(30)"],
            timeout=0.5,
            what="resolving the x lock",
        )


def test_a_child_started_during_a_stop_is_refused_by_name() -> None:
    children._STOPPING.set()
    try:
        with pytest.raises(HarnessError, match="downloading wheels: not starting"):
            children.bounded([sys.executable, "-V"], timeout=10, what="downloading wheels")
    finally:
        children._STOPPING.clear()
