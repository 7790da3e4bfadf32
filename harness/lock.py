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

import hashlib
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.contracts import VERTEX
from harness.errors import HarnessError
from harness.matrix import Cell, Matrix

LOCK_FORMAT = 1
PLATFORM = "x86_64-manylinux_2_28"
# pip does not widen --platform to older glibc tags: list every tag a glibc 2.28 host takes.
PIP_PLATFORMS: tuple[str, ...] = (
    *(f"manylinux_2_{n}_x86_64" for n in range(28, 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
)
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


def input_digest(cell: Cell, matrix: Matrix, kind: str) -> str:
    """sha256 of everything the resolver is given: changes when matrix.yaml asks for more."""
    doc = {
        "format": LOCK_FORMAT,
        "kind": kind,
        "requirements": requirements(cell, matrix, kind),
        "python": cell.python,
        "platform": PLATFORM,
        "constrained_by": "notebook" if kind == "runtime" else None,
    }
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
    return parse(path.read_text(encoding="utf-8"))


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


def check(root: Path, cell: Cell, matrix: Matrix) -> None:
    """Refuse missing or stale lock files: the build never resolves dependencies itself."""
    for kind in KINDS:
        path = lock_path(root, cell, kind)
        if not path.is_file():
            raise HarnessError(
                f"{path}: missing lock for cell {cell.id}; run `nox -s lock` (or `python -m "
                f"harness lock --only ray={cell.ray},python={cell.python}`) and commit it"
            )
        m = _INPUT.search(path.read_text(encoding="utf-8"))
        if not m or m.group(1) != input_digest(cell, matrix, kind):
            raise HarnessError(
                f"{path}: stale lock: it was resolved for other inputs than {matrix.path} now "
                "asks for; run `nox -s lock` and commit the result"
            )


def _uv_compile(reqs: Sequence[str], cell: Cell, constraints: Path | None) -> str:
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
        PLATFORM,
    ]
    if constraints is not None:
        cmd += ["--constraint", str(constraints)]
    env = {**os.environ, "UV_NATIVE_TLS": "1"}
    try:
        proc = subprocess.run(
            cmd, input="\n".join(reqs) + "\n", capture_output=True, text=True, env=env, timeout=600
        )
    except FileNotFoundError:
        raise HarnessError("uv not found: `pip install uv` (nox sessions install it)") from None
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-12:])
        raise HarnessError(f"cannot resolve {' '.join(reqs)} for Python {cell.python}:\n{tail}")
    return proc.stdout


def compile_cell(root: Path, cell: Cell, matrix: Matrix) -> list[Path]:
    """Resolve and write both lock files of a cell; return their paths."""
    out_dir = lock_dir(root, cell)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    constraints: Path | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            body = _uv_compile(requirements(cell, matrix, kind), cell, constraints)
            if constraints is not None:  # keep the file byte-stable: no temporary path in it
                body = body.replace(f"-c {constraints}", "-c notebook.txt")
            header = (
                f"# Generated by `python -m harness lock` for cell {cell.id}. Do not edit.\n"
                f"# kind: {kind}; python: {cell.python}; platform: {PLATFORM}\n"
                f"# input-sha256: {input_digest(cell, matrix, kind)}\n"
            )
            path = lock_path(root, cell, kind)
            path.write_text(header + body, encoding="utf-8")
            written.append(path)
            if kind == "notebook":
                constraints = Path(tmp) / "constraints.txt"
                constraints.write_text(
                    "".join(f"{p.name}=={p.version}\n" for p in parse(body)), encoding="utf-8"
                )
    return written
