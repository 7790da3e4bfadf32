"""Hash-pinned lock files per cell, resolved on the host with `uv pip compile`.

Each cell has two locks under `locks/<cell-id>/`:
- `notebook.txt`: Ray with `ray_extras` and the client extra, JupyterLab, nbclient,
  ipykernel and the user's `runtime_packages` (the superset);
- `runtime.txt`: what head and worker install (Ray with `ray_extras`, default `default` and
  `serve`, and `runtime_packages`), constrained to the notebook pins so the libraries that
  cross the wire are the same versions on both sides.
A header line records the sha256 of the resolver inputs; `check()` refuses a lock whose
inputs no longer match matrix.yaml, so a build never resolves on its own.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import children
from harness.contracts import VERTEX
from harness.errors import HarnessError
from harness.files import write_atomic
from harness.matrix import NATIVE_PLATFORM, Cell, Matrix, machine_of

LOCK_FORMAT = 1
# uv's target per architecture: glibc 2.28 (every Debian base here has a newer one).
PLATFORMS = {"amd64": "x86_64-manylinux_2_28", "arm64": "aarch64-manylinux_2_28"}


def pip_platforms(arch: str = "amd64") -> tuple[str, ...]:
    """pip does not widen --platform to older glibc tags: every tag a glibc 2.28 host of
    that architecture takes (manylinux2010/1 were never defined for aarch64)."""
    machine = machine_of(arch)
    legacy = (
        ("manylinux2014", "manylinux2010", "manylinux1") if arch == "amd64" else ("manylinux2014",)
    )
    return (
        *(f"manylinux_2_{n}_{machine}" for n in range(28, 4 if arch == "amd64" else 16, -1)),
        *(f"{tag}_{machine}" for tag in legacy),
    )


PIP_PLATFORMS = pip_platforms()
KINDS = ("notebook", "runtime")  # resolution order: runtime is constrained by notebook
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")
_INPUT = re.compile(r"^# input-sha256: ([0-9a-f]{64})$", re.M)


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    hashes: frozenset[str]


def requirements(cell: Cell, matrix: Matrix, kind: str) -> list[str]:
    """The top-level requirements a lock of this kind resolves."""
    # pip is locked too: the image bootstraps it from its own (hash-checked) wheel.
    # A gpu cell adds NVIDIA's CUDA runtime wheel for its CUDA major.minor.
    cuda = [f"nvidia-cuda-runtime-cu12=={cell.cuda}.*"] if cell.cuda else []
    # The notebook stays the superset: what the extras bring (Serve brings numpy, a library
    # that crosses the wire) is pinned there first, so the nodes get the same versions.
    own = list(matrix.runtime_packages)  # the user's own: on the nodes and in the notebook
    if "vertex" in cell.targets:  # what Vertex AI documents a custom image needs
        own += [p for p in VERTEX.packages if p not in own]
    own += [c for c in cell.constraints if c not in own]  # matrix.yaml `constraints:`
    extras = list(matrix.ray_extras)
    if kind == "runtime":
        return [f"ray[{','.join(extras)}]=={cell.ray}", "pip", *cuda, *own]
    if kind == "notebook":
        ray = f"ray[{','.join([*extras, 'client'])}]=={cell.ray}"
        return [ray, "pip", *cuda, *own, *matrix.notebook_packages]
    raise ValueError(kind)


def input_digest(cell: Cell, matrix: Matrix, kind: str, native_lock: str | None = None) -> str:
    """sha256 of everything the resolver is given: changes when matrix.yaml asks for more.
    A non-native cell resolves within its linux/amd64 cell's notebook lock (`native_lock`,
    that file's sha256), so it goes stale when that lock moves."""
    doc: dict[str, object] = {
        "format": LOCK_FORMAT,
        "kind": kind,
        "requirements": requirements(cell, matrix, kind),
        "python": cell.python,
        "platform": PLATFORMS[cell.arch],
        "constrained_by": "notebook" if kind == "runtime" else None,
    }
    if not cell.native:
        doc["native_lock"] = native_lock
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def lock_dir(root: Path, cell: Cell) -> Path:
    return root / cell.id


def lock_path(root: Path, cell: Cell, kind: str) -> Path:
    return lock_dir(root, cell) / f"{kind}.txt"


def parse(text: str) -> list[Pin]:
    """Pins of a `uv pip compile --generate-hashes` file (continuation lines joined)."""
    pins: list[Pin] = []
    joined = re.sub(r"\\\n\s*", " ", text)
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _PIN.match(line)
        if not m:
            continue
        hashes = frozenset(_HASH.findall(line))
        if not hashes:
            raise HarnessError(
                f"lock line for {m.group(1)} has no --hash; regenerate with `nox -s lock`"
            )
        pins.append(Pin(m.group(1).lower().replace("_", "-"), m.group(2), hashes))
    return pins


