"""sdist-only dependencies: how uv's refusal is read, what the image's lock accepts."""

from __future__ import annotations

import io
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from harness import lock, matrix, sdists
from harness.errors import HarnessError
from harness.wheelhouse import Wheelhouse

UV_SAYS = """error: No solution found when resolving dependencies
  cause: Because gpustat>=1.0.0 has no usable wheels and ray[default]==2.9.3 depends on
         gpustat>=1.0.0, we can conclude that ray[default]==2.9.3 cannot be used.
hint: Wheels are required for `gpustat` because building from source is disabled"""
LOCK = """# input-sha256: abc
# sdists: gpustat
gpustat==1.1.1 \\
    --hash=sha256:c18d3ed5518fc16300c42d694debc70aebb3be55cae91f1db64d63b5fa8af9d8
    # via ray
psutil==7.0.0 \\
    --hash=sha256:1111111111111111111111111111111111111111111111111111111111111111
"""


def test_uvs_refusal_names_the_package_without_wheels() -> None:
    m = lock._NO_WHEELS.search(" ".join(UV_SAYS.split()))
    assert m is not None and m.group(1) == "gpustat"


def test_a_lock_names_its_sdists(tmp_path: Path) -> None:
    path = tmp_path / "runtime.txt"
    path.write_text(LOCK)
    assert lock.sdist_names(path) == {"gpustat"}
    assert [p.name for p in sdists.pins(path)] == ["gpustat"]
    (tmp_path / "plain.txt").write_text(LOCK.replace("# sdists: gpustat\n", ""))
    assert lock.sdist_names(tmp_path / "plain.txt") == set()


def test_the_images_lock_also_accepts_the_built_wheel(tmp_path: Path) -> None:
    wheel = tmp_path / "gpustat-1.1.1-py3-none-any.whl"
    wheel.write_bytes(b"a wheel")
    out = sdists.with_wheel_hashes(LOCK, {"gpustat": wheel})
    import hashlib

    digest = hashlib.sha256(b"a wheel").hexdigest()
    assert f"gpustat==1.1.1 --hash=sha256:{digest} \\\n    --hash=sha256:c18d3" in out
    assert lock.parse(out)[0].hashes == {
        digest,
        "c18d3ed5518fc16300c42d694debc70aebb3be55cae91f1db64d63b5fa8af9d8",
    }
    assert out.count("--hash=") == LOCK.count("--hash=") + 1  # psutil untouched


def test_build_requirements_come_from_the_sdist_or_pep_518s_default(tmp_path: Path) -> None:
    def sdist(pyproject: str | None) -> Path:
        path = tmp_path / f"x-{len(list(tmp_path.iterdir()))}.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            files = {"x-1/setup.py": "", **({"x-1/pyproject.toml": pyproject} if pyproject else {})}
            for name, text in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(text.encode())
                tar.addfile(info, io.BytesIO(text.encode()))
        return path

    declared = '[build-system]\nrequires = ["setuptools>=61", "setuptools-scm"]\n'
    assert sdists.build_requires(sdist(declared)) == ["setuptools>=61", "setuptools-scm"]
    assert sdists.build_requires(sdist(None)) == sdists.DEFAULT_BACKEND
    assert sdists.build_requires(sdist("[tool.x]\n")) == sdists.DEFAULT_BACKEND


def test_a_built_wheel_is_found_by_its_sdists_hash_per_python_and_arch(tmp_path: Path) -> None:
    house = Wheelhouse(tmp_path)
    folder = house.built_dir("c" * 64, "3.9.2", "amd64")
    folder.mkdir(parents=True)
    (folder / "g-1-py3-none-any.whl").write_bytes(b"w")
    assert house.built("c" * 64, "3.9.2", "amd64") is None  # no record: an unfinished build
    (folder / "record.json").write_text('{"wheel": "g-1-py3-none-any.whl"}')
    assert house.built("c" * 64, "3.9.2", "amd64") == folder / "g-1-py3-none-any.whl"
    assert house.built("c" * 64, "3.11.2", "amd64") is None
    assert house.built("c" * 64, "3.9.2", "arm64") is None


