"""Dependencies published only as an sdist (e.g. `gpustat`, which `ray[default]==2.9.3`
needs): built into a wheel once, on the host side, so images still install wheels only,
offline.

The lock names them (`# sdists: NAME,...`, written when uv found no wheel for them) and
pins the sdist by its hash. `built_wheel` then:
- downloads the sdist (pip, hash-checked) into the wheelhouse;
- reads its `[build-system] requires` (setuptools and wheel when it has none) and resolves
  them with uv, hash-pinned, for the cell's Python and platform, wheels only;
- builds it in a throwaway container of the cell's own base (the same Python micro and
  glibc), with no network: pip (the cell's locked pip wheel) installs the pinned build
  requirements from those wheels and runs `pip wheel --no-build-isolation`;
- keeps the wheel in `<wheelhouse>/built/<sdist sha256>/` with `record.json` (the sdist,
  its hash, the build requirements, the base image, the wheel's hash), so every later
  build reuses it.
An sdist that does not build there (it needs a compiler or headers the base lacks) is a
HarnessError naming it, raised at `lock` time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
import tarfile
import tempfile
import threading
from pathlib import Path

import tomli

from harness import children, lock
from harness.engine import STAGING, Engine
from harness.errors import HarnessError
from harness.files import write_atomic
from harness.matrix import Cell
from harness.wheelhouse import Wheelhouse

DEFAULT_BACKEND = ["setuptools>=40.8.0", "wheel"]  # PEP 518's default


def pins(lock_file: Path) -> list[lock.Pin]:
    """The pins of a lock that are sdists."""
    wanted = lock.sdist_names(lock_file)
    return [p for p in lock.pins_of(lock_file) if lock.normalize(p.name) in wanted]


def _download(pin: lock.Pin, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    hashes = " ".join(f"--hash=sha256:{h}" for h in sorted(pin.hashes))
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "req.txt"
        req.write_text(f"{pin.name}=={pin.version} {hashes}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
        cmd += ["--no-deps", "--no-binary=:all:", "--require-hashes", "-r", str(req)]
        rc, _, err = children.bounded([*cmd, "--dest", tmp], timeout=600, what=f"{pin.name} sdist")
        got = [p for p in Path(tmp).iterdir() if p.name != "req.txt"]
        if rc != 0 or len(got) != 1:
            raise HarnessError(f"downloading the sdist of {pin.name}=={pin.version}: {err[-400:]}")
        target = dest / got[0].name
        write_atomic(target, got[0].read_bytes())  # another cell's job may be reading it
        return target


def build_requires(sdist: Path) -> list[str]:
    """The sdist's `[build-system] requires` (PEP 518; its default when it names none)."""
    with tarfile.open(sdist) as tar:
        top = [m for m in tar.getmembers() if m.name.count("/") == 1]
        member = next((m for m in top if m.name.endswith("/pyproject.toml")), None)
        if member is None:
            return list(DEFAULT_BACKEND)
        f = tar.extractfile(member)
        doc = tomli.loads(f.read().decode()) if f else {}
    return list((doc.get("build-system") or {}).get("requires") or DEFAULT_BACKEND)


def _script(sdist: str) -> str:
    return (
        f"set -e; cd {STAGING}; "
        f"python3 pip.whl/pip install --quiet --no-index --no-cache-dir --find-links reqs "
        f"--target /tmp/build-env --require-hashes -r build-requirements.txt; "
        f"PYTHONPATH=/tmp/build-env python3 pip.whl/pip wheel --quiet --no-index --no-deps "
        f"--no-build-isolation --no-cache-dir --wheel-dir /tmp/out {sdist}; "
        'for f in /tmp/out/*.whl; do echo "WHEEL $(basename "$f") $(base64 -w0 "$f")"; done'
    )


