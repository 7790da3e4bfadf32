"""Ask the package index which Ray versions exist and for which CPython they ship wheels.

Used to refuse a matrix before anything is built: a Ray version that is not on the index,
or a (Ray, Python) pair with no wheel, is an error naming the cell and the exclude entry
that would skip it. A cell whose committed lock is current needs no look-up (the lock
proves it resolved), so a fully locked matrix validates offline.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

from harness.errors import HarnessError
from harness.files import write_atomic
from harness.matrix import Cell, Matrix

DEFAULT_INDEX = "https://pypi.org/simple"
CACHE_SECONDS = 24 * 3600
_WHEEL = re.compile(r"^ray-([^-]+)-(cp\d+)-[^-]+-([^-]+)\.whl$")


def index_url() -> str:
    """$UV_INDEX_URL, else $PIP_INDEX_URL, else PyPI; HarnessError when it is not a URL."""
    for name in ("UV_INDEX_URL", "PIP_INDEX_URL"):
        value = os.environ.get(name)
        if value:
            parsed = urllib.parse.urlparse(value)
            if parsed.scheme not in ("http", "https", "file") or not (
                parsed.netloc or parsed.scheme == "file"
            ):
                raise HarnessError(
                    f"{name}={value}: not an http(s):// or file:// package index URL; fix it "
                    "or unset it"
                )
            return value.rstrip("/")
    return DEFAULT_INDEX


def parse_files(filenames: Iterable[str]) -> dict[str, set[str]]:
    """Ray version -> CPython tags with a Linux x86_64 wheel (`cp311`)."""
    out: dict[str, set[str]] = {}
    for name in filenames:
        m = _WHEEL.match(name)
        if m and "linux" in m.group(3) and "x86_64" in m.group(3):
            out.setdefault(m.group(1), set()).add(m.group(2))
    return out


def _read_cache(path: Path) -> dict[str, set[str]] | None:
    """The cached listing; None when there is none or it is not one (it is asked again)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in doc.values()
    ):
        return None
    return {str(k): set(v) for k, v in doc.items()}


def fetch(cache: Path, url: str | None = None) -> dict[str, set[str]]:
    """Ray's wheels on the index (PEP 691 JSON), cached for a day under `cache`."""
    url = url or index_url()
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / "ray-wheels.json"
    cached = _read_cache(path)
    if cached is not None and time.time() - path.stat().st_mtime < CACHE_SECONDS:
        return cached
    request = urllib.request.Request(
        f"{url}/ray/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            doc = json.loads(response.read())
    except (OSError, ValueError) as exc:
        if cached is not None:
            return cached
        raise HarnessError(
            f"cannot ask {url} which Ray versions exist ({exc}); set PIP_INDEX_URL or "
            "UV_INDEX_URL to a reachable mirror, or run `nox -s lock` where the index is reachable"
        ) from None
    wheels = parse_files(f["filename"] for f in doc.get("files", []))
    write_atomic(path, json.dumps({k: sorted(v) for k, v in wheels.items()}))
    return wheels


def check(matrix: Matrix, cells: Iterable[Cell], wheels: Mapping[str, set[str]]) -> None:
    """Refuse cells whose Ray version is unknown or has no wheel for the cell's CPython."""
    for cell in cells:
        if cell.ray not in wheels:
            i = matrix.ray_versions.index(cell.ray) if cell.ray in matrix.ray_versions else 0
            known = sorted(wheels, key=_version_key)[-3:]
            raise matrix.fail(
                f"ray.{i}",
                f"Ray {cell.ray} is not on the package index ({index_url()}); "
                f"newest there: {', '.join(known)}",
            )
        tag = "cp" + cell.python_minor.replace(".", "")
        if tag not in wheels[cell.ray]:
            have = ", ".join(sorted(wheels[cell.ray], key=lambda t: int(t[2:])))
            raise matrix.fail(
                "python",
                f"cell {cell.id}: Ray {cell.ray} publishes no {tag} wheel (it has {have}); "
                f'exclude it: `exclude: [{{ray: "{cell.ray}", python: "{cell.python_minor}.*", '
                f'reason: "no {tag} wheels"}}]`',
            )


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in re.split(r"[.+-]", v))
