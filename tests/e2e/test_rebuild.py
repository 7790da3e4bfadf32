"""Rebuilds leave no garbage behind, for real: when an input changes, `build` replaces a
cell's images and removes the ones they replaced, unless another tag still names one."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from harness import image_checks
from harness.engine import Engine
from harness.matrix import ROLES
from tests.e2e.test_failures import WHEELHOUSE, copy_project, remove_prefix, run

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
    finally:
        engine.untag(kept)
        remove_prefix(prefix)
