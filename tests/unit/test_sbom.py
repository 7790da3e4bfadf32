"""The SBOM document from an image's measured packages: valid CycloneDX 1.6, the same bytes
for the same image, every package with its package URL, never an empty one."""

from __future__ import annotations

import json
from pathlib import Path

from harness import matrix, sbom
from harness.results import FAILED, PASSED

IMAGE = "sha256:" + "ab" * 32
TAG = "localhost/raycompat/ray-head:2.60.0-py3.11.2-cpu"
FACTS: dict[str, object] = {
    "python": "3.11.2",
    "dpkg": {"libc6": "2.36-9+deb12u9", "libssl3": "3.0.15-1~deb12u1", "tzdata": "2024a-0+deb12u1"},
    "dpkg_arch": {"libc6": "amd64", "libssl3": "amd64", "tzdata": "all"},
    "pip_freeze": ["PyYAML==6.0.2", "aiohttp==3.14.5", "ray==2.60.0"],
    "dpkg_licenses": {"libc6": "GPL-2+, LGPL-2.1+"},
    "python_licenses": {"PyYAML": "MIT License", "ray": "Apache 2.0", "aiohttp": "Apache-2.0"},
    "dpkg_source": {
        "libc6": ["glibc", "2.36-9+deb12u9"],
        "libssl3": ["openssl", "3.0.15-1~deb12u1"],
        "tzdata": ["tzdata", "2024a-0+deb12u1"],
    },
    "os": {"id": "debian", "version": "12.8"},
}


def cell() -> matrix.Cell:
    return matrix.Cell(
        "2.60.0", "3.11.2", matrix.Variant.CPU, matrix.BaseSpec("debian", "bookworm")
    )


def test_valid_deterministic_and_complete() -> None:
    text = sbom.document(cell(), "head", IMAGE, TAG, FACTS, 1735689600)
    assert sbom.validate(text) is None
    assert sbom.document(cell(), "head", IMAGE, TAG, dict(FACTS), 1735689600) == text
    doc = json.loads(text)
    assert doc["metadata"]["timestamp"] == "2025-01-01T00:00:00+00:00"
    assert doc["metadata"]["component"]["bom-ref"] == IMAGE
    props = {p["name"]: p["value"] for p in doc["metadata"]["component"]["properties"]}
    assert props["raycompat:python"] == "3.11.2" and props["raycompat:ray"] == "2.60.0"
    purls = {c["purl"] for c in doc["components"] if c["type"] != "operating-system"}
    assert purls == {
        "pkg:generic/cpython@3.11.2",
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u9?arch=amd64&distro=debian-12.8&upstream=glibc",
        "pkg:deb/debian/libssl3@3.0.15-1~deb12u1?arch=amd64&distro=debian-12.8&upstream=openssl",
        "pkg:deb/debian/tzdata@2024a-0%2Bdeb12u1?arch=all&distro=debian-12.8",
        "pkg:pypi/pyyaml@6.0.2",
        "pkg:pypi/aiohttp@3.14.5",
        "pkg:pypi/ray@2.60.0",
    }
    licences = {c["name"]: c.get("licenses") for c in doc["components"]}
    assert licences["aiohttp"] == [{"license": {"id": "Apache-2.0"}}]
    assert licences["PyYAML"] == [{"license": {"name": "MIT License"}}]
    assert licences["libc6"] == [{"license": {"name": "GPL-2+, LGPL-2.1+"}}]
    # another image: another serial number
    other = json.loads(sbom.document(cell(), "head", "sha256:" + "cd" * 32, TAG, FACTS, 1735689600))
    assert other["serialNumber"] != doc["serialNumber"]


def test_no_package_list_is_no_sbom(tmp_path: Path) -> None:
    broken = {**FACTS, "dpkg": {"error": "FileNotFoundError('dpkg-query')"}}
    c = sbom.check(tmp_path / "head.cdx.json", cell(), "head", IMAGE, TAG, broken, 0)
    assert c.status == FAILED and "no Debian package list" in c.detail
    assert not (tmp_path / "head.cdx.json").exists()
    c = sbom.check(tmp_path / "sbom" / "head.cdx.json", cell(), "head", IMAGE, TAG, FACTS, 0)
    assert c.status == PASSED and c.data["sha256"][:16] in c.detail
    assert sbom.validate((tmp_path / "sbom" / "head.cdx.json").read_text()) is None


def test_an_invalid_document_is_named() -> None:
    assert "specVersion" in str(sbom.validate('{"bomFormat": "CycloneDX"}'))