def pins_of(path: Path) -> list[Pin]:
    return list(_parsed(path.read_text(encoding="utf-8")))


@functools.lru_cache(maxsize=256)  # a no-op build reads each lock 2-3 times
def _parsed(text: str) -> tuple[Pin, ...]:
    return tuple(parse(text))


def version_of(path: Path, name: str) -> str | None:
    for pin in pins_of(path):
        if pin.name == name:
            return pin.version
    return None


def file_digest(*paths: Path) -> str:
    """sha256 over the lock files' bytes, in order: the `lock.sha256` image label."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


def native_cell(cell: Cell) -> Cell:
    """The linux/amd64 cell of the same Ray, Python and variant."""
    return dataclasses.replace(cell, platform=NATIVE_PLATFORM)


def native_lock(root: Path, cell: Cell) -> str | None:
    """sha256 of the native cell's notebook lock, for a non-native cell (else None)."""
    if cell.native:
        return None
    path = lock_path(root, native_cell(cell), "notebook")
    if not path.is_file():
        raise HarnessError(
            f"{path}: missing: cell {cell.id} is resolved within the pins of its "
            f"{NATIVE_PLATFORM} cell, so every library that crosses the wire has one version "
            "on both architectures; lock that cell first (`nox -s lock`)"
        )
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check(root: Path, cell: Cell, matrix: Matrix) -> None:
    """Refuse missing or stale lock files: the build never resolves dependencies itself."""
    native = native_lock(root, cell)
    for kind in KINDS:
        path = lock_path(root, cell, kind)
        if not path.is_file():
            raise HarnessError(
                f"{path}: missing lock for cell {cell.id}; run `nox -s lock` (or `python -m "
                f"harness lock --only ray={cell.ray},python={cell.python}`) and commit it"
            )
        m = _INPUT.search(header(path.read_text(encoding="utf-8")))
        if not m or m.group(1) != input_digest(cell, matrix, kind, native):
            raise HarnessError(
                f"{path}: stale lock: it was resolved for other inputs than {matrix.path} now "
                "asks for; run `nox -s lock` and commit the result"
            )


_NO_WHEELS = re.compile(r"Because (\S+?)(?:[<>=!~][^ ]*)? has no usable wheels")


_SDISTS = re.compile(r"^# sdists: (\S+)$", re.M)


def header(text: str) -> str:
    """A lock's leading comment lines, the header `lock` writes above the pins (searched
    alone: a pattern that is not there would otherwise scan every hash line of the file)."""
    end = 0
    while text.startswith("#", end):
        newline = text.find("\n", end)
        if newline < 0:
            return text
        end = newline + 1
    return text[:end]


def sdist_names(lock_file: Path) -> set[str]:
    """The packages a lock pins by their sdist (normalized names)."""
    m = _SDISTS.search(header(lock_file.read_text(encoding="utf-8")))
    return {normalize(n) for n in m.group(1).split(",")} if m else set()


def normalize(name: str) -> str:
    """A project name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def compile_requirements(reqs: Sequence[str], cell: Cell) -> str:
    """`reqs` resolved, hash-pinned, wheels only, for the cell's Python and platform."""
    return _uv_compile(reqs, cell, None, allow_sdists=False)[0]


ALL = ":all:"  # `lock --upgrade` with no names: every pin may move


def _uv_compile(
    reqs: Sequence[str],
    cell: Cell,
    constraints: Path | None,
    allow_sdists: bool = True,
    prefer: Path | None = None,
    upgrade: Sequence[str] = (),
) -> tuple[str, list[str]]:
    """uv's hash-pinned resolution, wheels only; a dependency that publishes no wheel at
    all is taken as its sdist (built into a wheel by harness.sdists) when `allow_sdists`.
    With `prefer` (the lock as it is), its pins stay wherever they still satisfy the
    requirements, but those of the packages named in `upgrade` (or all, with ALL).
    The body and the names taken as sdists."""
    sdists: list[str] = []
    while True:
        try:
            body = _uv_compile_once(reqs, cell, constraints, sdists, prefer, upgrade)
            return body, sdists
        except _NoWheels as exc:
            if not allow_sdists or exc.name in sdists or len(sdists) >= 5:
                raise HarnessError(str(exc)) from None
            sdists.append(exc.name)


