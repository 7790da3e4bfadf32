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
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from harness import report
from harness.build import structure_check_names
from harness.engine import Engine
from harness.errors import EngineError, HarnessError
from harness.matrix import ROLES, Cell, Matrix, registry_problem
from harness.progress import log
from harness.results import ERROR, FAILED, PASSED, SKIPPED, CellResult

ENV = "RAYCOMPAT_REGISTRY"
LOCK_SCHEMA = 2  # 2: gpu_e2e per entry
_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")


@dataclass(frozen=True)
class Approved:
    cell: Cell
    role: str
    local_tag: str
    image_id: str
    note: str = ""  # what the push must say about it, e.g. a gpu image not run on a GPU


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
    gpu_e2e: str = ""  # gpu cells: "passed", or "not run on a GPU: <why>"


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


def load_reports(paths: Sequence[Path]) -> tuple[dict[str, CellResult], dict[str, str]]:
    """Cell results from one or more report.json files (one per CI shard), merged so that a
    shard's `excluded` cells never hide another shard's result; and the conflicts."""
    return report.merge(report.read(p) for p in paths)


def gpu_note(m: Matrix, result: CellResult) -> str:
    """'' for a cpu cell or a gpu cell proven on a GPU; else why it was not run on one."""
    if result.variant != "gpu":
        return ""
    gpu = next((c for c in result.test_checks if c.name == "gpu:e2e"), None)
    if gpu is not None and gpu.status == PASSED:
        return ""
    why = gpu.detail if gpu is not None else "no gpu:e2e result in the report"
    return f"not run on a GPU: {why}"


def _structure_problem(cell: Cell, role: str, result: CellResult, tested: str) -> str | None:
    """Why the structure checks do not vouch for the tested image of `role`, or None."""
    by_name = {c.name: c for c in result.build_checks}
    missing = [n for n in structure_check_names(cell, role) if n not in by_name]
    if missing:
        return (
            f"structure checks never ran on the tested image ({', '.join(missing[:3])}"
            f"{' ...' if len(missing) > 3 else ''} missing); run `nox -s build test` in one "
            "build directory"
        )
    for name in structure_check_names(cell, role):
        check = by_name[name]
        if check.image_id != tested:
            return (
                f"{name} ran on {check.image_id[:19] or 'an unrecorded image'}, not on the "
                f"tested {tested[:19]}; run `nox -s build test` again"
            )
        if check.status not in (PASSED, SKIPPED):
            return f"{name} is {check.status}"
    return None


def gate(
    engine: Engine,
    m: Matrix,
    cells: Iterable[Cell],
    results: Mapping[str, CellResult],
    conflicts: Mapping[str, str] | None = None,
) -> tuple[list[Approved], list[Refusal]]:
    """Which images may be pushed, and why the others may not."""
    approved: list[Approved] = []
    refused: list[Refusal] = []
    for cell in cells:
        if conflicts and cell.id in conflicts:
            refused.append(Refusal(cell.id, "", conflicts[cell.id]))
            continue
        result = results.get(cell.id)
        if result is None:
            refused.append(Refusal(cell.id, "", "no result in the report; run `nox -s build test`"))
            continue
        if result.status != PASSED:
            bad = [c.name for c in result.checks if c.status in (FAILED, ERROR)]
            why = f"status {result.status!r}" + (f" (failed: {', '.join(bad[:5])})" if bad else "")
            if result.status == "built":
                why += "; built but not tested: run `nox -s test`"
            refused.append(Refusal(cell.id, "", why))
            continue
        note = gpu_note(m, result)
        if note and m.gpu_e2e == "required":
            refused.append(
                Refusal(cell.id, "", f"gpu_e2e: required in {m.path}, and it was {note}")
            )
            continue
        tested = result.tested_image_ids
        cell_ok: list[Approved] = []
        for role in ROLES:
            tag = cell.tag(m.prefix, role)
            if role not in tested:
                refused.append(
                    Refusal(cell.id, role, "the report records no tested image (stale report)")
                )
                continue
            problem = _structure_problem(cell, role, result, tested[role])
            if problem:
                refused.append(Refusal(cell.id, role, problem))
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
            cell_ok.append(Approved(cell, role, tag, info["Id"], note))
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
        gpu = (a.note or PASSED) if c.variant == "gpu" else ""
        out.append(
            Pushed(c.id, c.ray, c.python, c.variant, a.role, remote, digest, ref, a.image_id, gpu)
        )
    return out


@dataclass(frozen=True)
class ImagesLock:
    """build/images.lock.json, read back typed."""

    registry: str
    updated: str
    images: tuple[Pushed, ...]

    def refs(self) -> dict[str, dict[str, str]]:
        """Pushed refs (by digest) per cell and role."""
        out: dict[str, dict[str, str]] = {}
        for e in self.images:
            out.setdefault(e.cell, {})[e.role] = e.ref
        return out


_PUSHED_FIELDS = tuple(f.name for f in fields(Pushed))


def _pushed_entry(doc: object, i: int) -> Pushed:
    if not isinstance(doc, dict):
        raise ValueError(f"images[{i}] is not an object")
    missing = [k for k in _PUSHED_FIELDS if k not in doc and k != "gpu_e2e"]
    unknown = set(doc) - set(_PUSHED_FIELDS)
    if missing or unknown:
        raise ValueError(f"images[{i}]: missing {missing}, unknown {sorted(unknown)}")
    if not all(isinstance(v, str) for v in doc.values()):
        raise ValueError(f"images[{i}]: every value must be a string")
    if not str(doc["digest"]).startswith("sha256:") or "@sha256:" not in str(doc["ref"]):
        raise ValueError(f"images[{i}]: digest and ref must name a sha256 digest")
    return Pushed(**doc)


def read_lock(path: Path) -> ImagesLock:
    """The one reader of images.lock.json; HarnessError naming the file and the entry."""
    if not path.is_file():
        raise HarnessError(f"{path}: no images lock; run `nox -s push` first")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
            raise ValueError("no list of images")
        if doc.get("schema") != LOCK_SCHEMA:
            raise ValueError(f"schema {doc.get('schema')!r}, this harness reads {LOCK_SCHEMA}")
        if not isinstance(doc.get("registry"), str):
            raise ValueError("no registry")
        images = tuple(_pushed_entry(e, i) for i, e in enumerate(doc["images"]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{path}: not an images lock ({exc}); run `nox -s push`") from None
    return ImagesLock(doc["registry"], str(doc.get("updated", "")), images)


def write_lock(path: Path, registry: str, pushed: Sequence[Pushed]) -> ImagesLock:
    """Merge these pushes into images.lock.json (earlier entries of other cells are kept,
    when they were pushed to the same registry)."""
    entries: dict[tuple[str, str], Pushed] = {}
    if path.is_file():
        try:
            old = read_lock(path)
            if old.registry == registry:
                entries = {(e.cell, e.role): e for e in old.images}
        except HarnessError:
            entries = {}  # an unreadable lock is replaced, never half-merged
    for p in pushed:
        entries[(p.cell, p.role)] = p
    lock = ImagesLock(
        registry,
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        tuple(entries[k] for k in sorted(entries)),
    )
    doc = {
        "schema": LOCK_SCHEMA,
        "registry": lock.registry,
        "updated": lock.updated,
        "images": [asdict(e) for e in lock.images],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)
    return lock
