"""Every image's SBOM, made by `build` from the image itself: valid CycloneDX, listing the
Python micro, Ray, every locked Python package and every locked Debian package, and the
same bytes when made again from the same image."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from harness import base, debian_lock, lock, matrix, sbom
from harness.engine import Engine
from harness.image_checks import run_probe
from harness.probe_client import STRUCTURE_ARGS
from tests.conftest import ROOT
from tests.e2e.cli import harness

pytestmark = pytest.mark.e2e
CELL = "ray2.60.0-py3.11.2-cpu"


def test_every_image_has_a_valid_complete_deterministic_sbom(tmp_path: Path) -> None:
    build = tmp_path / "build"
    r = harness(
        "build", "--only", "ray=2.60.0,python=3.11.2,variant=cpu", "--build-dir", str(build)
    )
    assert r.returncode == 0, r.stderr[-3000:]
    m = matrix.load(ROOT / "matrix.yaml")
    cell = m.cell(CELL)
    debs = debian_lock.read(base.lock_file(m, "bookworm", "3.11.2"))[1]
    report = json.loads((build / "report.json").read_text())
    checks = {c["name"]: c for c in next(c for c in report["cells"] if c["id"] == CELL)["checks"]}
    engine = Engine()
    for role in ("head", "worker", "notebook"):
        path = build / "sbom" / CELL / f"{role}.cdx.json"
        text = path.read_text()
        assert sbom.validate(text) is None
        assert checks[f"image:{role}:sbom"]["status"] == "passed"
        assert (
            checks[f"image:{role}:sbom"]["data"]["sha256"]
            == hashlib.sha256(text.encode()).hexdigest()
        )
        doc = json.loads(text)
        found = {
            (c["purl"].split("/")[0], c["name"].lower(), c["version"])
            for c in doc["components"]
            if "purl" in c
        }
        # what a scanner reading the SBOM needs (`trivy sbom`): the system it is, the image
        # id to report, each Debian package's source package
        systems = [(c["name"], c["version"]) for c in doc["components"] if "purl" not in c]
        assert len(systems) == 1 and systems[0][0] == "debian"
        assert systems[0][1].startswith("12."), systems
        root = {p["name"]: p["value"] for p in doc["metadata"]["component"]["properties"]}
        assert root["aquasecurity:trivy:ImageID"] == checks[f"image:{role}:sbom"]["image_id"]
        ssl = next(c for c in doc["components"] if c["name"] == "libssl3")
        assert "upstream=openssl" in ssl["purl"]
        names = {(kind, n) for kind, n, _ in found}
        assert ("pkg:generic", "cpython", "3.11.2") in found
        assert ("pkg:pypi", "ray", "2.60.0") in found
        kind = "notebook" if role == "notebook" else "runtime"
        pins = lock.pins_of(lock.lock_path(ROOT / "locks", cell, kind))
        missing = [p.name for p in pins if ("pkg:pypi", p.name) not in names
                   and ("pkg:pypi", p.name.replace("-", "_")) not in names]  # fmt: skip
        # the one pin the notebook image drops on purpose (images/Dockerfile says why): the
        # SBOM is of the image, so it is not there either
        assert missing == (["rfc3987-syntax"] if role == "notebook" else [])
        assert [d.name for d in debs if ("pkg:deb", d.name, d.version) not in found] == []
        # the same image, measured again: the same bytes
        tag = cell.tag(m.prefix, role)
        image_id = (engine.inspect("image", tag) or {})["Id"]
        facts = run_probe(engine, tag, STRUCTURE_ARGS)
        assert sbom.document(cell, role, image_id, tag, facts, m.source_date_epoch) == text
