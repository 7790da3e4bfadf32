"""linux/arm64 beside linux/amd64: per-platform locks and wheels, the registry's image
index, and the QEMU shim. Pure logic; the emulated builds and clusters are in
tests/e2e/test_arm64.py."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from packaging.tags import Tag

from harness import lock, matrix, registry, registry_api
from harness.errors import HarnessError
from harness.inside import QEMU_SHIM_SOURCE
from harness.wheelhouse import supported_tags
from tests.conftest import ROOT

TWO_PLATFORMS = 'ray: ["2.60.0"]\npython: ["3.11.2"]\nplatforms: [linux/amd64, linux/arm64]\n'


def test_pip_platforms_amd64_unchanged_arm64_from_manylinux2014() -> None:
    amd = lock.pip_platforms("amd64")
    assert amd == lock.PIP_PLATFORMS
    assert amd[0] == "manylinux_2_28_x86_64" and amd[-1] == "manylinux1_x86_64"
    arm = lock.pip_platforms("arm64")
    assert arm[0] == "manylinux_2_28_aarch64" and arm[-1] == "manylinux2014_aarch64"
    assert "manylinux_2_17_aarch64" in arm and "manylinux_2_16_aarch64" not in arm


def test_supported_tags_per_architecture() -> None:
    arm = Tag("cp311", "cp311", "manylinux2014_aarch64")
    x86 = Tag("cp311", "cp311", "manylinux2014_x86_64")
    assert arm in supported_tags("3.11.2", "arm64") and x86 not in supported_tags("3.11.2", "arm64")
    assert x86 in supported_tags("3.11.2") and arm not in supported_tags("3.11.2")


def test_arm64_lock_resolves_within_the_amd64_lock(
    write_matrix: Callable[[str], Path], tmp_path: Path
) -> None:
    m = matrix.load(write_matrix(TWO_PLATFORMS))
    amd, arm = m.cells
    root = tmp_path / "locks"
    with pytest.raises(HarnessError, match="lock that cell first"):
        lock.check(root, arm, m)
    shutil.copytree(ROOT / "locks" / amd.id, root / amd.id)
    before = lock.native_lock(root, arm)
    assert before is not None and lock.native_lock(root, amd) is None
    digest = lock.input_digest(arm, m, "runtime", before)
    assert digest != lock.input_digest(arm, m, "runtime", "0" * 64)  # amd64 relock: stale
    assert digest != lock.input_digest(amd, m, "runtime")
    # linux/amd64 input digests are what they were before platforms existed
    assert lock.input_digest(amd, m, "runtime") == lock.input_digest(
        dataclasses.replace(amd, platform="linux/amd64"), m, "runtime"
    )


def test_committed_arm64_locks_pin_the_amd64_versions() -> None:
    m = matrix.load(ROOT / "matrix-arm64.yaml")
    amd, arm = m.cells
    for cell in m.cells:
        lock.check(ROOT / "locks", cell, m)  # present and current
    for kind in lock.KINDS:
        a = {p.name: p.version for p in lock.pins_of(lock.lock_path(ROOT / "locks", amd, kind))}
        b = {p.name: p.version for p in lock.pins_of(lock.lock_path(ROOT / "locks", arm, kind))}
        assert {k: b[k] for k in b if k in a} == {k: a[k] for k in b if k in a}


def manifest(arch: str) -> registry_api.Manifest:
    return registry_api.Manifest(json.dumps({"arch": arch}).encode(), registry_api.MANIFEST_V2)


def test_index_lists_each_platform_by_digest() -> None:
    amd, arm = manifest("amd64"), manifest("arm64")
    index = registry_api.index_of([("linux/amd64", amd), ("linux/arm64", arm)])
    assert index.media_type == registry_api.MANIFEST_LIST
    assert registry_api.index_entries(index) == {
        "linux/amd64": amd.digest,
        "linux/arm64": arm.digest,
    }
    entry = json.loads(index.body)["manifests"][1]
    assert entry["size"] == len(arm.body) and entry["mediaType"] == registry_api.MANIFEST_V2
    assert registry_api.index_entries(amd) == {}  # an image is no index


def test_an_index_of_oci_manifests_is_an_oci_index() -> None:
    """zstd layers need OCI manifests; an index naming them is an OCI index, not a Docker
    list (a Docker list names Docker manifests)."""
    oci = [
        (p, registry_api.Manifest(json.dumps({"arch": p}).encode(), registry_api.OCI_MANIFEST))
        for p in ("linux/amd64", "linux/arm64")
    ]
    index = registry_api.index_of(oci)
    assert index.media_type == json.loads(index.body)["mediaType"] == registry_api.OCI_INDEX
    assert registry_api.index_entries(index) == {p: m.digest for p, m in oci}


def pushed(platforms: tuple[registry.PlatformImage, ...] = ()) -> registry.Pushed:
    digest = "sha256:" + "1" * 64
    return registry.Pushed(
        "ray2.60.0-py3.11.2-cpu", "2.60.0", "3.11.2", "cpu", "head",
        "r/ray-head:2.60.0-py3.11.2-cpu", digest, f"r/ray-head@{digest}", "i", "", platforms,
    )  # fmt: skip


def test_images_lock_records_every_platform_and_reads_schema_2(tmp_path: Path) -> None:
    path = tmp_path / "images.lock.json"
    arm = registry.PlatformImage(
        "linux/arm64", "ray2.60.0-py3.11.2-cpu-arm64", "sha256:" + "2" * 64, "j", "emulated (QEMU)"
    )
    registry.write_lock(path, "r", [pushed((arm,))])
    assert registry.read_lock(path).images[0].platforms == (arm,)
    doc = json.loads(path.read_text())
    assert (
        doc["schema"] == registry.LOCK_SCHEMA == 5
        and doc["images"][0]["platforms"][0]["proven"] == "emulated (QEMU)"
    )
    doc["schema"] = 2  # written before platforms: still read, with none
    del doc["images"][0]["platforms"]
    path.write_text(json.dumps(doc))
    assert registry.read_lock(path).images[0].platforms == ()
    doc["images"][0]["platforms"] = [{"platform": "linux/arm64"}]
    path.write_text(json.dumps(doc))
    with pytest.raises(HarnessError, match="platforms"):
        registry.read_lock(path)


def test_gate_sends_a_multi_arch_tag_whole_or_not_at_all(
    write_matrix: Callable[[str], Path],
) -> None:
    m = matrix.load(write_matrix(TWO_PLATFORMS))
    amd, arm = m.cells
    approved = [registry.Approved(amd, role, f"t-{role}", "i") for role in matrix.ROLES]
    ok, refused = registry._whole_indexes(m, approved, [])
    assert ok == [] and len(refused) == 1
    assert refused[0].cell == amd.id and arm.id in refused[0].why
    both = approved + [registry.Approved(arm, role, f"a-{role}", "j") for role in matrix.ROLES]
    assert registry._whole_indexes(m, both, []) == (both, [])


def test_qemu_shim_finds_the_raylet_behind_the_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shim wraps `_is_raylet_process` of Ray's services module when it is imported."""
    fake: Any = types.ModuleType("ray._private.services")
    fake._is_raylet_process = lambda cmdline: "raylet" in cmdline[0].rsplit("/", 1)[-1]
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    exec(compile(QEMU_SHIM_SOURCE, "qemu_shim.py", "exec"), {})
    finder: Any = sys.meta_path[0]
    spec: Any = types.SimpleNamespace(loader=types.SimpleNamespace(exec_module=lambda m: None))
    monkeypatch.setattr("importlib.machinery.PathFinder.find_spec", lambda name, path: spec)
    assert finder.find_spec("json", None) is None
    assert finder.find_spec("ray._private.services", None) is spec
    spec.loader.exec_module(fake)
    qemu = "/usr/libexec/qemu-binfmt/aarch64-binfmt-P"
    assert fake._is_raylet_process([qemu, "/opt/ray/raylet", "/opt/ray/raylet", "--node_id=a"])
    assert fake._is_raylet_process(["/opt/ray/raylet", "--node_id=ab"])
    assert not fake._is_raylet_process([qemu, "/usr/bin/python3", "python3"])


