"""Credential scan of image history/env/labels, and the disk-space refusal."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from harness import diskspace
from harness.diskspace import GIB
from harness.engine import Engine
from harness.errors import HarnessError
from harness.image_checks import find_secrets

CLEAN = [
    '/bin/sh -c set -eu; "${PYTHON}" -m venv --without-pip "${VIRTUAL_ENV}"; pip install '
    "--no-index --require-hashes -r /tmp/locks/runtime.txt",
    "ENV NVIDIA_REQUIRE_CUDA=cuda>=12.8 PIP_NO_CACHE_DIR=1",
    "LABEL io.raycompat.lock.sha256=9e5f8b3c0ede",
    'CMD ["jupyter", "lab", "--ip=0.0.0.0"]',
    "ARG HF_TOKEN",  # a declared arg without a value is not a leak
]
LEAKS = [
    "RUN curl -H 'x' https://user:hunter2secret@artifacts.example.com/x",
    "ENV API_KEY=sk_live_0123456789abcdef",
    "RUN echo AKIAABCDEFGHIJKLMNOP > /root/.aws",
    "ENV GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "RUN printf '-----BEGIN RSA PRIVATE KEY-----'",
    "ENV DB_PASSWORD='correct-horse-battery'",
]


def test_clean_history_has_no_hits() -> None:
    assert find_secrets(CLEAN) == []


@pytest.mark.parametrize("line", LEAKS)
def test_each_leak_is_found_and_truncated(line: str) -> None:
    [hit] = find_secrets([line])
    assert hit.endswith("...") and len(hit) <= 27


def test_disk_check_refuses_with_numbers(tmp_path: Path) -> None:
    huge = diskspace.Need("images (Docker data root)", tmp_path, 1 << 60)
    with pytest.raises(HarnessError) as info:
        diskspace.check([huge])
    message = str(info.value)
    assert "not enough disk" in message and "GiB is free on" in message and "--only" in message
    diskspace.check([diskspace.Need("wheels", tmp_path, 1)])


def test_disk_refusal_says_what_the_engine_could_give_back(tmp_path: Path) -> None:
    """The numbers come from the engine's own `df`: build cache that no image shares and
    no build uses, and untagged images' own bytes."""
    df = {
        "Images": [
            {"RepoTags": ["<none>:<none>"], "Size": 3 * GIB, "SharedSize": GIB},
            {"RepoTags": None, "Size": GIB, "SharedSize": 0},
            {"RepoTags": ["localhost/raycompat/ray-head:x"], "Size": 9 * GIB, "SharedSize": 0},
        ],
        "BuildCache": [
            {"Size": 2 * GIB, "InUse": False, "Shared": False},
            {"Size": 5 * GIB, "InUse": False, "Shared": True},
            {"Size": 7 * GIB, "InUse": True, "Shared": False},
        ],
    }
    engine = cast(Engine, SimpleNamespace(disk_usage=lambda: df))
    huge = diskspace.Need("images (Docker data root)", tmp_path, 1 << 60)
    with pytest.raises(HarnessError) as info:
        diskspace.check([huge], engine)
    assert str(info.value).endswith(
        "the engine holds 2.0 GiB of build cache no image shares (`docker builder prune`) "
        "and 2 untagged image(s), 3.0 GiB of their own (`docker image prune`)"
    )


def test_the_disk_plan_counts_only_cells_with_an_image_missing(tmp_path: Path) -> None:
    """Tags come from one listing; a tag it does not list (the engine may spell a Docker
    Hub name short) is asked for by name before it counts as missing."""
    from harness import matrix

    m = matrix.load(Path(__file__).parents[2] / "matrix.yaml")
    first, second, third = m.cells[:3]
    tags = {c.id: list(c.tags(m.prefix).values()) for c in (first, second, third)}
    asked: list[str] = []

    def inspect(kind: str, ref: str) -> dict[str, str] | None:
        asked.append(ref)
        return {"Id": "sha256:x"} if ref in tags[second.id] else None

    engine = cast(
        Engine,
        SimpleNamespace(image_tags=lambda: set(tags[first.id]), inspect=inspect),
    )
    needs = diskspace.plan(engine, m, [first, second, third], tmp_path, tmp_path, tmp_path, set())
    [images] = [n for n in needs if n.where == "images (Docker data root)"]
    base = diskspace.BASE_DOCKER if third.base.kind == "debian" else 0
    assert images.bytes == base + diskspace.CELL_DOCKER  # the third cell's alone
    assert not set(asked) & set(tags[first.id])  # listed: never inspected
    assert set(tags[second.id]) <= set(asked)
