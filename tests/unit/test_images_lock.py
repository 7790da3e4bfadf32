"""images.lock.json keeps the history of what each plain tag named: a patch rebuild's push
moves the entry and keeps the older digest on record; a push of the same digest does not."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from harness import diff, registry
from harness.errors import HarnessError
from harness.registry import Pushed

REG = "127.0.0.1:5000/raycompat"


def entry(digest: str, day: str) -> Pushed:
    tag = f"{REG}/ray-head:2.60.0-py3.11.2-cpu"
    return Pushed(
        "ray2.60.0-py3.11.2-cpu", "2.60.0", "3.11.2", "cpu", "head", tag, "sha256:" + digest * 64,
        f"{REG}/ray-head@sha256:{digest * 64}", "sha256:" + digest * 64, "", (),
        f"{tag}-{day}", f"{day[:4]}-{day[4:6]}-{day[6:]}T05:00:00Z",
    )  # fmt: skip


def test_a_moved_digest_goes_to_history_newest_first(tmp_path: Path) -> None:
    path = tmp_path / "images.lock.json"
    a, b, c = entry("a", "20261129"), entry("b", "20261206"), entry("c", "20261213")
    registry.write_lock(path, REG, [a])
    registry.write_lock(path, REG, [a])  # the same digest again: nothing moved
    assert registry.read_lock(path).history == ()
    registry.write_lock(path, REG, [b])
    lock = registry.write_lock(path, REG, [c])
    assert lock.images == (c,) and lock.history == (b, a)
    assert registry.read_lock(path) == lock
    d = diff.diff(diff.pushed_images([a]), diff.pushed_images([c]))
    assert d.identity_changed == [] and "digest moved" in d.text()


def test_a_schema_3_lock_is_still_read(tmp_path: Path) -> None:
    doc = dataclasses.asdict(entry("a", "20261129"))
    del doc["dated_tag"], doc["pushed_at"]
    path = tmp_path / "images.lock.json"
    path.write_text(json.dumps({"schema": 3, "registry": REG, "updated": "x", "images": [doc]}))
    lock = registry.read_lock(path)
    assert lock.images[0].dated_tag == "" and lock.history == ()


def test_the_layers_compression_is_recorded_and_a_diff_tells_a_recompression_apart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "images.lock.json"
    gz = dataclasses.replace(entry("a", "20261129"), layers="gzip")
    registry.write_lock(path, REG, [gz])
    assert registry.read_lock(path).images[0].layers == "gzip"
    assert json.loads(path.read_text())["schema"] == 5
    # the same image uploaded with zstd layers: another digest, the same image id
    zs = dataclasses.replace(entry("b", "20261206"), image_id=gz.image_id, layers="zstd")
    same = diff.diff(diff.pushed_images([gz]), diff.pushed_images([zs])).text()
    assert "digest moved" in same and "the same image" in same and "gzip -> zstd" in same
    rebuilt = dataclasses.replace(zs, image_id="sha256:" + "c" * 64)
    other = diff.diff(diff.pushed_images([gz]), diff.pushed_images([rebuilt])).text()
    assert "another image" in other and "the same image" not in other
    # schema 4 had no such field: read as not recorded, and the diff says only what it knows
    doc = dataclasses.asdict(gz)
    del doc["layers"]
    path.write_text(json.dumps({"schema": 4, "registry": REG, "updated": "x", "images": [doc]}))
    old = registry.read_lock(path).images[0]
    assert old.layers == ""
    said = diff.diff(diff.pushed_images([old]), diff.pushed_images([zs])).text()
    assert "the same image" in said and "->" in said and "gzip -> zstd" not in said


def test_a_lock_naming_an_unknown_compression_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "images.lock.json"
    doc = {**dataclasses.asdict(entry("a", "20261129")), "layers": "brotli"}
    path.write_text(json.dumps({"schema": 5, "registry": REG, "updated": "x", "images": [doc]}))
    with pytest.raises(HarnessError, match=r"images\[0\]\.layers: 'brotli'"):
        registry.read_lock(path)
