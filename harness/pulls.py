"""What a node pulls per image: the compressed layers `push` uploaded (the blobs a
registry stores), recorded per image id in `build/pull-sizes.json` so that `report.md`
can show them next to the unpacked sizes, with the layers a cell's images share.

Only `push` compresses layers (a build would pay ~10 s of CPU per new layer), so an image
that was never pushed has no pull size, and the report says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.files import write_atomic

FILE = "pull-sizes.json"
SCHEMA = 1

Layer = tuple[str, int]  # (digest of the compressed blob, its size in bytes)


def load(build: Path) -> dict[str, list[Layer]]:
    """Image id -> its compressed layers; {} when nothing was recorded or the file is not
    this module's (it is a cache of figures: never a reason to fail)."""
    try:
        doc = json.loads((build / FILE).read_text(encoding="utf-8"))
        if doc.get("schema") != SCHEMA:
            return {}
        return {
            str(image_id): [(str(d), int(s)) for d, s in layers]
            for image_id, layers in doc["images"].items()
        }
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def record(build: Path, images: Mapping[str, Sequence[Layer]]) -> None:
    """Merge these images' layers into build/pull-sizes.json (atomically)."""
    known = load(build)
    known.update({image_id: list(layers) for image_id, layers in images.items()})
    build.mkdir(parents=True, exist_ok=True)
    write_atomic(build / FILE, json.dumps({"schema": SCHEMA, "images": known}, indent=1) + "\n")


def summary(layers: Mapping[str, Sequence[Layer]]) -> str:
    """What a node pulls per image and which layers the images share, e.g. "head 173 MB,
    worker 173 MB, notebook 228 MB (12 layer(s), 173 MB, shared by all 3)"."""
    sizes = ", ".join(f"{role} {sum(s for _, s in b) / 1e6:.0f} MB" for role, b in layers.items())
    sets = {role: {d for d, _ in blobs} for role, blobs in layers.items()}
    common = set.intersection(*sets.values()) if sets else set()
    size = {d: s for blobs in layers.values() for d, s in blobs}
    shared = sum(size[d] for d in common) / 1e6
    return f"{sizes} ({len(common)} layer(s), {shared:.0f} MB, shared by all {len(sets)})"
