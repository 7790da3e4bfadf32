"""A dependency PyPI publishes only as an sdist (gpustat 1.1.1, which `ray[default]==2.9.3`
needs) is built into a wheel once, in a throwaway container of the cell's base with no
network, and found again by its sdist's hash; the image's lock accepts the built wheel."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness import base, lock, matrix, sdists
from harness.engine import Engine
from harness.wheelhouse import Wheelhouse
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e
GPUSTAT = (  # as `lock` writes it for Ray 2.9.3 (# sdists: gpustat)
    "gpustat==1.1.1 \\\n"
    "    --hash=sha256:c18d3ed5518fc16300c42d694debc70aebb3be55cae91f1db64d63b5fa8af9d8\n"
)


def test_an_sdist_is_built_once_in_the_base_and_reused(tmp_path: Path) -> None:
    m = matrix.load(ROOT / "matrix.yaml")
    cell = next(c for c in m.cells if c.id == "ray2.60.0-py3.11.2-cpu")
    runtime = lock.lock_path(ROOT / "locks", cell, "runtime")
    pip = next(p for p in lock.pins_of(runtime) if p.name == "pip")
    pins = f"pip=={pip.version} " + " ".join(f"--hash=sha256:{h}" for h in sorted(pip.hashes))
    lock_file = tmp_path / "runtime.txt"
    lock_file.write_text(f"# sdists: gpustat\n{GPUSTAT}{pins}\n")
    engine = Engine()
    made = base.ensure(engine, m, cell, tmp_path / "rootfs")
    house = Wheelhouse(tmp_path / "wheelhouse")
    assert [p.name for p in house.missing(lock_file, cell.python)] == ["gpustat", "pip"]
    house.fetch(lock_file, cell)  # pip only: an sdist is never downloaded as a wheel
    assert [p.name for p in house.missing(lock_file, cell.python)] == ["gpustat"]
    built = sdists.build_for(
        engine, cell, made.ref, made.id, [lock_file], house, m.source_date_epoch
    )
    wheel = built["gpustat"]
    assert wheel.name == "gpustat-1.1.1-py3-none-any.whl"
    record = json.loads((wheel.parent / "record.json").read_text())
    assert record["sdist"] == "gpustat-1.1.1.tar.gz" and record["base_id"] == made.id
    assert any(r.startswith("setuptools") for r in record["build_requirements"])
    assert (wheel.parent / "build-requirements.txt").read_text().count("--hash=sha256:") >= 1
    # found again by its sdist's hash: the next build builds nothing
    assert Wheelhouse(tmp_path / "wheelhouse").missing(lock_file, cell.python) == []
    start = time.monotonic()
    again = sdists.build_for(
        engine, cell, made.ref, made.id, [lock_file], house, m.source_date_epoch
    )
    assert again == built and time.monotonic() - start < 5
    # the image's copy of the lock accepts the wheel: pip --require-hashes installs it
    accepting = sdists.with_wheel_hashes(lock_file.read_text(), built)
    r = engine.run_once(
        made.ref,
        [
            "sh",
            "-c",
            "cd /tmp/.raycompat && python3 pip.whl/pip install --quiet --no-index --no-deps "
            "--require-hashes --target /tmp/t --find-links . -r lock.txt && ls /tmp/t",
        ],
        entrypoint=[],
        files={"lock.txt": accepting.replace(pins, ""), wheel.name: wheel.read_bytes(),
               "pip.whl": house.wheel_of(lock_file, "pip", cell.python).read_bytes()},
        timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "gpustat" in r.stdout
