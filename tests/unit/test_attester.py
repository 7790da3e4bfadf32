"""What push signs with, and that it never records an image it cannot verify: the attester
refuses a missing or altered SBOM and a digest that does not verify after signing (cosign
itself is faked here; the e2e registry test signs and verifies for real)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from harness import matrix, report, signing
from harness.commands import push
from harness.errors import HarnessError
from harness.registry import Approved
from harness.results import PASSED, CellResult, CellStatus, Check
from tests.conftest import ROOT

DIGEST = "sha256:" + "d" * 64
REF = f"127.0.0.1:5000/raycompat/ray-head@{DIGEST}"


def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, problems: list[str]) -> Any:
    m = matrix.load(ROOT / "matrix.yaml")
    cell = m.cell("ray2.60.0-py3.11.2-cpu")
    build = tmp_path / "build"
    sbom = build / "sbom" / cell.id / "head.cdx.json"
    sbom.parent.mkdir(parents=True)
    sbom.write_text('{"bomFormat": "CycloneDX"}\n')
    manifest = build / "manifests" / cell.id / "head.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"image": {"tag": "t"}, "inputs": {}}))
    made = Check("image:head:sbom", PASSED, "", "build",
                 {"sha256": hashlib.sha256(sbom.read_bytes()).hexdigest()})  # fmt: skip
    result = CellResult(cell.id, cell.ray, cell.python, cell.variant, CellStatus.PASSED,
                        build_checks=[made])  # fmt: skip
    rep = report.Report(build / "report.json", "2026-12-06T00:00:00Z", "r", {cell.id: result})
    signed: list[str] = []
    monkeypatch.setattr(signing, "verifier_for", lambda s, w: signing.Verifier(key="k.pub"))
    monkeypatch.setattr(signing, "sign", lambda s, ref, preds: signed.append(ref))
    monkeypatch.setattr(signing, "verify", lambda v, ref: (problems, {}))
    monkeypatch.setattr(signing, "stored", lambda ref: ("sha256:sig", "sha256:att"))
    attest = push._attester(signing.Signer("k.key"), {cell.id: result}, {cell.id: rep},
                            m.path, "run", tmp_path / "work")  # fmt: skip
    return attest, Approved(cell, "head", "t", "sha256:" + "e" * 64), sbom, signed


def test_a_verified_digest_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    attest, approved, _, signed = setup(tmp_path, monkeypatch, [])
    assert attest(approved, REF) == ("key k.key", "sha256:sig", "sha256:att")
    assert signed == [REF]


def test_a_digest_that_does_not_verify_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attest, approved, _, signed = setup(tmp_path, monkeypatch, ["signature: no matching"])
    with pytest.raises(HarnessError, match="does not verify: signature: no matching"):
        attest(approved, REF)
    assert signed == [REF]  # signed, then refused: push moves no tag and records nothing


def test_an_altered_or_missing_sbom_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attest, approved, sbom, signed = setup(tmp_path, monkeypatch, [])
    sbom.write_text('{"bomFormat": "CycloneDX", "altered": true}\n')
    with pytest.raises(HarnessError, match="not the SBOM its build recorded"):
        attest(approved, REF)
    sbom.unlink()
    with pytest.raises(HarnessError, match="no SBOM from its build"):
        attest(approved, REF)
    assert signed == []
