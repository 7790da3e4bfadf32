"""Reproducibility and hermeticity, for real: a from-scratch rebuild is identical file by
file, a deliberately changed input is reported as a difference, and a build step that
tries the network fails; and what the built notebook's own layer holds."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from harness.build import BuildFailed, _docker_build
from harness.engine import Engine
from harness.labels import RUN as LABEL_RUN
from tests.conftest import ROOT
from tests.e2e.cli import harness as run_harness

pytestmark = pytest.mark.e2e
ONLY = ["--only", "ray=2.60.0,python=3.11.2,variant=cpu"]
CELL = "ray2.60.0-py3.11.2-cpu"


def harness(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI, then proof that the run left no temporary image or container."""
    run_id = "repro" + uuid.uuid4().hex[:8]
    r = run_harness(*args, run_id=run_id, env=env, timeout=1800)
    assert Engine().ids("image", {LABEL_RUN: run_id}) == [], "temporary images left behind"
    assert Engine().ids("container", {LABEL_RUN: run_id}) == []
    return r


@pytest.fixture(scope="module")
def built() -> None:
    r = harness("build", *ONLY)
    assert r.returncode == 0, r.stderr[-2000:]


def test_rebuild_from_scratch_is_identical(built: None) -> None:
    manifest = ROOT / "build" / "manifests" / CELL / "head.json"
    before = manifest.read_bytes()
    since = datetime.now(timezone.utc)
    r = harness("verify-reproducible", *ONLY)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    # the rebuild's own build cache (every step, no layer cache) went with its images
    assert Engine().build_cache_since(since) == []
    # the rebuild's own build manifests went to a scratch dir: ours still describe our images
    assert manifest.read_bytes() == before
    assert not (ROOT / "build" / "repro").exists() or not any((ROOT / "build" / "repro").iterdir())
    results = json.loads((ROOT / "build" / "reproducibility.json").read_text())[CELL]
    statuses = {c["name"]: c["status"] for c in results}
    assert statuses == {
        "repro:base-rootfs": "passed",
        "repro:head": "passed",
        "repro:worker": "passed",
        "repro:notebook": "passed",
        # the rebuilt images' SBOMs, made by the same probe: the same bytes but for the
        # rebuild's own identity (its image id, serial number and scratch repository)
        "repro:head:sbom": "passed",
        "repro:worker:sbom": "passed",
        "repro:notebook:sbom": "passed",
    }


def test_the_notebook_layer_holds_jupyterlab_once_and_no_file_of_the_runtime(
    built: None, tmp_path: Path
) -> None:
    """trim.py links duplicates among the files a layer wrote: the notebook's layer stores
    JupyterLab's twice-installed static assets once (hard links in the layer), and holds no
    file of the runtime's venv (a link to one would have copied it up)."""
    engine = Engine()
    manifests = ROOT / "build" / "manifests" / CELL
    ids = {
        r: json.loads((manifests / f"{r}.json").read_text())["image"]["id"]
        for r in ("head", "notebook")
    }
    head = engine.inspect("image", ids["head"])
    assert head is not None
    runtime_layers = len(head["RootFS"]["Layers"])  # head adds no layer to the runtime stage
    archive = tmp_path / "notebook.tar"
    with archive.open("wb") as out, engine.save(ids["notebook"]) as image:
        shutil.copyfileobj(image, out)
    with tarfile.open(archive) as outer:
        manifest = outer.extractfile("manifest.json")
        assert manifest is not None
        layers = json.loads(manifest.read())[0]["Layers"]
        assert len(layers) > runtime_layers

        def members(layer: str) -> list[tarfile.TarInfo]:
            inner = outer.extractfile(layer)
            assert inner is not None
            with tarfile.open(fileobj=inner) as tar:
                return tar.getmembers()

        runtime = {
            m.name
            for layer in layers[:runtime_layers]
            for m in members(layer)
            if m.name.startswith("opt/ray/") and (m.isfile() or m.islnk())
        }
        own = [m for layer in layers[runtime_layers:] for m in members(layer)]
    assert len(runtime) > 1000  # the runtime's venv was read
    venv = [m for m in own if m.name.startswith("opt/ray/") and (m.isfile() or m.islnk())]
    assert venv, "the notebook layer installs nothing into the venv?"
    assert [m.name for m in venv if m.name in runtime] == []
    assert [m.linkname for m in venv if m.islnk() and m.linkname in runtime] == []
    # every static asset under share/ is stored once: a link, or what the links point to
    static = [m for m in venv if m.name.startswith("opt/ray/share/jupyter/lab/static/")]
    targets = {m.linkname for m in venv if m.islnk()}
    assert len(static) > 100
    assert [m.name for m in static if not (m.islnk() or m.name in targets)] == []


def test_a_changed_input_is_reported_file_by_file(built: None, tmp_path: Path) -> None:
    """Same matrix and locks, but a Dockerfile that adds one file: the rebuild must differ
    from the existing images by exactly that file, in every role."""
    for name in ("matrix.yaml", "locks", "images"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    dockerfile = tmp_path / "images" / "Dockerfile"
    text = dockerfile.read_text()
    marker = "USER 1000:1000\nWORKDIR /home/ray\n"
    assert marker in text
    dockerfile.write_text(text.replace(marker, "RUN echo canary > /etc/repro-canary\n" + marker, 1))
    env = {"HARNESS_WHEELHOUSE": str(ROOT / ".cache" / "wheelhouse")}
    r = harness("verify-reproducible", *ONLY, "--matrix", str(tmp_path / "matrix.yaml"), env=env)
    assert r.returncode == 1, r.stdout
    results = json.loads((tmp_path / "build" / "reproducibility.json").read_text())[CELL]
    by_name = {c["name"]: c for c in results}
    assert by_name["repro:base-rootfs"]["status"] == "passed"
    for role in ("head", "worker", "notebook"):
        check = by_name[f"repro:{role}"]
        assert check["status"] == "failed"
        assert check["data"]["differences"] == ["+ /etc/repro-canary (only in the rebuild)"]
    assert "+ /etc/repro-canary (only in the rebuild)" in r.stdout


def test_a_build_step_that_uses_the_network_fails(tmp_path: Path) -> None:
    """Builds run with --network none: a RUN that downloads cannot succeed."""
    engine = Engine()
    base = "localhost/raycompat/base:debian-bookworm-py3.11.2"
    assert engine.inspect("image", base) is not None, "build the default cell first"
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE} AS probe\n"
        'RUN python3 -c "import urllib.request; '
        "urllib.request.urlopen('https://pypi.org/simple/', timeout=10)\"\n"
    )
    tag = f"localhost/raycompat/network-probe:{uuid.uuid4().hex[:8]}"
    with pytest.raises(BuildFailed) as info:
        _docker_build(
            engine, tmp_path, "probe", tag, {"BASE_IMAGE": base}, {}, tmp_path / "log", False
        )
    assert "Temporary failure in name resolution" in info.value.tail or "Errno" in info.value.tail
    assert engine.inspect("image", tag) is None
