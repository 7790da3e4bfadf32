"""The push gate: only images that passed build and test, unchanged since, reach a registry.

For each selected cell the gate reads the test report: the cell must be `passed`, and every
role's local image id must equal the id that was tested. Approved images are tagged into
the target registry, pushed with Docker's own credentials (config or credential helper),
pulled back by digest and compared, and recorded in `build/images.lock.json`, the
tag/digest contract operators consume.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.engine import Engine
from harness.errors import EngineError, HarnessError
from harness.matrix import ROLES, Cell, Matrix, registry_problem
from harness.progress import log

ENV = "RAYCOMPAT_REGISTRY"
LOCK_SCHEMA = 1
_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")


@dataclass(frozen=True)
class Approved:
    cell: Cell
    role: str
    local_tag: str
    image_id: str


@dataclass(frozen=True)
class Refusal:
    cell: str
    role: str  # "" when the whole cell is refused
    why: str

    def __str__(self) -> str:
        return f"{self.cell}{'/' + self.role if self.role else ''}: {self.why}"


@dataclass(frozen=True)
class Pushed:
    cell: str
    ray: str
    python: str
    variant: str
    role: str
    tag: str  # REGISTRY/ray-ROLE:SUFFIX
    digest: str  # sha256:... of the manifest
    ref: str  # REGISTRY/ray-ROLE@sha256:... -- what operators should deploy
    image_id: str  # the tested image (config digest)


def target(m: Matrix, env: Mapping[str, str] = os.environ) -> str:
    """The registry to push to: $RAYCOMPAT_REGISTRY, else `registry:` in matrix.yaml."""
    value = env.get(ENV) or m.registry
    if not value:
        raise HarnessError(
            f"no registry to push to: set `registry:` in {m.path} or {ENV} "
            "(e.g. europe-west4-docker.pkg.dev/PROJECT/REPO)"
        )
    why = registry_problem(value)
    if why:
        raise HarnessError(f"{ENV if env.get(ENV) else 'registry'}: {why}")
    return value


def load_reports(paths: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """Cell results by id from one or more report.json files (later files win)."""
    cells: dict[str, dict[str, Any]] = {}
    for path in paths:
        if not path.is_file():
            raise HarnessError(f"{path}: no test report; run `nox -s build test` first")
        try:
            doc = json.loads(path.read_text())
            for c in doc["cells"]:
                cells[c["id"]] = c
        except (ValueError, KeyError, TypeError) as exc:
            raise HarnessError(f"{path}: not a harness report ({exc})") from None
    return cells


def gate(
    engine: Engine, m: Matrix, cells: Iterable[Cell], report: Mapping[str, Mapping[str, Any]]
) -> tuple[list[Approved], list[Refusal]]:
    """Which images may be pushed, and why the others may not."""
    approved: list[Approved] = []
    refused: list[Refusal] = []
    for cell in cells:
        result = report.get(cell.id)
        if result is None:
            refused.append(Refusal(cell.id, "", "no result in the report; run `nox -s build test`"))
            continue
        status = result.get("status")
        if status != "passed":
            failed = [c["name"] for c in result.get("checks", []) if c.get("status") == "failed"]
            why = f"status {status!r}" + (f" (failed: {', '.join(failed[:5])})" if failed else "")
            if status == "built":
                why += "; built but not tested: run `nox -s test`"
            refused.append(Refusal(cell.id, "", why))
            continue
        tested: dict[str, str] = dict(result.get("tested_image_ids") or {})
        cell_ok: list[Approved] = []
        for role in ROLES:
            tag = cell.tag(m.prefix, role)
            if role not in tested:
                refused.append(
                    Refusal(cell.id, role, "the report records no tested image (stale report)")
                )
                continue
            info = engine.inspect("image", tag)
            if info is None:
                refused.append(Refusal(cell.id, role, f"{tag} is not in the local engine"))
                continue
            if info["Id"] != tested[role]:
                refused.append(
                    Refusal(
                        cell.id,
                        role,
                        f"{tag} changed after the test: tested {tested[role][:19]}, "
                        f"local {info['Id'][:19]}; run `nox -s test` again",
                    )
                )
                continue
            cell_ok.append(Approved(cell, role, tag, info["Id"]))
        if len(cell_ok) == len(ROLES):  # a cell goes out whole or not at all
            approved += cell_ok
    return approved, refused


def _repo(registry: str, role: str) -> str:
    return f"{registry}/ray-{role}"


def push(engine: Engine, registry: str, approved: Sequence[Approved]) -> list[Pushed]:
    """Tag, push, pull back by digest and compare with the tested image id."""
    out: list[Pushed] = []
    for a in approved:
        repo = _repo(registry, a.role)
        remote = f"{repo}:{a.cell.tag_suffix}"
        t0 = time.monotonic()
        engine.run(["tag", a.image_id, remote], timeout=60)
        r = engine.run(["push", remote], timeout=3600, check=False)
        if r.returncode != 0:
            engine.run(["rmi", remote], timeout=60, check=False)  # leave no stray tag
            tail = " ".join((r.stderr or r.stdout).split())[-400:]
            hint = ""
            if "denied" in tail or "unauthorized" in tail or "authentication" in tail:
                host = registry.split("/", 1)[0]
                hint = (
                    f"; authenticate Docker to {host} (`gcloud auth configure-docker {host}` "
                    "or `docker login`)"
                )
            raise EngineError(f"push of {remote} failed: {tail}{hint}")
        found = _DIGEST.search(r.stdout)
        if not found:
            raise EngineError(f"push of {remote} reported no digest: {r.stdout.strip()[-300:]}")
        digest = found.group(1)
        ref = f"{repo}@{digest}"
        # Pull back by digest: the registry must serve a manifest with this digest whose
        # config is the tested image. Untag first so the pull cannot be satisfied by name.
        engine.run(["rmi", remote], timeout=60, check=False)
        engine.run(["pull", ref], timeout=3600)
        pulled = engine.inspect("image", ref)
        if pulled is None or pulled["Id"] != a.image_id:
            got = pulled["Id"] if pulled else "nothing"
            raise EngineError(f"pulled {ref} back and got {got}, not the tested {a.image_id}")
        engine.run(["tag", a.image_id, remote], timeout=60)
        log(f"push: {remote} -> {digest} (pulled back, same image) in {time.monotonic() - t0:.1f}s")
        c = a.cell
        out.append(
            Pushed(c.id, c.ray, c.python, c.variant, a.role, remote, digest, ref, a.image_id)
        )
    return out


def write_lock(path: Path, registry: str, pushed: Sequence[Pushed]) -> dict[str, Any]:
    """Merge these pushes into images.lock.json (earlier entries of other cells are kept)."""
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text())
            if old.get("registry") == registry:
                entries = {(e["cell"], e["role"]): e for e in old.get("images", [])}
        except (ValueError, KeyError, TypeError):
            entries = {}
    for p in pushed:
        entries[(p.cell, p.role)] = asdict(p)
    doc = {
        "schema": LOCK_SCHEMA,
        "registry": registry,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "images": [entries[k] for k in sorted(entries)],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def read_lock(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise HarnessError(f"{path}: no images lock; run `nox -s push` first")
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
        if doc.get("schema") != LOCK_SCHEMA or not isinstance(doc.get("images"), list):
            raise ValueError("unknown schema")
        return doc
    except ValueError as exc:
        raise HarnessError(f"{path}: not an images lock ({exc})") from None
