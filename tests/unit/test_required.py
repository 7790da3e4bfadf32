"""RAYCOMPAT_REQUIRE turns a skip of a required marker into a failure (the CI kind job)."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT

pytest_plugins = ["pytester"]

SKIPPING = """
import pytest

@pytest.mark.kind
def test_needs_a_node_image():
    pytest.skip("no kind node image here")

def test_plain():
    pytest.skip("unrelated skip")
"""


def run(pytester: pytest.Pytester, mp: pytest.MonkeyPatch, require: str) -> pytest.RunResult:
    pytester.makepyfile(test_it=SKIPPING)
    pytester.makeini("[pytest]\nmarkers =\n  kind: kind\n")
    pytester.syspathinsert(ROOT)
    mp.setenv("RAYCOMPAT_REQUIRE", require)
    return pytester.runpytest("-p", "tests.conftest", "-rfs")


def test_skip_is_a_failure_where_the_marker_is_required(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(pytester, monkeypatch, "kind")
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*RAYCOMPAT_REQUIRE=kind: this kind test must run here*"])


def test_skip_stays_a_skip_elsewhere(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(pytester, monkeypatch, "").assert_outcomes(skipped=2)