def build_for(
    engine: Engine,
    cell: Cell,
    base_ref: str,
    base_id: str,
    locks: list[Path],
    house: Wheelhouse,
    epoch: int,
) -> dict[str, Path]:
    """Every sdist the cell's locks pin, as a wheel (built now, or before); by name."""
    out: dict[str, Path] = {}
    todo = {p.name: p for lock_file in locks for p in pins(lock_file)}
    if todo:
        pip = house.wheel_of(locks[0], "pip", cell.python, cell.arch)
        for name, pin in todo.items():
            out[name] = built_wheel(engine, cell, base_ref, base_id, pin, house, pip, epoch)
    return out


def built_wheel(
    engine: Engine,
    cell: Cell,
    base_ref: str,
    base_id: str,
    pin: lock.Pin,
    house: Wheelhouse,
    pip_wheel: Path,
    epoch: int,
) -> Path:
    """The wheel of `pin`'s sdist, built once in a throwaway container of the base. Cells
    build at once, and two may pin the same sdist: the second waits for the first's wheel."""
    sha = sorted(pin.hashes)[0]
    with _building(sha, cell.python, cell.arch):
        done = house.built(sha, cell.python, cell.arch)
        if done is not None:
            return done
        return _build_wheel(engine, cell, base_ref, base_id, pin, house, pip_wheel, epoch, sha)


_LOCKS: dict[tuple[str, str, str], threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _building(sha: str, python: str, arch: str) -> threading.Lock:
    """The lock held while this sdist's wheel for this interpreter is built."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault((sha, python, arch), threading.Lock())


def _build_wheel(
    engine: Engine,
    cell: Cell,
    base_ref: str,
    base_id: str,
    pin: lock.Pin,
    house: Wheelhouse,
    pip_wheel: Path,
    epoch: int,
    sha: str,
) -> Path:
    folder = house.built_dir(sha, cell.python, cell.arch)
    sdist = _download(pin, house.root / "sdists")
    requires = build_requires(sdist)
    body = lock.compile_requirements(requires, cell)
    reqs_lock = folder / "build-requirements.txt"
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(reqs_lock, body)
    with tempfile.TemporaryDirectory() as tmp:
        reqs = Path(tmp) / "reqs"
        Wheelhouse(reqs).fetch(reqs_lock, cell)
        files: dict[str, str | bytes] = {
            "pip.whl": pip_wheel.read_bytes(),
            "build-requirements.txt": body,
            sdist.name: sdist.read_bytes(),
            **{f"reqs/{w.name}": w.read_bytes() for w in sorted(reqs.iterdir())},
        }
        r = engine.run_once(
            base_ref,
            ["sh", "-c", _script(sdist.name)],
            entrypoint=[],
            files=files,
            env={"SOURCE_DATE_EPOCH": str(epoch)},
            timeout=900,
        )
    wheels = [ln.split(" ", 2) for ln in r.stdout.splitlines() if ln.startswith("WHEEL ")]
    if r.returncode != 0 or len(wheels) != 1:
        tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-8:])
        raise HarnessError(
            f"{pin.name}=={pin.version} is published only as an sdist, and it does not build "
            f"into a wheel in the base {base_ref} (Python {cell.python}, no network): it may "
            f"need a compiler or headers the base lacks. Exclude the cell, or add a `bases:` "
            f"image that has them. pip said:\n{tail}"
        )
    _, name, data = wheels[0]
    wheel = folder / name
    write_atomic(wheel, base64.b64decode(data))
    record = {
        "sdist": sdist.name,
        "sdist_sha256": sha,
        "build_requirements": requires,
        "base": base_ref,
        "base_id": base_id,
        "python": cell.python,
        "wheel": name,
        "wheel_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
    }
    write_atomic(folder / "record.json", json.dumps(record, indent=1) + "\n")
    return wheel


def with_wheel_hashes(lock_text: str, built: dict[str, Path]) -> str:
    """The lock as the image installs it: each sdist pin also accepts its built wheel's
    hash (pip --require-hashes checks the file it installs, here the wheel)."""
    out = lock_text
    for name, wheel in built.items():
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        pattern = re.compile(rf"^({re.escape(name)}==\S+)", re.M | re.I)
        out = pattern.sub(rf"\1 --hash=sha256:{digest}", out, count=1)
    return out