class _NoWheels(HarnessError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def _uv_compile_once(
    reqs: Sequence[str],
    cell: Cell,
    constraints: Path | None,
    sdists: Sequence[str] = (),
    prefer: Path | None = None,
    upgrade: Sequence[str] = (),
) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "lock.txt"  # uv's output file: the pins there are its preferences
        if prefer is not None and prefer.is_file() and ALL not in upgrade:
            shutil.copyfile(prefer, out)
        cmd = [*_uv_command(cell, constraints, sdists), "--output-file", str(out)]
        for name in [] if ALL in upgrade else upgrade:
            cmd += ["--upgrade-package", name]
        _run_uv(cmd, reqs, cell)
        return out.read_text(encoding="utf-8")


def _uv_command(cell: Cell, constraints: Path | None, sdists: Sequence[str]) -> list[str]:
    cmd = [
        "uv",
        "pip",
        "compile",
        "-",
        "--quiet",
        "--generate-hashes",
        "--no-header",
        "--only-binary",
        ":all:",
        "--python-version",
        cell.python,
        "--python-platform",
        PLATFORMS[cell.arch],
    ]
    if constraints is not None:
        cmd += ["--constraint", str(constraints)]
    for name in sdists:
        cmd += ["--no-binary", name]
    return cmd


def _run_uv(cmd: list[str], reqs: Sequence[str], cell: Cell) -> None:
    try:
        rc, _, err = children.bounded(
            cmd,
            timeout=600,
            input="\n".join(reqs) + "\n",
            env={"UV_NATIVE_TLS": "1"},
            what=f"resolving the {cell.id} lock with uv",
        )
    except FileNotFoundError:
        raise HarnessError("uv not found: `pip install uv` (nox sessions install it)") from None
    if rc != 0:
        tail = "\n".join(err.strip().splitlines()[-12:])
        message = f"cannot resolve {' '.join(reqs)} for Python {cell.python}:\n{tail}"
        m = _NO_WHEELS.search(" ".join(err.split()))
        if m:
            raise _NoWheels(m.group(1), message)
        raise HarnessError(message)


def compile_cell(root: Path, cell: Cell, matrix: Matrix, upgrade: Sequence[str] = ()) -> list[Path]:
    """Resolve and write both lock files of a cell; return their paths.

    Pins of the lock as it is stay wherever they still satisfy the requirements, as uv
    keeps an output file's pins; `upgrade` names the packages that move to their newest
    (ALL: every package). So a new constraint or `--upgrade NAME` moves what it must and
    what that newly requires, nothing else.

    A non-native cell (linux/arm64) resolves its notebook lock within the pins of its
    linux/amd64 cell: the same versions on both architectures (a pin with no wheel for it
    fails the resolution, naming the package). Both files are written once both resolved:
    an interrupt while the runtime lock resolves leaves the cell's locks as they were, not
    a new notebook lock beside a runtime lock that was constrained by the old one."""
    native = native_lock(root, cell)
    out_dir = lock_dir(root, cell)
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved: dict[Path, str] = {}
    constraints: Path | None = None
    with tempfile.TemporaryDirectory() as tmp:
        if native is not None:
            constraints = Path(tmp) / "native.txt"
            pins = pins_of(lock_path(root, native_cell(cell), "notebook"))
            constraints.write_text("".join(f"{p.name}=={p.version}\n" for p in pins))
        for kind in KINDS:
            body, sdists = _uv_compile(
                requirements(cell, matrix, kind),
                cell,
                constraints,
                prefer=lock_path(root, cell, kind),
                upgrade=upgrade,
            )
            if constraints is not None:  # keep the file byte-stable: no temporary path in it
                other = (
                    f"../{native_cell(cell).id}/notebook.txt"
                    if kind == "notebook"
                    else "notebook.txt"
                )
                body = body.replace(f"-c {constraints}", f"-c {other}")
            header = (
                f"# Generated by `python -m harness lock` for cell {cell.id}. Do not edit.\n"
                f"# kind: {kind}; python: {cell.python}; platform: {PLATFORMS[cell.arch]}\n"
                f"# input-sha256: {input_digest(cell, matrix, kind, native)}\n"
                + (f"# sdists: {','.join(sorted(sdists))}\n" if sdists else "")
            )
            resolved[lock_path(root, cell, kind)] = header + body
            if kind == "notebook":
                constraints = Path(tmp) / "constraints.txt"
                constraints.write_text(
                    "".join(f"{p.name}=={p.version}\n" for p in parse(body)), encoding="utf-8"
                )
    for path, text in resolved.items():
        write_atomic(path, text)
    return list(resolved)
