"""The push gate's decisions on real report files, with a fake engine (no Docker): shard
reports merged as CI merges them, structure checks tied to the tested image ids, GPU
honesty and conflicting shards."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness import matrix, registry, report
from harness.engine import Engine
from harness.image_checks import structure_check_names
from harness.matrix import ROLES, Cell, Matrix
from harness.results import ERROR, PASSED, REQUIRED_CHECKS, SKIPPED, CellResult, Check, Status

TWO_CELLS = 'version: 1\nray: ["2.60.0"]\npython: ["3.11.2"]\nvariants: [cpu, gpu]\n'


class FakeEngine:
    """What the gate asks the engine: the local image id behind a tag."""

    def __init__(self, ids: dict[str, str]) -> None:
        self.ids = ids

    def inspect(self, kind: str, ref: str) -> dict[str, Any] | None:
        return {"Id": self.ids[ref]} if ref in self.ids else None


def image_id(cell: Cell, role: str) -> str:
    return "sha256:" + f"{cell.id}-{role}".encode().hex()[:64].ljust(64, "0")


def passed_result(cell: Cell, gpu: Status = SKIPPED) -> CellResult:
    """A cell as `build` then `test` in one build directory leave it."""
    r = report.fresh(cell)
    for role in ROLES:
        for name in structure_check_names(cell, role):
            r.build_checks.append(Check(name, PASSED, "ok", "build", image_id=image_id(cell, role)))
    r.test_checks = [Check(name, PASSED, "proven") for name in REQUIRED_CHECKS]
    if cell.variant == "gpu":
        r.test_checks.append(Check("gpu:e2e", gpu, "no NVIDIA container runtime here"))
    r.tested_image_ids = {role: image_id(cell, role) for role in ROLES}
    r.settle()
    return r


def shard(tmp: Path, name: str, m: Matrix, results: dict[str, CellResult]) -> Path:
    """A shard's report: its own cells, every other cell `excluded` (as --only writes it)."""
    left = [matrix.Excluded(c, "not selected by --only") for c in m.cells if c.id not in results]
    build = tmp / name
    report.write(build, results, str(m.path), name, report.excluded(left))
    return build / "report.json"


def engine_for(m: Matrix) -> Engine:
    ids = {c.tag(m.prefix, role): image_id(c, role) for c in m.cells for role in ROLES}
    return FakeEngine(ids)  # type: ignore[return-value]


@pytest.fixture
def m(write_matrix: Callable[[str], Path]) -> Matrix:
    return matrix.load(write_matrix(TWO_CELLS))


def gate(m: Matrix, *reports: Path) -> tuple[set[str], list[registry.Refusal]]:
    results, conflicts = registry.load_reports(list(reports))
    approved, refused = registry.gate(engine_for(m), m, m.cells, results, conflicts)
    return {a.cell.id for a in approved}, refused


def test_two_shards_push_both_cells(m: Matrix, tmp_path: Path) -> None:
    cpu, gpu = m.cells
    a = shard(tmp_path, "a", m, {cpu.id: passed_result(cpu)})
    b = shard(tmp_path, "b", m, {gpu.id: passed_result(gpu)})
    assert gate(m, a, b) == ({cpu.id, gpu.id}, [])
    assert gate(m, b, a) == ({cpu.id, gpu.id}, [])  # order does not matter


def test_a_failed_shard_blocks_only_its_cell(m: Matrix, tmp_path: Path) -> None:
    cpu, gpu = m.cells
    broken = passed_result(gpu)
    broken.test_checks.append(Check("workload:tasks", ERROR, "cluster never served a client"))
    broken.settle()
    a = shard(tmp_path, "a", m, {cpu.id: passed_result(cpu)})
    b = shard(tmp_path, "b", m, {gpu.id: broken})
    approved, refused = gate(m, a, b)
    assert approved == {cpu.id}
    assert [(r.cell, "workload:tasks" in r.why) for r in refused] == [(gpu.id, True)]