def test_query_answers_from_the_sboms_kept_by_digest(tmp_path: Path) -> None:
    from harness.registry import ImagesLock, Pushed

    def entry(role: str, d: str) -> Pushed:
        digest = "sha256:" + d * 64
        return Pushed("ray2.60.0-py3.11.2-cpu", "2.60.0", "3.11.2", "cpu", role, TAG, digest,
                      f"r/ray-{role}@{digest}", IMAGE, dated_tag=f"{TAG}-2026120{d}")  # fmt: skip

    now, before, unkept = entry("head", "2"), entry("head", "1"), entry("worker", "3")
    lock = ImagesLock("r", "x", (now, unkept), (before,))
    for e, version in ((now, "6.0.2"), (before, "6.0.1")):
        facts = {**FACTS, "pip_freeze": [f"PyYAML=={version}", "ray==2.60.0"]}
        path = sbom.pushed_path(tmp_path, e.digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sbom.document(cell(), "head", e.digest, TAG, facts, 0))
    found, unsearched = sbom.query(tmp_path, lock, "pyyaml")
    assert [f.split(": ")[-1] for f in found] == ["PyYAML 6.0.2 [pypi]", "PyYAML 6.0.1 [pypi]"]
    assert "(now)" in found[0] and f"(earlier, {TAG}-20261201)" in found[1]
    assert unsearched == [f"{TAG} ({unkept.digest[:19]})"]
    assert sbom.query(tmp_path, lock, "libssl3")[0][0].endswith("libssl3 3.0.15-1~deb12u1 [deb]")
    assert sbom.query(tmp_path, lock, "nosuch")[0] == []


def test_what_trivy_reads_from_it() -> None:
    """What Trivy's CycloneDX decoder (pkg/sbom/io/decode.go) takes from an SBOM: the root's
    ImageID property (the gate matches the report by it), one operating-system component
    whose dependencies are the OS packages, and each Debian package's source name and
    version split as Trivy keeps them (advisories are filed under the source package)."""
    doc = json.loads(sbom.document(cell(), "head", IMAGE, TAG, FACTS, 0))
    root = doc["metadata"]["component"]
    assert {"name": "aquasecurity:trivy:ImageID", "value": IMAGE} in root["properties"]
    systems = [c for c in doc["components"] if c["type"] == "operating-system"]
    assert [(s["name"], s["version"]) for s in systems] == [("debian", "12.8")]
    deps = {d["ref"]: set(d.get("dependsOn", [])) for d in doc["dependencies"]}
    debs = {c["bom-ref"] for c in doc["components"] if c.get("purl", "").startswith("pkg:deb/")}
    assert deps[systems[0]["bom-ref"]] == debs and len(debs) == 3
    assert systems[0]["bom-ref"] in deps[IMAGE] and not deps[IMAGE] & debs
    ssl = next(c for c in doc["components"] if c["name"] == "libssl3")
    assert {p["name"]: p["value"] for p in ssl["properties"]} == {
        "aquasecurity:trivy:SrcName": "openssl",
        "aquasecurity:trivy:SrcVersion": "3.0.15",
        "aquasecurity:trivy:SrcRelease": "1~deb12u1",
    }
    epoch = dict(FACTS, dpkg={"libc6": "1:2.36-9"}, dpkg_arch={"libc6": "amd64"},
                 dpkg_source={"libc6": ["glibc", "1:2.36-9"]})  # fmt: skip
    libc = json.loads(sbom.document(cell(), "head", IMAGE, TAG, epoch, 0))["components"]
    props = {p["name"]: p["value"] for c in libc if c["name"] == "libc6" for p in c["properties"]}
    assert props["aquasecurity:trivy:SrcEpoch"] == "1"
    assert props["aquasecurity:trivy:SrcVersion"] == "2.36"


def test_a_rebuild_is_compared_but_for_its_own_identity() -> None:
    original = sbom.document(cell(), "head", IMAGE, TAG, FACTS, 0)
    scratch = "localhost/raycompat-repro-abc/ray-head:2.60.0-py3.11.2-cpu"
    rebuild = sbom.document(cell(), "head", "sha256:" + "ef" * 32, scratch, FACTS, 0)
    assert rebuild != original and sbom.rebuild_differences(original, rebuild) == []
    moved = dict(FACTS, pip_freeze=["PyYAML==6.0.3", "aiohttp==3.14.5", "ray==2.60.0"])
    changed = sbom.document(cell(), "head", "sha256:" + "ef" * 32, scratch, moved, 0)
    diffs = sbom.rebuild_differences(original, changed)
    assert any("6.0.2" in d for d in diffs) and any("6.0.3" in d for d in diffs)


def test_an_empty_or_malformed_rebuild_sbom_is_a_difference() -> None:
    original = sbom.document(cell(), "head", IMAGE, TAG, FACTS, 0)
    for bad in ("", "{", '{"metadata": {}}', "[]"):
        assert sbom.rebuild_differences(original, bad) != []
        assert sbom.rebuild_differences(bad, original) != []
