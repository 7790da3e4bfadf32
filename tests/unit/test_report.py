"""Reports: JSON shape, Markdown and JUnit rendering, state round trip."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from harness import pulls, report
from harness.errors import HarnessError
from harness.results import REQUIRED_CHECKS, CellResult, Check, Image, Status


def cell(status_checks: list[tuple[str, str]]) -> CellResult:
    """A built cell; tested when checks are given: those, then every other required check
    passed."""
    c = CellResult(id="ray2.60.0-py3.11.2-cpu", ray="2.60.0", python="3.11.2", variant="cpu")
    c.images = [Image("head", "p/ray-head:t", "sha256:1", 500_000_000)]
    c.build_checks = [Check("image:head:python", Status("passed"), "ok", "build")]
    c.test_checks = [Check(n, Status(s), f"{n} detail | pipe") for n, s in status_checks]
    named = {n for n, _ in status_checks}
    if status_checks:
        c.test_checks += [
            Check(n, Status("passed"), "ok") for n in REQUIRED_CHECKS if n not in named
        ]
    c.settle()
    return c


def test_report_files_and_schema(tmp_path: Path) -> None:
    passed = cell([("client:parity", "passed")])
    failed = cell([("client:parity", "failed")])
    failed.id = "ray2.51.2-py3.11.2-cpu"
    doc = report.write(tmp_path, {passed.id: passed, failed.id: failed}, "matrix.yaml", "run1")
    assert doc["summary"] == {"passed": 1, "failed": 1}
    on_disk = json.loads((tmp_path / "report.json").read_text())
    first = on_disk["cells"][0]
    assert {"id", "ray", "python", "variant", "status", "images", "checks"} <= first.keys()
    assert {"role", "tag", "id", "size_bytes"} <= first["images"][0].keys()
    assert {"name", "status", "detail"} <= first["checks"][0].keys()
    md = (tmp_path / "report.md").read_text()
    row = "| ray2.60.0-py3.11.2-cpu | 2.60.0 | 3.11.2 | cpu | linux/amd64 (native) | ✅ passed |"
    assert row + f" {len(REQUIRED_CHECKS) + 1}/{len(REQUIRED_CHECKS) + 1} |" in md
    assert "detail \\| pipe" in md
    xml = ET.parse(tmp_path / "junit.xml").getroot()
    suites = {s.get("name"): s for s in xml}
    assert suites[failed.id].get("failures") == "1"
    assert suites[passed.id].get("failures") == "0"


def test_state_round_trip(tmp_path: Path) -> None:
    c = cell([("client:parity", "passed")])
    report.write(tmp_path, {c.id: c}, "m", "r")
    back = report.load_state(tmp_path / "state.json")[c.id]
    assert [k.name for k in back.build_checks] == ["image:head:python"]
    assert [k.name for k in back.test_checks] == [k.name for k in c.test_checks]
    assert back.status == "passed"


def test_state_holds_the_results_and_the_report_also_the_others(tmp_path: Path) -> None:
    """state.json keeps this run's results; report.json adds the cells passed as `extra`
    (excluded ones); without extras the two are the same document."""
    c = cell([("client:parity", "passed")])
    other = CellResult(id="ray2.9.3-py3.9.2-cpu", ray="2.9.3", python="3.9.2", variant="cpu")
    report.write(tmp_path, {c.id: c}, "m", "r")
    assert (tmp_path / "state.json").read_text() == (tmp_path / "report.json").read_text()
    report.write(tmp_path, {c.id: c}, "m", "r", extra=[other])
    state = json.loads((tmp_path / "state.json").read_text())
    whole = json.loads((tmp_path / "report.json").read_text())
    assert [x["id"] for x in state["cells"]] == [c.id]
    assert [x["id"] for x in whole["cells"]] == [c.id, other.id]


def test_status_rules() -> None:
    assert cell([]).status == "built"
    assert cell([("x", "skipped"), ("y", "passed")]).status == "passed"
    assert cell([("x", "failed")]).status == "failed"
    assert cell([("client:parity", "skipped"), ("y", "passed")]).status == "not verified"


def test_the_vocabulary_reads_as_its_value_everywhere() -> None:
    import json

    from harness.matrix import Variant
    from harness.results import CellStatus

    for word in (Status.FAILED, CellStatus.BUILT, Variant.GPU):
        value = word.value
        assert (str(word), f"{word}", f"{word!r}", f"{word:<8}") == (
            value,
            value,
            repr(value),
            f"{value:<8}",
        )
        assert json.dumps(word) == json.dumps(value)
        assert word == value and {value: 1}[word] == 1


def test_the_report_shows_pull_sizes_once_push_measured_them(tmp_path: Path) -> None:
    c = cell([("client:parity", "passed")])
    c.images.append(Image("notebook", "p/ray-notebook:t", "sha256:2", 700_000_000))
    report.write(tmp_path, {c.id: c}, "m", "r")
    md = (tmp_path / "report.md").read_text()
    assert "`p/ray-head:t` 500 MB<br>" in md and "Pull sizes: not measured" in md
    shared = ("sha256:" + "a" * 64, 173_000_000)
    pulls.record(tmp_path, {"sha256:1": [shared]})
    pulls.record(tmp_path, {"sha256:2": [shared, ("sha256:" + "b" * 64, 55_000_000)]})
    report.rerender(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "`p/ray-head:t` 500 MB, pull 173 MB<br>`p/ray-notebook:t` 700 MB, pull 228 MB" in md
    assert "head 173 MB, notebook 228 MB (1 layer(s), 173 MB, shared by all 2)" in md
    assert "Matrix `m`, run `r`" in md and "Summary: 1 passed" in md
    (tmp_path / pulls.FILE).write_text("not json")  # a cache of figures: never fatal
    assert pulls.load(tmp_path) == {}
    (tmp_path / "report.json").write_text("{}")
    with pytest.raises(HarnessError, match="not a harness report"):
        report.rerender(tmp_path)


# What Ray 2.44.1's Serve raised with protobuf 7 (a real run's deploy log tail).
TRACEBACK_TAIL = """deploy job FAILED: to_deployment_info
    deployment_config = DeploymentConfig.from_proto_bytes(deployment_config_proto_bytes)
                        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File ".../ray/serve/_private/config.py", line 302, in from_proto_bytes
    return cls.from_proto(proto)
  File ".../ray/serve/_private/config.py", line 64, in _proto_to_dict
    if field.label == FieldDescriptor.LABEL_REPEATED:
       ^^^^^^^^^^^
