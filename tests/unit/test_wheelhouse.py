"""Wheel selection from a wheelhouse shared by cells of different CPythons."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from harness import children
from harness.errors import HarnessError
from harness.matrix import BaseSpec, Cell, Variant
from harness.wheelhouse import Wheelhouse, link_into

NAMES = [
    "ray-2.51.2-cp39-cp39-manylinux2014_x86_64.whl",
    "ray-2.51.2-cp311-cp311-manylinux2014_x86_64.whl",
    "pip-26.3-py3-none-any.whl",
]


def make(tmp_path: Path) -> tuple[Wheelhouse, Path]:
    house = tmp_path / "wheelhouse"
    house.mkdir()
    digests = {}
    for name in NAMES:
        (house / name).write_bytes(name.encode())
        digests[name] = hashlib.sha256(name.encode()).hexdigest()
    lock = tmp_path / "runtime.txt"
    lock.write_text(
        "ray==2.51.2 \\\n"
        + "".join(f"    --hash=sha256:{digests[n]} \\\n" for n in NAMES[:2])
        + f"    --hash=sha256:{'0' * 64}\n"
        + f"pip==26.3 \\\n    --hash=sha256:{digests[NAMES[2]]}\n"
    )
    return Wheelhouse(house), lock


@pytest.mark.parametrize(("python", "ray_wheel"), [("3.9.2", NAMES[0]), ("3.11.2", NAMES[1])])
def test_picks_the_wheel_for_the_cells_cpython(tmp_path: Path, python: str, ray_wheel: str) -> None:
    house, lock = make(tmp_path)
    assert [w.name for w in house.wheels_for(lock, python)] == [ray_wheel, NAMES[2]]


def test_a_pin_with_only_foreign_wheels_is_missing(tmp_path: Path) -> None:
    house, lock = make(tmp_path)
    assert [p.name for p in house.missing(lock, "3.13.5")] == ["ray"]
    with pytest.raises(HarnessError, match=r"no wheel of ray==2\.51\.2 for CPython 3\.13\.5"):
        house.wheels_for(lock, "3.13.5")


@pytest.mark.parametrize("cut", ["", '{"ray-2.51.2-cp39', "[]", '{"pip-26.3-py3-none-any.whl": 1}'])
def test_a_hash_cache_that_is_not_one_is_made_again(tmp_path: Path, cut: str) -> None:
    _, lock = make(tmp_path)
    (tmp_path / "wheelhouse" / ".index.json").write_text(cut)
    again = Wheelhouse(tmp_path / "wheelhouse")
    assert [w.name for w in again.wheels_for(lock, "3.11.2")] == [NAMES[1], NAMES[2]]


def test_link_into_makes_a_fresh_directory(tmp_path: Path) -> None:
    house, lock = make(tmp_path)
    dest = tmp_path / "ctx" / "wheels"
    link_into(house.wheels_for(lock, "3.11.2"), dest)
    link_into(house.wheels_for(lock, "3.9.2"), dest)
    assert sorted(p.name for p in dest.iterdir()) == sorted([NAMES[0], NAMES[2]])


def test_a_download_is_seen_by_the_next_question(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wheelhouse reads its directory once per download, not once per lock: what pip
    just downloaded must still count."""
    house, lock = make(tmp_path)
    name = "ray-2.51.2-cp313-cp313-manylinux2014_x86_64.whl"
    lock.write_text(lock.read_text().replace("0" * 64, hashlib.sha256(name.encode()).hexdigest()))
    assert [p.name for p in house.missing(lock, "3.13.5")] == ["ray"]

    def pip_download(cmd: list[str], **_: Any) -> tuple[int, str, str]:
        (tmp_path / "wheelhouse" / name).write_bytes(name.encode())
        return 0, "", ""

    monkeypatch.setattr(children, "run", pip_download)
    cell = Cell("2.51.2", "3.13.5", Variant.CPU, BaseSpec("debian", "trixie"))
    assert house.fetch(lock, cell) == 1
    assert house.missing(lock, "3.13.5") == []
    assert [w.name for w in house.wheels_for(lock, "3.13.5")] == [name, NAMES[2]]
