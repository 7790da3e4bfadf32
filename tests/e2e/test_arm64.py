"""linux/arm64 under QEMU emulation, for real (matrix-arm64.yaml: the default matrix's
ray2.60.0-py3.11.2-cpu cell on linux/amd64 and linux/arm64).

- `e2e` (in `.ci/run`): the arm64 cell builds offline on this x86_64 host (its own
  mmdebstrap --arch=arm64 base, aarch64 wheels) and its structure checks run under
  emulation: every image is linux/arm64 and `platform.machine()` inside says aarch64.
- `emulated` (outside `.ci/run`: ~8 min here; `nox -s tests -- -m emulated`): the arm64
  cell's cluster end to end under emulation, then one multi-arch tag per role pushed to a
  local registry, its index listing both platforms, each pulled back by digest.
Needs `scripts/setup-engine.sh` (qemu-user-static and the binfmt_misc handler).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import k8s
from harness.engine import Engine
from harness.labels import RUN as LABEL_RUN
from harness.matrix import ROLES
from tests.conftest import ROOT
from tests.e2e.cli import harness
from tests.e2e.test_registry import (
    MANIFEST_LIST,
    manifest,
    manifest_digest,
    registry,  # noqa: F401 (the local registry fixture)
)

MATRIX = str(ROOT / "matrix-arm64.yaml")
AMD = "ray2.60.0-py3.11.2-cpu"
ARM = "ray2.60.0-py3.11.2-cpu-arm64"
SUFFIX = "2.60.0-py3.11.2-cpu"


def cells(build: Path) -> dict[str, dict[str, Any]]:
    doc = json.loads((build / "report.json").read_text())
    return {c["id"]: c for c in doc["cells"]}


@pytest.mark.e2e
def test_arm64_cell_builds_offline_and_its_structure_checks_run_emulated(
    tmp_path: Path,
) -> None:
    run_id = "arm" + uuid.uuid4().hex[:8]
    r = harness(
        "build", "--matrix", MATRIX, "--only", "platform=linux/arm64",
        "--build-dir", str(tmp_path), run_id=run_id,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    cell = cells(tmp_path)[ARM]
    assert cell["status"] == "built" and cell["platform"] == "linux/arm64"
    checks = {c["name"]: c for c in cell["checks"]}
    engine = Engine()
    for role in ROLES:
        platform = checks[f"image:{role}:platform"]
        assert platform["status"] == "passed", platform
        assert "platform.machine() aarch64" in platform["detail"]
        assert checks[f"image:{role}:python"]["status"] == "passed"
        assert checks[f"image:{role}:ray"]["status"] == "passed"
        assert checks[f"image:{role}:base-layer"]["status"] == "passed"
        info = engine.inspect("image", f"localhost/raycompat/ray-{role}:{SUFFIX}-arm64") or {}
        assert (info.get("Os"), info.get("Architecture")) == ("linux", "arm64")
    failed = [c["name"] for c in cell["checks"] if c["status"] in ("failed", "error")]
    assert failed == []
    assert "linux/arm64 (emulated)" in (tmp_path / "report.md").read_text()
    assert engine.ids("container", {LABEL_RUN: run_id}) == []


@pytest.mark.emulated
def test_arm64_end_to_end_and_one_multi_arch_tag_per_role(
    registry: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    run_id = "arm" + uuid.uuid4().hex[:8]
    build = ["--matrix", MATRIX, "--build-dir", str(tmp_path)]
    for command in ("build", "test"):
        r = harness(command, *build, run_id=run_id, timeout=3600)
        assert r.returncode == 0, r.stderr[-3000:]
    found = cells(tmp_path)
    for cell_id in (AMD, ARM):
        bad = [c["name"] for c in found[cell_id]["checks"] if c["status"] in ("failed", "error")]
        assert found[cell_id]["status"] == "passed" and bad == [], (cell_id, bad)
    arm = {c["name"]: c for c in found[ARM]["checks"]}
    # parity on every node and real work, on aarch64 nodes
    for name in (
        "client:parity",
        "workload:tasks",
        "workload:actor",
        "workload:object",
        "jobs:submit",
    ):
        assert arm[name]["status"] == "passed", arm[name]
    assert arm["driver:connect"]["status"] == "skipped"  # with why: Ray's fixed 15 s wait
    assert "QEMU" in arm["driver:connect"]["detail"]
    assert Engine().ids("container", {LABEL_RUN: run_id}) == []

    r = harness("push", *build, run_id=run_id, env={"RAYCOMPAT_REGISTRY": registry})
    assert r.returncode == 0, r.stderr[-3000:]
    lock = json.loads((tmp_path / "images.lock.json").read_text())
    entries = {e["role"]: e for e in lock["images"]}
    assert set(entries) == set(ROLES) and {e["cell"] for e in lock["images"]} == {AMD}
    engine = Engine()
    for role, e in entries.items():
        assert e["tag"] == f"{registry}/ray-{role}:{SUFFIX}"
        listed = manifest(
            registry, f"ray-{role}", SUFFIX, MANIFEST_LIST
        )  # the one tag is an index ...
        assert e["digest"] == "sha256:" + manifest_digest(
            registry, f"ray-{role}", SUFFIX, MANIFEST_LIST
        )
        by_platform = {
            f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
            for m in listed["manifests"]
        }
        # ... of both platforms, each the tested image
        platforms = {p["platform"]: p for p in e["platforms"]}
        assert set(by_platform) == set(platforms) == {"linux/amd64", "linux/arm64"}
        assert platforms["linux/arm64"]["proven"] == "emulated (QEMU)"
        assert platforms["linux/amd64"]["proven"] == "native"
        for platform, p in platforms.items():
            assert by_platform[platform] == p["digest"]
            tested = found[p["cell"]]["tested_image_ids"][role]
            pulled = engine.inspect("image", f"{registry}/ray-{role}@{p['digest']}") or {}
            assert pulled.get("Id") == tested == p["image_id"]
            assert pulled.get("Architecture") == platform.split("/")[1]

    # operators' manifests pin the index digest
    r = harness("manifests", *build, "--namespace", "ray")
    assert r.returncode == 0, r.stderr[-2000:]
    rc = yaml.safe_load((tmp_path / "deploy" / AMD / "raycluster.yaml").read_text())
    assert k8s.validate(rc) == []
    head = rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    assert head == entries["head"]["ref"] and head.endswith(entries["head"]["digest"])
