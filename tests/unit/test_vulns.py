"""The vulnerability gate on scanner reports (Trivy's and Grype's JSON, written by hand in
their documented formats: no scanner database is reachable from these machines; the
workflow runs the real Trivy before push): threshold, exceptions that expire or go unused,
and a cell refused whole."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from harness import registry, vulns
from harness.errors import HarnessError
from harness.matrix import load
from harness.registry import Approved
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "scans"
TODAY = datetime.date(2026, 12, 6)
HEAD, WORKER, NOTEBOOK = ("sha256:" + c * 64 for c in "abc")
CELL = "ray2.60.0-py3.11.2-cpu"
IMAGES = [(f"{CELL}/head", HEAD), (f"{CELL}/worker", WORKER), (f"{CELL}/notebook", NOTEBOOK)]


def scans(tmp_path: Path, reports: dict[str, str] | None = None) -> Path:
    """A scans dir: head by Trivy (findings), worker by Grype, notebook clean."""
    reports = reports or {HEAD: "trivy.json", WORKER: "grype.json", NOTEBOOK: "clean-trivy.json"}
    d = tmp_path / "scans"
    d.mkdir(exist_ok=True)
    for image_id, name in reports.items():
        text = (DATA / name).read_text().replace("IMAGE_ID", image_id)
        (d / f"{image_id[7:19]}.json").write_text(text)
    return d


def exceptions(tmp_path: Path, *entries: str) -> Path:
    path = tmp_path / "vulnerability-exceptions.yaml"
    path.write_text("exceptions:\n" + "".join(entries))
    return path


VENDORED = (
    '  - id: GHSA-xxxx-0103-yyyy\n    package: ray\n    images: ["ray2.60.0-*"]\n'
    '    reason: "vendored inside the Ray wheel: fixed only by a new Ray release"\n'
    "    expires: {expires}\n"
)
OPENSSL = (
    '  - id: CVE-2026-0101\n    package: libssl3\n    images: ["*"]\n'
    '    reason: "the fix is in the next point release"\n    expires: 2027-01-31\n'
)


def judge(tmp_path: Path, exc: Path | None = None, fail_on: str = "high") -> vulns.Verdict:
    found = vulns.load_scans([scans(tmp_path)])
    excs = vulns.load_exceptions(exc, TODAY) if exc else []
    return vulns.judge(IMAGES, found, excs, fail_on, TODAY)


def test_both_formats_parse_to_the_same_findings(tmp_path: Path) -> None:
    d = scans(tmp_path)
    t = vulns.parse_report(d / f"{HEAD[7:19]}.json")
    g = vulns.parse_report(d / f"{WORKER[7:19]}.json")
    assert (t.image_id, g.image_id) == (HEAD, WORKER)
    assert t.scanner == "trivy 0.58.1" and g.scanner == "grype 0.86.1"
    assert [(f.id, f.package, f.severity) for f in t.findings] == [
        ("GHSA-xxxx-0103-yyyy", "ray", "critical"),
        ("CVE-2026-0101", "libssl3", "high"),
        ("CVE-2026-0102", "libc6", "low"),
    ]
    assert [(f.id, f.severity, f.fixed) for f in g.findings] == [
        ("CVE-2026-0101", "high", "3.0.17-1~deb12u2"),
        ("CVE-2026-0104", "negligible", ""),
    ]


def test_a_trivy_report_of_the_images_sbom_is_matched_by_its_image_id(tmp_path: Path) -> None:
    """`trivy sbom` copies the SBOM's aquasecurity:trivy:ImageID into Metadata.ImageID."""
    d = scans(tmp_path, {HEAD: "trivy-sbom.json"})
    s = vulns.parse_report(d / f"{HEAD[7:19]}.json")
    assert s.image_id == HEAD and s.scanner == "trivy 0.58.1 (the image's SBOM)"
    assert [f.id for f in s.findings] == [
        f.id for f in vulns.parse_report(scans(tmp_path) / f"{HEAD[7:19]}.json").findings
    ]
    foreign = json.loads((DATA / "trivy-sbom.json").read_text())
    del foreign["Metadata"]["ImageID"]  # another tool's SBOM: no image id to match
    (d / "foreign.json").write_text(json.dumps(foreign))
    with pytest.raises(
        HarnessError, match=r"foreign\.json: the report names no image id.*trivy sbom"
    ):
        vulns.parse_report(d / "foreign.json")


def test_a_high_finding_blocks_the_cell(tmp_path: Path) -> None:
    v = judge(tmp_path)
    why = v.refused_cells()[CELL]
    assert "critical GHSA-xxxx-0103-yyyy in ray 2.60.0 (no fix yet)" in why
    assert "high CVE-2026-0101 in libssl3 3.0.15-1~deb12u1 (fixed in 3.0.17-1~deb12u2)" in why
    head = v.images[0]
    assert head.below == 1 and len(head.blocking) == 2
    # the threshold decides: at critical, only the vendored finding blocks
    assert len(judge(tmp_path, fail_on="critical").refused_cells()) == 1
    assert "CVE-2026-0101" not in judge(tmp_path, fail_on="critical").refused_cells()[CELL]