def test_disagreeing_shards_are_a_conflict(m: Matrix, tmp_path: Path) -> None:
    cpu, _ = m.cells
    failed = passed_result(cpu)
    failed.test_checks.append(Check("workload:actor", Status("failed"), "state lost"))
    failed.settle()
    a = shard(tmp_path, "a", m, {cpu.id: passed_result(cpu)})
    b = shard(tmp_path, "b", m, {cpu.id: failed})
    approved, refused = gate(m, a, b)
    assert cpu.id not in approved
    assert any(r.cell == cpu.id and "conflicting results" in r.why for r in refused)


def test_structure_checks_must_have_run_on_the_tested_images(m: Matrix, tmp_path: Path) -> None:
    cpu, _ = m.cells
    # `test` in a fresh build directory: no structure checks at all
    bare = passed_result(cpu)
    bare.build_checks = []
    approved, refused = gate(m, shard(tmp_path, "fresh", m, {cpu.id: bare}))
    assert cpu.id not in approved
    assert "structure checks never ran on the tested image" in refused[0].why
    # structure checks of another image (rebuilt elsewhere)
    other = passed_result(cpu)
    other.build_checks[0].image_id = "sha256:" + "1" * 64
    approved, refused = gate(m, shard(tmp_path, "other", m, {cpu.id: other}))
    assert cpu.id not in approved
    assert "not on the tested" in refused[0].why


def test_gpu_e2e_optional_pushes_with_a_note_required_refuses(
    write_matrix: Callable[[str], Path], tmp_path: Path
) -> None:
    optional = matrix.load(write_matrix(TWO_CELLS))
    gpu = optional.cells[1]
    path = shard(tmp_path, "gpu", optional, {gpu.id: passed_result(gpu)})
    results, _ = registry.load_reports([path])
    approved, _ = registry.gate(engine_for(optional), optional, [gpu], results)
    assert {a.note for a in approved} == {"not run on a GPU: no NVIDIA container runtime here"}

    required = matrix.load(write_matrix(TWO_CELLS + "gpu_e2e: required\n"))
    approved, refused = registry.gate(engine_for(required), required, [gpu], results)
    assert approved == []
    assert "gpu_e2e: required" in refused[0].why and "not run on a GPU" in refused[0].why

    proven = shard(tmp_path, "gpu-ok", required, {gpu.id: passed_result(gpu, gpu=PASSED)})
    results, _ = registry.load_reports([proven])
    approved, refused = registry.gate(engine_for(required), required, [gpu], results)
    assert len(approved) == 3 and refused == [] and {a.note for a in approved} == {""}


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda d: d.update(cells="x"), "no list of cells"),
        (lambda d: d.update(schema=1), "schema 1"),
        (lambda d: d["cells"][0].update(status="great"), "unknown status 'great'"),
        (lambda d: d["cells"][0].update(tested_image_ids=["a"]), "tested_image_ids"),
        (lambda d: d["cells"][0]["checks"][0].update(status="ok"), "unknown status 'ok'"),
        (lambda d: d["cells"][0]["checks"][0].update(surprise=1), "unknown field"),
        (lambda d: d["cells"][0]["checks"].append(3), "checks[1] is int"),
        (lambda d: d["cells"][0].pop("id"), "has no 'id'"),
    ],
)
def test_reports_of_the_wrong_shape_are_refused(
    m: Matrix, tmp_path: Path, edit: Callable[[dict[str, Any]], None], why: str
) -> None:
    import json

    path = shard(tmp_path, "a", m, {m.cells[0].id: passed_result(m.cells[0])})
    doc = json.loads(path.read_text())
    doc["cells"][0]["checks"] = doc["cells"][0]["checks"][:1]
    edit(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(Exception, match="not a harness report") as exc:
        registry.load_reports([path])
    assert why in str(exc.value)
