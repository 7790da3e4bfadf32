"""The host wheelhouse: every locked wheel downloaded once, on the host, shared by all cells.

Downloads use the host's pip (and so its proxy CA and index mirrors). Builds never
download: they get hard links of exactly the wheels their lock names, matched by sha256.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import parse_wheel_filename

from harness import children, lock
from harness.errors import HarnessError
from harness.files import write_atomic
from harness.matrix import Cell, machine_of


class Wheelhouse:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._index_path = root / ".index.json"
        self._index: dict[str, dict[str, object]] = {}
        self._have: dict[str, Path] | None = None  # sha256 -> wheel, until the next download
        # (pin, python, arch) -> its downloaded wheels, until the next download: a no-op
        # build asks it of every pin of every lock twice (disk-space plan, then fetch)
        self._found: dict[tuple[lock.Pin, str, str], list[Path]] = {}
        try:  # a cache of wheels' hashes: one that cannot be read is made again
            doc = json.loads(self._index_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            doc = {}
        if isinstance(doc, dict):
            self._index = {k: v for k, v in doc.items() if isinstance(v, dict)}

    def _by_hash(self) -> dict[str, Path]:
        """sha256 -> wheel path, hashing only files that are new or changed since last time;
        the directory is read once per download, not once per lock."""
        if self._have is not None:
            return self._have
        out: dict[str, Path] = {}
        changed = False
        for path in sorted(self.root.glob("*.whl")):
            st = path.stat()
            entry = self._index.get(path.name)
            if (
                not entry
                or entry.get("size") != st.st_size
                or entry.get("mtime_ns") != st.st_mtime_ns
            ):
                h = hashlib.sha256()
                with path.open("rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                entry = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": h.hexdigest()}
                self._index[path.name] = entry
                changed = True
            out[str(entry["sha256"])] = path
        if changed:
            write_atomic(self._index_path, json.dumps(self._index, indent=1, sort_keys=True))
        self._have = out
        return out

    def sha256_of(self, wheel: Path) -> str:
        entry = self._index.get(wheel.name) or {}
        return str(entry.get("sha256") or "")

    def missing(self, lock_file: Path, python: str, arch: str = "amd64") -> list[lock.Pin]:
        return [p for p in lock.pins_of(lock_file) if not self._matching(p, python, arch)]

    def wheel_of(self, lock_file: Path, name: str, python: str, arch: str = "amd64") -> Path:
        """The wheel here of one pin of the lock (e.g. pip)."""
        for pin in lock.pins_of(lock_file):
            if lock.normalize(pin.name) == lock.normalize(name):
                found = self._matching(pin, python, arch)
                if found:
                    return found[0]
        raise HarnessError(f"{lock_file}: no wheel of {name} in the wheelhouse")

    def _missing_wheels(self, lock_file: Path, cell: Cell) -> list[lock.Pin]:
        """The lock's pins with no wheel here, but its sdists (harness.sdists builds them)."""
        sdists = lock.sdist_names(lock_file)
        return [
            p
            for p in self.missing(lock_file, cell.python, cell.arch)
            if lock.normalize(p.name) not in sdists
        ]

    def fetch(self, lock_file: Path, cell: Cell) -> int:
        """Download the lock's wheels not yet here (not its sdists: harness.sdists builds
        them); returns how many pins were missing."""
        missing = self._missing_wheels(lock_file, cell)
        if not missing:
            return 0
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--require-hashes",
            *(arg for tag in lock.pip_platforms(cell.arch) for arg in ("--platform", tag)),
            # the exact micro: "3.9" would mean 3.9.0, which e.g. `!=3.9.0,!=3.9.1` excludes
            "--python-version",
            cell.python,
            "--implementation",
            "cp",
            "--dest",
            str(self.root),
            "-r",
        ]
        # only the missing pins, each with its hashes (--no-deps: the lock is the closure);
        # not the lock itself, whose sdists --only-binary would refuse
        reqs = "".join(
            f"{p.name}=={p.version} {' '.join(f'--hash=sha256:{h}' for h in sorted(p.hashes))}\n"
            for p in missing
        )
        with tempfile.TemporaryDirectory() as tmp:
            req_file = Path(tmp) / "missing.txt"
            req_file.write_text(reqs, encoding="utf-8")
            what = f"downloading wheels for {lock_file}"
            rc, _, err = children.bounded([*cmd, str(req_file)], timeout=1800, what=what)
        self._have, self._found = None, {}
        if rc != 0:
            tail = "\n".join(err.strip().splitlines()[-10:])
            raise HarnessError(f"downloading wheels for {lock_file} failed:\n{tail}")
        still = self._missing_wheels(lock_file, cell)
        if still:
            names = ", ".join(f"{p.name}=={p.version}" for p in still[:5])
            raise HarnessError(f"{lock_file}: no wheel matching the locked hashes for {names}")
        return len(missing)

    def _matching(self, pin: lock.Pin, python: str, arch: str = "amd64") -> list[Path]:
        """This pin's locked wheels here that CPython `python` on `arch` can install.

        The wheelhouse is shared by cells: a pin can have wheels for several CPythons and
        architectures."""
        key = (pin, python, arch)
        if key in self._found:
            return self._found[key]
        have = self._by_hash()
        supported = supported_tags(python, arch)
        downloaded = sorted(have[h] for h in pin.hashes if h in have)
        found = [w for w in downloaded if _wheel_tags(w.name) & supported]
        if found:  # the usual case: no look for built wheels (a file read per hash)
            self._found[key] = found
            return found
        built = [w for h in sorted(pin.hashes) if (w := self.built(h, python, arch))]
        return [w for w in built if _wheel_tags(w.name) & supported]

    def built_dir(self, sdist_sha256: str, python: str, arch: str) -> Path:
        """Where the wheel built from an sdist for CPython `python` on `arch` is kept
        (harness.sdists): found by the sdist's hash, which the lock pins."""
        return self.root / "built" / f"{sdist_sha256}-py{python}-{arch}"

    def built(self, sdist_sha256: str, python: str, arch: str) -> Path | None:
        folder = self.built_dir(sdist_sha256, python, arch)
        try:
            doc = json.loads((folder / "record.json").read_text(encoding="utf-8"))
            wheel = folder / str(doc["wheel"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # none, or an unfinished build: built again when needed
        return wheel if wheel.is_file() else None

    def wheels_for(self, lock_file: Path, python: str, arch: str = "amd64") -> list[Path]:
        """For each pin of the lock, the wheel that installs on CPython `python` on `arch`."""
        out: list[Path] = []
        for pin in lock.pins_of(lock_file):
            match = self._matching(pin, python, arch)
            if not match:
                raise HarnessError(
                    f"{lock_file}: no wheel of {pin.name}=={pin.version} for CPython {python} "
                    f"({arch}) in the wheelhouse"
                )
            out.append(match[0])
        return out

    def ray_commit(self, lock_file: Path, python: str, arch: str = "amd64") -> str:
        """The Ray commit, read from the locked Ray wheel's `ray/_version.py` (no install)."""
        for wheel in self.wheels_for(lock_file, python, arch):
            if wheel.name.startswith("ray-"):
                with zipfile.ZipFile(wheel) as zf:
                    text = zf.read("ray/_version.py").decode()
                for line in text.splitlines():
                    if line.startswith("commit"):
                        return line.split("=", 1)[1].strip().strip("\"'")
        raise HarnessError(f"{lock_file}: no Ray wheel with a commit found")


@functools.lru_cache(maxsize=4096)  # the same wheels are matched for every cell and lock
def _wheel_tags(name: str) -> frozenset[Tag]:
    return parse_wheel_filename(name)[3]


@functools.cache  # thousands of tags, asked once per pin of every lock
def supported_tags(python: str, arch: str = "amd64") -> frozenset[Tag]:
    """Wheel tags that CPython `python` on `arch` Linux with glibc >= 2.28 installs."""
    major, minor, _ = (int(p) for p in python.split("."))
    platforms = [*lock.pip_platforms(arch), f"linux_{machine_of(arch)}"]
    version = (major, minor)
    interpreter = f"cp{major}{minor}"
    return frozenset(
        [
            *cpython_tags(version, abis=[interpreter, "abi3", "none"], platforms=platforms),
            *compatible_tags(version, interpreter=interpreter, platforms=platforms),
        ]
    )


def link_into(files: list[Path], dest: Path) -> None:
    """Hard-link (or copy across file systems) files into a fresh directory."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for f in files:
        target = dest / f.name
        try:
            os.link(f, target)
        except OSError:
            shutil.copy2(f, target)