AttributeError: 'google._upb._message.FieldDescriptor' object has no attribute 'label'"""


@pytest.mark.parametrize("limit", [200, 300])
def test_a_long_detail_keeps_its_start_and_what_was_raised(limit: int) -> None:
    line = report.brief(TRACEBACK_TAIL, limit)
    assert len(line) <= limit and "\n" not in line
    assert line.startswith("deploy job FAILED: to_deployment_info")
    assert line.endswith(
        "AttributeError: 'google._upb._message.FieldDescriptor' object has no attribute 'label'"
    )


def test_a_short_detail_is_kept_whole_and_a_long_line_is_cut() -> None:
    assert report.brief("ok:\n  3 nodes", 300) == "ok: 3 nodes"
    one = "x" * 500
    assert report.brief(one, 300) == "x" * 299 + "…"
    long_last = "reason\n" + "y" * 400
    cut = report.brief(long_last, 300)
    assert len(cut) <= 300 and cut.startswith("reason y") and cut.endswith("…")


def test_the_report_shows_what_was_raised(tmp_path: Path) -> None:
    failed = cell([])
    failed.test_checks = [Check("serve:http", Status("failed"), TRACEBACK_TAIL)]
    failed.settle()
    report.write(tmp_path, {failed.id: failed}, "m", "r")
    [kept] = json.loads((tmp_path / "report.json").read_text())["cells"][0]["checks"][-1:]
    assert kept["detail"] == TRACEBACK_TAIL  # report.json keeps the detail whole
    md = (tmp_path / "report.md").read_text()
    assert (
        "… AttributeError: 'google._upb._message.FieldDescriptor' object has no attribute 'label' |"
        in md
    )
    case = ET.parse(tmp_path / "junit.xml").getroot().find(".//testcase[@name='serve:http']")
    assert case is not None
    failure = case.find("failure")
    assert failure is not None and failure.get("message", "").endswith("attribute 'label'")
    assert failure.text is not None and failure.text.startswith(TRACEBACK_TAIL)
