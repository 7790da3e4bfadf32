"""Grid verdicts and outputs (pure logic), and the grid policy in matrix.yaml."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness import grid, matrix
from harness.errors import MatrixError
from harness.results import FAILED, PASSED, CellResult, Check

POLICY = matrix.GridPolicy()
LIBS = {"grpcio": "1.70.0", "numpy": "2.3.0", "cloudpickle": "3.1.1 (vendored)"}


def facts(python: str = "3.13.5", ray: str = "2.60.0", **libs: str) -> dict[str, Any]:
    return {"python": python, "ray": ray, "commit": "c" + ray, "libs": {**LIBS, **libs}}


def test_matching_pair_is_compatible_no_false_alarm() -> None:
    verdict = grid.judge(facts(), [facts(), facts()], POLICY)
    assert (verdict.verdict, verdict.reasons, verdict.outcome) == ("compatible", [], "passed")


@pytest.mark.parametrize(
    ("client", "cluster"), [("3.13.15", "3.13.5"), ("3.13.5", "3.13.15")], ids=["newer", "older"]
)
def test_micro_mismatch_is_incompatible_in_both_directions(client: str, cluster: str) -> None:
    verdict = grid.judge(facts(client), [facts(cluster), facts(cluster)], POLICY)
    assert verdict.verdict == "incompatible" and verdict.outcome == "failed"
    assert verdict.reasons == [f"python: notebook {client} vs cluster {cluster}"]


def test_wire_library_difference_only_warns() -> None:
    verdict = grid.judge(facts(grpcio="1.71.0"), [facts()], POLICY)
    assert (verdict.verdict, verdict.outcome) == ("warn", "warning")
    assert verdict.reasons == ["grpcio: notebook 1.71.0 vs cluster 1.70.0 (warn)"]


def test_a_library_missing_on_one_side_is_named_as_such() -> None:
    client = facts()
    client["libs"] = {k: v for k, v in LIBS.items() if k != "numpy"}
    verdict = grid.judge(client, [facts()], POLICY)
    assert verdict.reasons == ["numpy: notebook not installed vs cluster 2.3.0 (warn)"]


def test_ray_version_mismatch_names_version_and_commit() -> None:
    verdict = grid.judge(facts(ray="2.51.2"), [facts()], POLICY)
    assert verdict.verdict == "incompatible"
    assert [r.split(":")[0] for r in verdict.reasons] == ["ray", "commit"]


def test_ray_client_verdicts() -> None:
    ok = {"connect": {"ok": True, "warnings": []}}
    assert grid.ray_client_verdict(ok).verdict == "accepted"
    warned = {"connect": {"ok": True, "warnings": ["Python patch version mismatch: 3.13.15"]}}
    assert grid.ray_client_verdict(warned).verdict == "warned"
    rejected = {"connect": {"ok": False, "error": "RuntimeError: Version mismatch: Ray 2.51.2"}}
    assert grid.ray_client_verdict(rejected).verdict == "rejected"


def pair(
    nb: str, cl: str, ours: str, client: str, driver: str, jobs: str = "compatible"
) -> grid.Pair:
    return grid.Pair(
        notebook=nb,
        cluster=cl,
        ray_client=grid.Verdict(client, f"client {client}"),
        ray_driver=grid.Verdict(driver, f"driver {driver}"),
        harness=grid.Verdict(ours, reasons=[] if ours == "compatible" else ["python: x"]),
        ray_jobs=grid.Verdict("accepted", "job SUCCEEDED"),
        harness_jobs=grid.Verdict(jobs),
    )


def test_blind_spot_is_when_ray_objects_and_we_do_not() -> None:
    assert pair("a", "b", "compatible", "warned", "rejected").blind_spot
    assert pair("a", "b", "compatible", "accepted", "rejected").blind_spot
    assert not pair("a", "b", "incompatible", "warned", "rejected").blind_spot
    assert not pair("a", "a", "compatible", "accepted", "accepted").blind_spot
    # an error that names no version is still Ray refusing the pair
    assert pair("a", "b", "compatible", "error", "accepted").blind_spot


RAY_START_MISMATCH = """Local node IP: 172.18.0.4
Traceback (most recent call last):
  File "/opt/ray/bin/ray", line 8, in <module>
