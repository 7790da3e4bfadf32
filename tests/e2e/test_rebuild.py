"""Rebuilds leave no garbage behind, for real: when an input changes, `build` replaces a
cell's images and removes the ones they replaced, unless another tag still names one."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import uuid
from pathlib import Path

import pytest

from harness import image_checks, labels, matrix
from harness.base import _load_rootfs, drop_replaced, replaced
from harness.engine import Engine
from harness.matrix import ROLES
from tests.conftest import ROOT
from tests.e2e.test_failures import (
    WHEELHOUSE,
    copy_project,
    derive_image,
    remove_prefix,
    run,
)

pytestmark = pytest.mark.e2e
SUFFIX = "2.60.0-py3.11.2-cpu"
BASE = "base:debian-bookworm-py3.11.2"


def test_a_rebuild_removes_the_images_it_replaced(tmp_path: Path) -> None:
    prefix = "localhost/raycompat-e2erebuild"
    matrix = copy_project(tmp_path, prefix)
    engine = Engine()
    # the default project's base under the test prefix: same key, so no rootfs is rebuilt
    engine.tag(f"localhost/raycompat/{BASE}", f"{prefix}/{BASE}")
    only = ["--matrix", str(matrix), "--only", "ray=2.60.0,python=3.11.2,variant=cpu"]
    kept = f"{prefix}/kept:head"
    try:
        first = run("build", *only, run_id="rebuild" + uuid.uuid4().hex[:8], env=WHEELHOUSE)
        assert first.returncode == 0, first.stderr[-2000:]
        before = {
            r: str((engine.inspect("image", f"{prefix}/ray-{r}:{SUFFIX}") or {})["Id"])
            for r in ROLES
        }
        engine.tag(before["head"], kept)  # someone else's name for the old head image

        # a no-op build reuses the structure checks of the images it checked, unless they
        # were recorded by other check code (a harness upgrade): then it runs them again
        again = run("build", *only, run_id="rebuild" + uuid.uuid4().hex[:8], env=WHEELHOUSE)
        assert again.returncode == 0, again.stderr[-2000:]
        assert "structure checks head ..." not in again.stderr
        state = tmp_path / "build" / "state.json"
        doc = json.loads(state.read_text())
        for cell in doc["cells"]:
            for image in cell["images"]:
                assert image["checked_with"] == image_checks.fingerprint()
                image["checked_with"] = "an-older-harness"
        state.write_text(json.dumps(doc))
        rechecked = run("build", *only, run_id="rebuild" + uuid.uuid4().hex[:8], env=WHEELHOUSE)
        assert rechecked.returncode == 0, rechecked.stderr[-2000:]
        assert all(f"structure checks {r} ..." in rechecked.stderr for r in ROLES)
        assert "build head ->" not in rechecked.stderr  # the same images: only checked again

        # any change to the recipe changes every role's build key (the layers come from
        # the build cache): three new images under the same tags
        dockerfile = tmp_path / "images" / "Dockerfile"
        dockerfile.write_text(dockerfile.read_text() + "# changed\n")
        # a base an earlier build replaced (a new key took its tag) and nothing builds on
        stale = tiny_base(tmp_path, f"{prefix}/base:stale")
        tiny_base(tmp_path, f"{prefix}/base:stale")  # ... and a new one took its tag
        second = run("build", *only, run_id="rebuild" + uuid.uuid4().hex[:8], env=WHEELHOUSE)
        assert second.returncode == 0, second.stderr[-2000:]

        after = {
            r: str((engine.inspect("image", f"{prefix}/ray-{r}:{SUFFIX}") or {})["Id"])
            for r in ROLES
        }
        for role in ROLES:
            assert after[role] != before[role], f"{role} was not rebuilt"
        for role in ("worker", "notebook"):
            assert engine.inspect("image", before[role]) is None, f"old {role} image left behind"
            assert f"ray-{role}:{SUFFIX}: removed the image it replaced" in second.stderr
        # the old head image still has a name: it stays, and nothing claims to remove it
        assert (engine.inspect("image", kept) or {}).get("Id") == before["head"]
        assert f"ray-head:{SUFFIX}: removed the image it replaced" not in second.stderr
        assert engine.inspect("image", stale) is None, "a replaced base left behind"
        assert f"no tag names any more ({stale.removeprefix('sha256:')[:12]})" in second.stderr
    finally:
        engine.untag(kept)
        remove_prefix(prefix)


def tiny_base(tmp_path: Path, ref: str) -> str:
    """A one-file 'Debian base' loaded as the harness loads one (one layer, one history
    entry, its labels), tagged `ref`; its id."""
    m = matrix.load(ROOT / "matrix.yaml")
    rootfs = tmp_path / f"rootfs-{uuid.uuid4().hex[:8]}.tar"
    with tarfile.open(rootfs, "w") as tar:
        data = f"a rootfs {uuid.uuid4()}\n".encode()  # a new image id every time
        info = tarfile.TarInfo("etc/raycompat-e2e")
        info.size, info.mtime = len(data), m.source_date_epoch
        tar.addfile(info, io.BytesIO(data))
    digest = hashlib.sha256(rootfs.read_bytes()).hexdigest()
    base_labels = {
        labels.MANAGED: "base",
        labels.PYTHON: "3.11.2",
        labels.BASE_SOURCE: "debian:bookworm",
    }
    _load_rootfs(Engine(), rootfs, digest, ref, "amd64", base_labels, m)
    return str((Engine().inspect("image", ref) or {})["Id"])


def test_a_base_no_tag_names_goes_unless_a_container_uses_it(tmp_path: Path) -> None:
    """What a rebuilt base leaves behind: the old base, untagged once the new one takes its
    tag. It goes unless a container uses it; the images built on it keep working (BuildKit
    records no parent: they share its layer, which the engine keeps while any uses it). A
    user's image built FROM it inherits its labels, yet is never taken for a base."""
    prefix = "localhost/raycompat-e2ereplaced"
    run_id = "replaced" + uuid.uuid4().hex[:8]
    engine = Engine()
    old = tiny_base(tmp_path, f"{prefix}/base:1")
    mine = ""
    try:
        derive_image(tmp_path, f"{prefix}/base:1", "LABEL cell=old", f"{prefix}/ray-head:old")
        derive_image(tmp_path, f"{prefix}/base:1", "LABEL made=by-a-user", f"{prefix}/mine:1")
        mine = str((engine.inspect("image", f"{prefix}/mine:1") or {})["Id"])
        derive_image(tmp_path, f"{prefix}/base:1", "LABEL made=again", f"{prefix}/mine:1")
        assert old not in replaced(engine)  # tagged: the base in use
        new = tiny_base(tmp_path, f"{prefix}/base:1")  # a rebuilt base takes the tag
        assert new != old and not (engine.inspect("image", old) or {}).get("RepoTags")
        assert old in replaced(engine)
        assert mine not in replaced(engine), "a user's untagged image taken for a base"

        container = engine.create(old, ["true"], labels_={labels.RUN: run_id})
        drop_replaced(engine)
        assert engine.inspect("image", old) is not None, "removed while a container uses it"
        engine.remove("container", container)
        assert drop_replaced(engine) >= 1
        assert engine.inspect("image", old) is None
        assert engine.inspect("image", mine) is not None  # the user's own, untouched
        child = engine.inspect("image", f"{prefix}/ray-head:old") or {}
        assert child.get("RootFS", {}).get("Layers"), "an image built on it lost its layer"
    finally:
        engine.remove_labelled({labels.RUN: run_id})
        remove_prefix(prefix)
        for leftover in (mine, old):
            if leftover:
                engine.untag(leftover, force=True)