def test_lock_takes_a_package_without_wheels_as_its_sdist(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uv's 'has no usable wheels' makes lock ask again with --no-binary for that package,
    and the lock names it; any other refusal is said as it is."""
    from harness import children, matrix

    asked: list[list[str]] = []

    def uv(cmd: list[str], **_: object) -> tuple[int, str, str]:
        asked.append(cmd)
        if "--no-binary" not in cmd:
            return 1, "", UV_SAYS
        Path(cmd[cmd.index("--output-file") + 1]).write_text(LOCK.split("\n", 2)[2])
        return 0, "", ""

    monkeypatch.setattr(children, "bounded", uv)
    cell = matrix.Cell("2.9.3", "3.9.2", matrix.Variant.CPU, matrix.BaseSpec("debian", "bullseye"))
    body, names = lock._uv_compile(["ray[default]==2.9.3"], cell, None)
    assert names == ["gpustat"] and "gpustat==1.1.1" in body
    assert asked[1][asked[1].index("--no-binary") + 1] == "gpustat"
    monkeypatch.setattr(children, "bounded", lambda cmd, **_: (1, "", UV_SAYS))
    with pytest.raises(HarnessError, match="has no usable wheels"):
        lock.compile_requirements(["ray[default]==2.9.3"], cell)  # build requirements: wheels only


def test_two_cells_pinning_one_sdist_build_its_wheel_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cells build at once, each its own sdists: the second waits for the first's wheel."""
    house = Wheelhouse(tmp_path)
    lock_file = tmp_path / "runtime.txt"
    lock_file.write_text(LOCK)
    pin = sdists.pins(lock_file)[0]
    sha = sorted(pin.hashes)[0]
    builds: list[str] = []
    inside = threading.Event()

    def build_wheel(*args: Any) -> Path:
        inside.set()
        time.sleep(0.2)  # long enough for the other job to arrive while this one builds
        builds.append(threading.current_thread().name)
        folder = house.built_dir(sha, "3.9.2", "amd64")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "g-1-py3-none-any.whl").write_bytes(b"w")
        (folder / "record.json").write_text('{"wheel": "g-1-py3-none-any.whl"}')
        return folder / "g-1-py3-none-any.whl"

    monkeypatch.setattr(sdists, "_build_wheel", build_wheel)
    cell = matrix.Cell("2.9.3", "3.9.2", matrix.Variant.CPU, matrix.BaseSpec("debian", "bullseye"))

    def job() -> Path:
        return sdists.built_wheel(None, cell, "b", "sha256:b", pin, house, tmp_path, 0)  # type: ignore[arg-type]

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(job)
        assert inside.wait(5)
        second = pool.submit(job)
        assert first.result() == second.result() == house.built(sha, "3.9.2", "amd64")
    assert len(builds) == 1


def test_a_cell_that_pins_no_sdist_does_not_wait_for_one(tmp_path: Path) -> None:
    from harness import build
    from harness.base import BaseImage
    from harness.paths import Paths

    m = matrix.load(_matrix(tmp_path))
    cell = next(iter(m.cells))
    paths = Paths.for_matrix(m.path)
    base = BaseImage("b", "sha256:b", cell.python, None, "debian:bookworm")
    # no lock pins an sdist (here: no lock at all): the base as it is, no engine asked
    assert not build.pins_sdists(paths, cell)
    assert build.with_sdists(None, m, paths, cell, base) is base  # type: ignore[arg-type]
    assert build.with_sdists(None, m, paths, cell, "no base") == "no base"  # type: ignore[arg-type]
    # a lock that pins one: that cell's build job builds it (and starts first)
    runtime = lock.lock_path(paths.locks, cell, "runtime")
    runtime.parent.mkdir(parents=True)
    runtime.write_text(LOCK)
    assert build.pins_sdists(paths, cell)


def _matrix(tmp: Path) -> Path:
    path = tmp / "matrix.yaml"
    path.write_text('version: 1\nray: ["2.60.0"]\npython: ["3.11.2"]\nvariants: [cpu]\n')
    return path