def test_manifests_name_each_platform_and_how_it_was_proven(tmp_path: Path) -> None:
    """`manifests` pins the index digest and says in each file's header which platforms it
    holds and how each was proven (no engine: the images lock is all it reads)."""
    arm = registry.PlatformImage(
        "linux/arm64", "ray2.60.0-py3.11.2-cpu-arm64", "sha256:" + "2" * 64, "j", "emulated (QEMU)"
    )
    amd = registry.PlatformImage(
        "linux/amd64", "ray2.60.0-py3.11.2-cpu", "sha256:" + "3" * 64, "i", "native"
    )
    images = []
    for n, role in enumerate(matrix.ROLES, start=4):
        digest = "sha256:" + str(n) * 64
        images.append(
            dataclasses.replace(
                pushed((amd, arm)),
                role=role,
                tag=f"r/ray-{role}:2.60.0-py3.11.2-cpu",
                digest=digest,
                ref=f"r/ray-{role}@{digest}",
            )
        )
    registry.write_lock(tmp_path / "images.lock.json", "r", images)
    r = subprocess.run(
        [
            *(
                sys.executable,
                "-m",
                "harness",
                "manifests",
                "--matrix",
                str(ROOT / "matrix-arm64.yaml"),
            ),
            *("--build-dir", str(tmp_path), "--images-lock", str(tmp_path / "images.lock.json")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    text = (tmp_path / "deploy" / "ray2.60.0-py3.11.2-cpu" / "raycluster.yaml").read_text()
    assert "# platforms: linux/amd64 (native), linux/arm64 (emulated (QEMU))\n" in text
    head = "r/ray-head@sha256:" + str(4 + matrix.ROLES.index("head")) * 64
    assert f"image: {head}\n" in text
