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
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from harness import pulls, registry_api, report
from harness.engine import Engine
from harness.errors import EngineError, HarnessError
from harness.image_checks import structure_check_names
from harness.matrix import ROLES, Cell, Matrix, registry_problem
from harness.progress import log
from harness.results import ERROR, FAILED, PASSED, SKIPPED, CellResult, CellStatus

ENV = "RAYCOMPAT_REGISTRY"
LOCK_SCHEMA = 2  # 2: gpu_e2e per entry


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
        if result.status != CellStatus.PASSED:
            bad = [c.name for c in result.checks if c.status in (FAILED, ERROR)]
            why = f"status {result.status!r}" + (f" (failed: {', '.join(bad[:5])})" if bad else "")
            if result.status == CellStatus.BUILT:
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
            problem = _structure_problem(cell, role, result, tested[role])
            if problem:
                refused.append(Refusal(cell.id, role, problem))
                continue
            cell_ok.append(Approved(cell, role, tag, info["Id"], note))
        if len(cell_ok) == len(ROLES):  # a cell goes out whole or not at all
            approved += cell_ok
    return approved, refused


def _repo(registry: str, role: str) -> str:
    return f"{registry}/ray-{role}"


def push(
    engine: Engine,
    registry: str,
    approved: Sequence[Approved],
    work: Path,
    build: Path | None = None,
) -> tuple[list[Pushed], list[str]]:
    """Push approved cells, each whole or not at all: every role's blobs and manifest go up
    by digest (untagged), each is pulled back by digest and must be the tested image, and
    only then are the cell's tags moved; a failed move puts back the tags already moved.
    A cell that fails leaves its tags as they were; the others still go. Returns what was
    pushed and why the failed cells failed. With `build`, each pushed image's compressed
    layers are recorded there for the report (harness.pulls)."""
    host, _, path = registry.partition("/")
    api = registry_api.Registry(host)
    exporter = registry_api.Exporter(engine, work)
    out: list[Pushed] = []
    failures: list[str] = []
    try:
        api.ping()
    except registry_api.RegistryError as exc:
        cells = sorted({a.cell.id for a in approved})
        return [], [f"push to {registry} failed: {exc}; no tag of {', '.join(cells)} was changed"]
    try:
        by_cell: dict[str, list[Approved]] = {}
        for a in approved:
            by_cell.setdefault(a.cell.id, []).append(a)
        for roles in by_cell.values():
            try:
                pushed, layers = _push_cell(engine, api, exporter, registry, path, roles)
                out += pushed
                if build is not None:
                    _record_pulls(build, layers)
            except EngineError as exc:
                failures.append(str(exc))
    finally:
        exporter.close()
    return out, failures


def _record_pulls(build: Path, layers: Mapping[str, Sequence[pulls.Layer]]) -> None:
    """The report's pull sizes: figures, so a failure to write them never fails a push."""
    try:
        pulls.record(build, layers)
    except OSError as exc:
        log(f"push: pull sizes not recorded in {build / pulls.FILE}: {exc}")


def _push_cell(
    engine: Engine,
    api: registry_api.Registry,
    exporter: registry_api.Exporter,
    registry: str,
    path: str,
    roles: Sequence[Approved],
) -> tuple[list[Pushed], dict[str, list[pulls.Layer]]]:
    """One cell, whole or not at all; what was pushed, and each image's compressed layers."""
    cell = roles[0].cell
    t0 = time.monotonic()
    manifests: dict[str, registry_api.Manifest] = {}
    uploaded: dict[str, str] = {}  # blob digest -> repo it is already in
    layers: dict[str, list[registry_api.Blob]] = {}
    for a in roles:  # 1. everything up by digest; no tag changes yet
        repo = f"{path}/ray-{a.role}"
        what = f"push of {_repo(registry, a.role)}:{cell.tag_suffix}"
        try:
            exported = exporter.export(a.image_id)
            layers[a.role] = exported.layers
            for blob in [*exported.layers, exported.config]:
                api.upload(repo, blob, mount_from=uploaded.get(blob.digest))
                uploaded.setdefault(blob.digest, repo)
            manifest = exported.manifest()
            api.put_manifest(repo, manifest.digest, manifest)
        except registry_api.RegistryError as exc:
            raise registry_api.RegistryError(
                f"{what} failed: {exc}; no tag of {cell.id} was changed"
            ) from None
        manifests[a.role] = manifest
    for a in roles:  # 2. the registry serves the tested image under that digest
        ref = f"{_repo(registry, a.role)}@{manifests[a.role].digest}"
        engine.untag(ref)  # a pull satisfied locally proves nothing
        engine.pull(ref, timeout=3600)
        pulled = engine.inspect("image", ref)
        if pulled is None or pulled["Id"] != a.image_id:
            got = pulled["Id"] if pulled else "nothing"
            raise EngineError(
                f"pulled {ref} back and got {got}, not the tested {a.image_id}; "
                f"no tag of {cell.id} was changed"
            )
    _move_tags(api, path, cell, manifests)  # 3. the tags, all or none
    out = []
    for a in roles:
        digest = manifests[a.role].digest
        gpu = (a.note or PASSED) if cell.variant == "gpu" else ""
        remote = f"{_repo(registry, a.role)}:{cell.tag_suffix}"
        out.append(
            Pushed(
                cell.id, cell.ray, cell.python, cell.variant, a.role, remote, digest,
                f"{_repo(registry, a.role)}@{digest}", a.image_id, gpu,
            )
        )  # fmt: skip
    by_role = {role: [(b.digest, b.size) for b in blobs] for role, blobs in layers.items()}
    log(
        f"push: {cell.id}: {len(roles)} image(s) uploaded, pulled back (same images), tags "
        f"moved in {time.monotonic() - t0:.1f}s; pull: {pulls.summary(by_role)}"
    )
    return out, {a.image_id: by_role[a.role] for a in roles}


def _move_tags(
    api: registry_api.Registry,
    path: str,
    cell: Cell,
    manifests: Mapping[str, registry_api.Manifest],
) -> None:
    """Point the cell's tags at the new manifests; on a failure, restore those moved."""
    before: dict[str, registry_api.Manifest | None] = {
        role: api.manifest(f"{path}/ray-{role}", cell.tag_suffix) for role in manifests
    }
    moved: list[str] = []
    try:
        for role, manifest in manifests.items():
            api.put_manifest(f"{path}/ray-{role}", cell.tag_suffix, manifest)
            moved.append(role)
    except registry_api.RegistryError as exc:
        unrestored = []
        for role in moved:
            repo, old = f"{path}/ray-{role}", before[role]
            try:
                if old is not None:
                    api.put_manifest(repo, cell.tag_suffix, old)
                elif not api.delete_tag(repo, cell.tag_suffix):
                    unrestored.append(role)
            except registry_api.RegistryError:
                unrestored.append(role)
        left = (
            f"; could not restore the {', '.join(unrestored)} tag(s)"
            if unrestored
            else "; the tags already moved were put back"
        )
        raise registry_api.RegistryError(
            f"moving the tags of {cell.id} failed: {exc}{left}"
        ) from None


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
