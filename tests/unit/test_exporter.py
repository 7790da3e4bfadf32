"""`docker save` archives into registry blobs, without Docker: a saved image whose two
layers are identical (docker writes the second as a symlink to the first)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import IO, Any

from harness.registry_api import Exporter


def empty_layer() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w"):
        pass
    return buf.getvalue()


def saved_image() -> tuple[str, bytes]:
    """A docker-save archive: config, two layer dirs, the second a symlink to the first."""
    layer = empty_layer()
    diff = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [diff, diff]}}).encode()
    image_id = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = [{"Config": f"{image_id[7:]}.json", "Layers": ["a/layer.tar", "b/layer.tar"]}]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (
            ("a/layer.tar", layer),
            (f"{image_id[7:]}.json", config),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("b/layer.tar")
        link.type, link.linkname = tarfile.SYMTYPE, "../a/layer.tar"
        tar.addfile(link)
    return image_id, buf.getvalue()


class SavingEngine:
    def __init__(self, archive: bytes) -> None:
        self.archive = archive

    def save(self, image_id: str, timeout: float = 0) -> IO[bytes]:
        return io.BytesIO(self.archive)


def test_a_repeated_layer_is_the_same_blob_twice(tmp_path: Path) -> None:
    image_id, archive = saved_image()
    engine: Any = SavingEngine(archive)
    exported = Exporter(engine, tmp_path).export(image_id)
    assert len(exported.layers) == 2
    assert exported.layers[0] == exported.layers[1]
    assert exported.config.digest == image_id


def test_pull_sizes_name_each_image_and_what_they_share() -> None:
    from harness import pulls

    base, runtime = ("sha256:" + "a" * 64, 40_000_000), ("sha256:" + "b" * 64, 133_000_000)
    nodes = [base, runtime]
    line = pulls.summary(
        {"head": nodes, "worker": nodes, "notebook": [*nodes, ("sha256:" + "c" * 64, 55_000_000)]}
    )
    assert line == (
        "head 173 MB, worker 173 MB, notebook 228 MB (2 layer(s), 173 MB, shared by all 3)"
    )