RuntimeError: Version mismatch: The cluster was started with:
    Ray: 2.60.0
    Python: 3.13.5
This process on node 172.18.0.4 was started with:
    Ray: 2.60.0
    Python: 3.13.15
"""


def test_rays_own_mismatch_message_is_kept() -> None:
    text = grid._mismatch_lines(RAY_START_MISMATCH)
    assert text.startswith("RuntimeError: Version mismatch: The cluster was started with:")
    assert "Python: 3.13.5" in text and "Python: 3.13.15" in text


def test_other_failures_keep_the_tail() -> None:
    text = grid._mismatch_lines("a\nb\nConnectionError: Could not read 'temp_dir' from GCS.\n")
    assert text.endswith("ConnectionError: Could not read 'temp_dir' from GCS.")


def test_outputs(tmp_path: Path) -> None:
    pairs = [
        pair("nb1", "c1", "compatible", "accepted", "accepted"),
        pair("nb1", "c2", "incompatible", "warned", "rejected", jobs="compatible"),
        pair("nb2", "c1", "warn", "accepted", "accepted"),
        pair("nb2", "c2", "compatible", "accepted", "accepted"),
    ]
    grid.write(tmp_path, pairs, POLICY)
    md = (tmp_path / "grid.md").read_text()
    assert "| notebook \\ cluster | c1 | c2 |" in md
    assert (
        "| nb1 | ✅ compatible, jobs ✅ compatible / client accepted / driver accepted / jobs "
        "accepted / safe: Ray Client, driver, Jobs API | ❌ incompatible, jobs ✅ compatible / "
        "client warned / driver rejected / jobs accepted / safe: Jobs API |"
    ) in md
    assert "**nb1 -> c2**: python: x" in md
    page = (tmp_path / "grid.html").read_text()
    assert page.count("<td ") == 4 and "#c62828" in page and "title=" in page
    assert '"pairs"' in (tmp_path / "grid.json").read_text()


def test_grid_policy_in_matrix(write_matrix: Callable[[str], Path]) -> None:
    base = 'ray: ["2.60.0"]\npython: ["3.11.2"]\n'
    m = matrix.load(write_matrix(base + "grid:\n  fail: [python]\n  warn: [numpy]\n"))
    assert m.grid == matrix.GridPolicy(fail=("python",), warn=("numpy",), only=())
    assert matrix.load(write_matrix(base)).grid == matrix.GridPolicy()
    with pytest.raises(MatrixError, match=r"grid\.warn\.0: unknown key 'nunpy'; did you mean"):
        matrix.load(write_matrix(base + "grid:\n  warn: [nunpy]\n"))
    with pytest.raises(MatrixError, match=r"grid\.only"):
        matrix.load(write_matrix(base + "grid:\n  only: ['pyhton=3.11.*']\n"))


def test_no_verdict_is_undecided_not_incompatible() -> None:
    assert grid.judge(facts(), [], POLICY).outcome == "error"
    no_facts = {"ok": False, "error": "probe facts exited 124: did not finish in 60s"}
    undecided = grid.judge(no_facts, [facts()], POLICY)
    assert (undecided.verdict, undecided.answered, undecided.outcome) == ("error", False, "error")
    assert undecided.reasons == [
        "the notebook image gave no facts: probe facts exited 124: did not finish in 60s"
    ]
    crashed = grid.ray_client_verdict({"ok": False, "error": "probe cluster exited 137: "})
    assert crashed.verdict == grid.UNDECIDED and crashed.answered is False
    accepted = grid.Verdict("accepted")
    p = grid.Pair("a", "b", crashed, accepted, grid.Verdict("compatible"), accepted)
    assert p.undecided == ["Ray Client: probe cluster exited 137: "]
    # Ray's own error (e.g. a protocol error across Ray versions) is a result, not undecided
    ray_error = grid.ray_client_verdict({"connect": {"ok": False, "error": "grpc: EOF"}})
    assert ray_error.verdict == "error" and ray_error.answered and ray_error.outcome == "failed"
    incompatible = grid.Verdict("incompatible")
    assert grid.Pair("a", "b", ray_error, ray_error, incompatible, ray_error).undecided == []


def test_jobs_path_judges_the_submitting_client_not_its_python() -> None:
    cluster = {"python": "3.13.5", "ray": "2.60.0"}
    job = {"status": "SUCCEEDED", "log_tail": "", "facts": {"driver": cluster}}
    newer = {"ok": True, "client": {"python": "3.13.15", "ray": "2.60.0"}, "job": job}
    ray, ours = grid.jobs_verdicts(newer, cluster)
    assert (ray.verdict, ours.verdict) == ("accepted", "compatible")  # micro does not enter
    other_ray = {**newer, "client": {"python": "3.13.5", "ray": "2.51.2"}}
    ray, ours = grid.jobs_verdicts(other_ray, cluster)
    assert (ray.verdict, ours.verdict) == ("accepted", "warn")
    assert ours.reasons == [
        "ray: notebook 2.51.2 vs cluster 2.60.0 (JobSubmissionClient of another Ray)"
    ]
    failed = {**newer, "job": {"status": "FAILED", "log_tail": "ImportError: boom"}}
    ray, ours = grid.jobs_verdicts(failed, cluster)
    assert (ray.verdict, ours.verdict) == ("error", "incompatible") and "boom" in ray.message
    refused = {"ok": False, "client": newer["client"], "error": "RuntimeError: /api/version 401"}
    assert grid.jobs_verdicts(refused, cluster)[0].verdict == "error"  # not a version verdict
    hung = {"ok": False, "error": "probe jobs exited 124: timed out"}
    ray, ours = grid.jobs_verdicts(hung, cluster)
    assert (ray.answered, ours.verdict) == (False, "error")


def test_the_relaxation_is_studied_only_for_micro_only_mismatches() -> None:
    client = {"python": "3.13.15", "ray": "2.60.0"}
    assert grid.micro_only(client, [{"python": "3.13.5", "ray": "2.60.0"}] * 2)
    assert not grid.micro_only(client, [{"python": "3.13.15", "ray": "2.60.0"}])  # same
    assert not grid.micro_only(client, [{"python": "3.11.2", "ray": "2.60.0"}])  # minor
    assert not grid.micro_only(client, [{"python": "3.13.5", "ray": "2.51.2"}])  # Ray too
    assert not grid.micro_only(client, [])


def test_a_relaxation_is_safe_only_when_every_round_trip_came_back() -> None:
    ok = grid.Relaxation(True, "joined", {"function": "ok", "closure": "ok"})
    assert ok.safe
    broken = grid.Relaxation(True, "joined", {"function": "ok", "closure": "TypeError: code()"})
    assert not broken.safe
    assert not grid.Relaxation(False, "Version mismatch").safe
    assert not grid.Relaxation(True, "joined").safe  # nothing ran: nothing proven
    lines = grid.relaxation_lines(broken)
    assert "(NOT safe): the driver joins; round trips: function ok, closure FAILED" in lines[0]
    assert lines[1] == "    - closure: TypeError: code()"
    p = pair("nb", "cl", "incompatible", "warned", "rejected")
    p.relaxed = broken
    assert "forced past the micro check" in grid.markdown([p], POLICY)


# --- a cell's notebook against its own cluster, taken from `test` ---------------------------

IDS = {"head": "sha256:h", "worker": "sha256:w", "notebook": "sha256:n"}


def proven_result(**changes: Any) -> CellResult:
    """A cell whose last test passed every check the grid takes a pair from."""
    client = facts()
    nodes = [{"host": h, **facts()} for h in ("head", "worker")]
    checks = [
        Check("client:connect", PASSED, "connected", "test", {"warnings": []}),
        Check("client:parity", PASSED, "same", "test", {"client": client, "nodes": nodes}),
        Check("driver:connect", PASSED, "joined", "test"),
        Check("driver:parity", PASSED, "same", "test"),
        Check("jobs:submit", PASSED, "job SUCCEEDED", "test"),
    ]
    result = CellResult("c1", "2.60.0", "3.13.5", "cpu", test_checks=checks)
    result.tested_image_ids, result.tested_on = dict(IDS), "containers"
    for key, value in changes.items():
        setattr(result, key, value)
    return result


def test_a_pair_test_proved_is_taken_with_its_verdicts() -> None:
    p, why = grid.from_test(proven_result(), IDS, "containers", POLICY)
    assert p is not None, why
    assert (p.notebook, p.cluster) == ("c1", "c1")
    assert (p.harness.verdict, p.harness_jobs.verdict) == ("compatible", "compatible")
    assert [p.ray_client.verdict, p.ray_driver.verdict, p.ray_jobs.verdict] == ["accepted"] * 3
    assert p.proven_by.startswith("test") and p.safe_paths == ["Ray Client", "driver", "Jobs API"]


def test_the_harness_verdict_is_judged_again_from_the_recorded_facts() -> None:
    result = proven_result()
    result.test_checks[1].data["nodes"][1]["libs"]["grpcio"] = "1.71.0"
    p, _ = grid.from_test(result, IDS, "containers", POLICY)
    assert p is not None and p.harness.verdict == "warn"
    assert p.harness.reasons == ["grpcio: notebook 1.70.0 vs cluster 1.70.0, 1.71.0 (warn)"]


def _failing(name: str) -> CellResult:
    result = proven_result()
    result.test_checks = [
        c if c.name != name else Check(name, FAILED, "no", "test") for c in result.test_checks
    ]
    return result


@pytest.mark.parametrize(
    ("result", "ids", "backend", "why"),
    [
        (None, IDS, "containers", "not tested"),
        (proven_result(tested_image_ids={}), IDS, "containers", "not tested"),
        (proven_result(), {**IDS, "notebook": "sha256:other"}, "containers", "other images"),
        (proven_result(), IDS, "kind", "ran on containers, not kind"),
        (proven_result(tested_on=""), IDS, "containers", "predates the recorded backend"),
        (_failing("driver:parity"), IDS, "containers", "did not pass driver:parity"),
        (
            proven_result(test_checks=proven_result().test_checks[:-1]),
            IDS,
            "containers",
            "did not pass jobs:submit",
        ),
    ],
    ids=["no-result", "never-tested", "rebuilt", "backend", "old-report", "failed", "missing"],
)
def test_a_pair_is_run_again_unless_test_proved_it_on_the_same_images(
    result: CellResult | None, ids: dict[str, str], backend: str, why: str
) -> None:
    p, reason = grid.from_test(result, ids, backend, POLICY)
    assert p is None and why in reason


def test_a_warning_or_facts_without_wire_libraries_are_not_taken() -> None:
    warned = proven_result()
    warned.test_checks[0].data["warnings"] = ["Python version mismatch"]
    assert grid.from_test(warned, IDS, "containers", POLICY) == (
        None,
        "Ray warned at its last test's Ray Client connect",
    )
    old = proven_result()
    del old.test_checks[1].data["client"]["libs"]
    p, why = grid.from_test(old, IDS, "containers", POLICY)
    assert p is None and "wire libraries" in why


def test_a_cluster_with_every_pair_proven_is_not_started(
    write_matrix: Callable[[str], Path], tmp_path: Path
) -> None:
    m = matrix.load(write_matrix('ray: ["2.60.0"]\npython: ["3.13.5"]\n'))
    cell = m.cells[0]
    p, _ = grid.from_test(proven_result(id=cell.id), IDS, "containers", POLICY)
    assert p is not None

    class NoBackend:  # any use of the backend would start a cluster
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the backend was used: {name}")

    pairs = grid.run(NoBackend(), m, [cell], tmp_path, proven={(cell.id, cell.id): p})  # type: ignore[arg-type]
    assert pairs == [p]
    grid.write(tmp_path, pairs, POLICY)
    assert f"- {cell.id} -> {cell.id}: test (same image ids" in (tmp_path / "grid.md").read_text()
    assert "<i>from test" in (tmp_path / "grid.html").read_text()
    assert '"proven_by": "test' in (tmp_path / "grid.json").read_text()