def test_valid_exceptions_pass_and_the_report_shows_them(tmp_path: Path) -> None:
    exc = exceptions(tmp_path, VENDORED.format(expires="2027-03-01"), OPENSSL)
    v = judge(tmp_path, exc)
    assert v.refused_cells() == {} and v.exception_problems == []
    assert [f.id for f, _ in v.images[0].excepted] == ["GHSA-xxxx-0103-yyyy", "CVE-2026-0101"]
    vulns.save(tmp_path, v)
    md = "\n".join(vulns.markdown(tmp_path, [HEAD, WORKER, NOTEBOOK]))
    assert "vendored inside the Ray wheel: fixed only by a new Ray release (until 2027-03-01)" in md
    assert vulns.markdown(tmp_path, ["sha256:" + "d" * 64]) == []  # other images: none


def test_an_expired_exception_fails_naming_it(tmp_path: Path) -> None:
    exc = exceptions(tmp_path, VENDORED.format(expires="2026-12-05"), OPENSSL)
    v = judge(tmp_path, exc)
    assert [p.split(" (")[0] for p in v.exception_problems] == [f"{exc}: exceptions[0]"]
    assert "expired on 2026-12-05" in v.exception_problems[0]
    assert "GHSA-xxxx-0103-yyyy" in v.refused_cells()[CELL]  # and its finding blocks again


def test_an_exception_that_matches_nothing_fails_naming_it(tmp_path: Path) -> None:
    stale = (
        '  - id: CVE-2025-9999\n    package: libssl3\n    images: ["ray2.60.0-*"]\n'
        "    reason: fixed long ago\n    expires: 2027-01-01\n"
    )
    elsewhere = stale.replace("ray2.60.0-*", "ray2.51.2-*")  # names no image of this push
    exc = exceptions(tmp_path, VENDORED.format(expires="2027-03-01"), OPENSSL, stale, elsewhere)
    v = judge(tmp_path, exc)
    assert len(v.exception_problems) == 1
    assert v.exception_problems[0].startswith(f"{exc}: exceptions[2] (CVE-2025-9999 in libssl3)")
    assert "matches no finding" in v.exception_problems[0]


def test_an_image_without_a_report_is_refused(tmp_path: Path) -> None:
    found = vulns.load_scans([scans(tmp_path, {HEAD: "clean-trivy.json"})])
    v = vulns.judge(IMAGES, found, [], "high", TODAY)
    assert "worker: no scanner report of sha256:bbbbbbbbbbbb" in v.refused_cells()[CELL]


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("  - {id: CVE-1, package: p, images: [x], reason: r}\n", "missing expires"),
        ("  - {id: CVE-1, package: p, images: [x], reason: r, expires: 2027-01-01, by: me}\n",
         "unknown key(s) by"),
        ("  - {id: CVE-1, package: p, images: [], reason: r, expires: 2027-01-01}\n", ".images:"),
        ("  - {id: CVE-1, package: p, images: [x], reason: r, expires: soon}\n",
         ".expires: a date"),
        ("  - {id: CVE-1, package: p, images: [x], reason: r, expires: 2031-01-01}\n",
         "more than a year away"),
        ("  - {id: '', package: p, images: [x], reason: r, expires: 2027-01-01}\n", ".id: must be"),
    ],
)  # fmt: skip
def test_a_bad_exceptions_file_names_the_entry(tmp_path: Path, entry: str, says: str) -> None:
    with pytest.raises(HarnessError, match="exceptions\\[0\\]") as err:
        vulns.load_exceptions(exceptions(tmp_path, entry), TODAY)
    assert says in str(err.value)


def test_reports_that_cannot_be_matched_to_an_image_are_refused(tmp_path: Path) -> None:
    doc = json.loads((DATA / "trivy.json").read_text())
    doc["Metadata"].pop("ImageID")  # e.g. a scan of a filesystem or a tarball
    (tmp_path / "a.json").write_text(json.dumps(doc))
    with pytest.raises(HarnessError, match="names no image id"):
        vulns.parse_report(tmp_path / "a.json")
    (tmp_path / "a.json").write_text('{"hello": 1}')
    with pytest.raises(HarnessError, match="neither Trivy"):
        vulns.parse_report(tmp_path / "a.json")
    d = scans(tmp_path, {HEAD: "trivy.json"})
    (d / "again.json").write_text((d / f"{HEAD[7:19]}.json").read_text())
    with pytest.raises(HarnessError, match="keep one report per image"):
        vulns.load_scans([d])


def test_the_gate_refuses_the_cell_whole(tmp_path: Path) -> None:
    (tmp_path / "matrix.yaml").write_text(
        'ray: ["2.60.0"]\npython: ["3.11.2"]\nvariants: [cpu]\nvulnerabilities: {fail_on: high}\n'
    )
    m = load(tmp_path / "matrix.yaml")
    assert m.vulnerabilities is not None and m.vulnerabilities.fail_on == "high"
    cell = m.cells[0]
    approved = [Approved(cell, role, f"t:{role}", i) for (_, i), role in
                zip(IMAGES, ("head", "worker", "notebook"), strict=True)]  # fmt: skip
    kept, refused, verdict = registry.gate_vulnerabilities(
        m, approved, [], [scans(tmp_path)], TODAY
    )
    assert kept == [] and verdict is not None
    assert [r.cell for r in refused] == [CELL] and "vulnerabilities: " in refused[0].why
    exceptions(tmp_path, VENDORED.format(expires="2027-03-01"), OPENSSL)
    kept, refused, _ = registry.gate_vulnerabilities(m, approved, [], [tmp_path / "scans"], TODAY)
    assert kept == approved and refused == []
