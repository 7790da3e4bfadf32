"""The push gate: only images that passed build and test, unchanged since, reach a registry.

For each selected cell the gate reads the test report: the cell must be `passed`, and every
role's local image id must equal the id that was tested. Approved images are tagged into
the target registry, pushed with Docker's own credentials (config or credential helper),
pulled back by digest and compared, and recorded in `build/images.lock.json`, the
tag/digest contract operators consume.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from harness import pulls, registry_api, report, vulns
from harness.engine import Engine
from harness.errors import EngineError, HarnessError
from harness.files import write_atomic
from harness.image_checks import structure_check_names
from harness.matrix import LAYER_COMPRESSIONS, PLATFORMS, ROLES, Cell, Matrix, registry_problem
from harness.progress import log
from harness.results import ERROR, FAILED, PASSED, SKIPPED, CellResult, CellStatus

ENV = "RAYCOMPAT_REGISTRY"
# 2: gpu_e2e per entry; 3: platforms per entry; 4: dated tag, push time and the history of
# digests pushed before; 5: the layers' compression (schemas 2 to 4 are still read)
LOCK_SCHEMA = 5
READ_SCHEMAS = (2, 3, 4, 5)
PROVEN = {True: "native", False: "emulated (QEMU)"}  # how a platform's images were tested


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
class PlatformImage:
    """One platform's image behind a multi-arch tag."""

    platform: str  # linux/amd64 | linux/arm64
    cell: str  # the local cell id (…-arm64 for arm64)
    digest: str  # its manifest's digest, which the index lists
    image_id: str  # the tested image
    proven: str  # "native" or "emulated (QEMU)"


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
    # every platform behind `digest` (an image index when there are several)
    platforms: tuple[PlatformImage, ...] = ()
    dated_tag: str = ""  # REGISTRY/ray-ROLE:SUFFIX-YYYYMMDD[.N]: this digest, for good
    pushed_at: str = ""  # UTC, when the plain tag moved to this digest
    signed: str = ""  # how the digest was signed and attested (harness.signing), or ""
    signature: str = ""  # digest of cosign's signature manifest (REPO:sha256-<hex>.sig)
    attestations: str = ""  # digest of cosign's attestation manifest (…​.att)
    layers: str = ""  # the layers' compression, gzip or zstd ("": not recorded, schema < 5)


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
            if result.status == CellStatus.NOT_VERIFIED:
                why += f" (not proven: {', '.join(result.unproven())})"
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
    return _whole_indexes(m, approved, refused)


def gate_vulnerabilities(
    m: Matrix,
    approved: list[Approved],
    refused: list[Refusal],
    scan_dirs: Sequence[Path],
    today: datetime.date,
) -> tuple[list[Approved], list[Refusal], vulns.Verdict | None]:
    """With `vulnerabilities:` in the matrix, the approved images' scanner reports against
    its threshold and exceptions (harness.vulns): a cell with a blocking finding, an image
    with no report, or named by an expired or unused exception, is refused whole."""
    policy = m.vulnerabilities
    if policy is None or not approved:
        return approved, refused, None
    exceptions = vulns.load_exceptions(policy.exceptions, today)
    scans = vulns.load_scans(scan_dirs)
    images = [(f"{a.cell.id}/{a.role}", a.image_id) for a in approved]
    verdict = vulns.judge(images, scans, exceptions, policy.fail_on, today)
    why = verdict.refused_cells()
    for e in exceptions:
        problem = next((p for p in verdict.exception_problems if p.startswith(e.where)), None)
        for cell in sorted(
            {a.cell.id for a in approved if problem and e.names(f"{a.cell.id}/{a.role}")}
        ):
            why[cell] = f"{why[cell]}; {problem}" if cell in why else str(problem)
    refused += [Refusal(cell, "", f"vulnerabilities: {w}") for cell, w in sorted(why.items())]
    kept = [a for a in approved if a.cell.id not in why]
    kept, refused = _whole_indexes(m, kept, refused)
    return kept, refused, verdict


def _whole_indexes(
    m: Matrix, approved: list[Approved], refused: list[Refusal]
) -> tuple[list[Approved], list[Refusal]]:
    """A multi-arch tag goes out with every platform the matrix gives its cell, or not at
    all: pushing the amd64 image alone would take arm64 away from whoever pulls the tag."""
    ok = {a.cell.id for a in approved}
    out: list[Approved] = []
    for a in approved:
        siblings = [c for c in m.cells if c.index_suffix == a.cell.index_suffix]
        missing = [c for c in siblings if c.id not in ok]
        if not missing:
            out.append(a)
            continue
        if a.role == ROLES[0]:
            names = ", ".join(f"{c.id} ({c.platform})" for c in missing)
            refused.append(
                Refusal(
                    a.cell.id,
                    "",
                    f"its tag is multi-arch and {names} did not pass the gate (or was not "
                    "selected): every platform goes out together",
                )
            )
    return out, refused


def _repo(registry: str, role: str) -> str:
    return f"{registry}/ray-{role}"


# Signs and attests one pushed image by digest (REPO@sha256:...), then verifies it; raises
# HarnessError when it cannot. Returns how it was signed and the digests of its signature
# and attestations as stored in the registry (Pushed.signed, .signature, .attestations).
Attester = Callable[[Approved, str], tuple[str, str, str]]


def push(
    engine: Engine,
    registry: str,
    approved: Sequence[Approved],
    work: Path,
    build: Path | None = None,
    attest: Attester | None = None,
    compression: str = "gzip",
) -> tuple[list[Pushed], list[str]]:
    """Push approved cells, each whole or not at all: every role's blobs and manifest go up
    by digest (untagged), each is pulled back by digest and must be the tested image, and
    only then are the cell's tags moved; a failed move puts back the tags already moved.
    A cell that fails leaves its tags as they were; the others still go. Returns what was
    pushed and why the failed cells failed. With `build`, each pushed image's compressed
    layers are recorded there for the report (harness.pulls). `compression`: the layers'
    (the matrix's `layer_compression`)."""
    host, _, path = registry.partition("/")
    api = registry_api.Registry(host)
    exporter = registry_api.Exporter(engine, work, compression)
    out: list[Pushed] = []
    failures: list[str] = []
    try:
        api.ping()
    except registry_api.RegistryError as exc:
        cells = sorted({a.cell.id for a in approved})
        return [], [f"push to {registry} failed: {exc}; no tag of {', '.join(cells)} was changed"]
    try:
        by_tag: dict[str, list[Approved]] = {}  # every platform of a tag together
        for a in approved:
            by_tag.setdefault(a.cell.index_suffix, []).append(a)
        for roles in by_tag.values():
            try:
                pushed, layers = _push_cell(engine, api, exporter, registry, path, roles, attest)
                out += pushed
                if build is not None:
                    _record_pulls(build, layers)
            except EngineError as exc:
                failures.append(str(exc))
    finally:
        exporter.close()
    return out, failures


def pulls_zstd(engine_version: str) -> bool:
    """Whether a Docker engine of this version pulls zstd layers (23.0 and later)."""
    major = engine_version.split(".", 1)[0]
    return major.isdigit() and int(major) >= 23


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
    attest: Attester | None = None,
) -> tuple[list[Pushed], dict[str, list[pulls.Layer]]]:
    """One tag's images (one cell; or one per platform of a multi-arch tag), whole or not at
    all; what was pushed, and each image's compressed layers. With `attest`, each role's
    digest is signed, attested and verified before any tag moves."""
    native = next((a.cell for a in roles if a.cell.native), roles[0].cell)
    suffix = native.index_suffix
    names = ", ".join(sorted({a.cell.id for a in roles}))
    t0 = time.monotonic()
    manifests: dict[tuple[str, str], registry_api.Manifest] = {}  # (platform, role) -> it
    uploaded: dict[str, str] = {}  # blob digest -> repo it is already in
    layers: dict[str, list[registry_api.Blob]] = {}  # image id -> its compressed layers
    for a in roles:  # 1. everything up by digest; no tag changes yet
        repo = f"{path}/ray-{a.role}"
        what = f"push of {_repo(registry, a.role)}:{suffix} ({a.cell.platform})"
        try:
            exported = exporter.export(a.image_id)
            layers[a.image_id] = exported.layers
            for blob in [*exported.layers, exported.config]:
                api.upload(repo, blob, mount_from=uploaded.get(blob.digest))
                uploaded.setdefault(blob.digest, repo)
            manifest = exported.manifest()
            api.put_manifest(repo, manifest.digest, manifest)
        except registry_api.RegistryError as exc:
            raise registry_api.RegistryError(
                f"{what} failed: {exc}; no tag of {names} was changed"
            ) from None
        manifests[(a.cell.platform, a.role)] = manifest
    client = exporter.compression == "gzip" or pulls_zstd(engine.ping())
    read_back: dict[str, str] = {}  # layers read back whole (blob digest -> diff id)
    for a in roles:  # 2. the registry serves the tested image under that digest
        digest = manifests[(a.cell.platform, a.role)].digest
        ref = f"{_repo(registry, a.role)}@{digest}"
        if not client:  # what a pull checks, through the registry's API
            try:
                repo = f"{path}/ray-{a.role}"
                registry_api.verify_pushed(api, repo, digest, a.image_id, read_back)
            except registry_api.RegistryError as exc:
                raise registry_api.RegistryError(
                    f"{ref} is not the tested image: {exc}; no tag of {names} was changed"
                ) from None
            continue
        engine.untag(ref)  # a pull satisfied locally proves nothing
        engine.pull(ref, timeout=3600)
        pulled = engine.inspect("image", ref)
        if pulled is None or pulled["Id"] != a.image_id:
            got = pulled["Id"] if pulled else "nothing"
            raise EngineError(
                f"pulled {ref} back and got {got}, not the tested {a.image_id}; "
                f"no tag of {names} was changed"
            )
    platforms = sorted({a.cell.platform for a in roles}, key=PLATFORMS.index)
    tagged = {  # 3. what each role's tag names: the image, or an index of every platform
        role: _index(api, f"{path}/ray-{role}", platforms, manifests, role)
        if len(platforms) > 1
        else manifests[(platforms[0], role)]
        for role in ROLES
    }
    signed = {role: ("", "", "") for role in ROLES}
    if attest is not None:  # 4. signed, attested and verified by digest, or no tag moves
        for role in ROLES:
            first = next(a for a in roles if a.role == role and a.cell.platform == platforms[0])
            ref = f"{_repo(registry, role)}@{tagged[role].digest}"
            try:
                signed[role] = attest(first, ref)
            except HarnessError as exc:
                raise registry_api.RegistryError(
                    f"signing {ref} failed: {exc}; no tag of {names} was changed"
                ) from None
    day = time.strftime("%Y%m%d", time.gmtime())
    try:  # 5. a dated tag per digest, then the plain tags, all or none
        dated = {r: _dated_tag(api, f"{path}/ray-{r}", suffix, day, tagged[r]) for r in ROLES}
    except registry_api.RegistryError as exc:
        raise registry_api.RegistryError(
            f"the dated tags of {names} failed: {exc}; no plain tag of {names} was changed"
        ) from None
    _move_tags(api, path, suffix, names, tagged)
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out = []
    for role in ROLES:
        digest = tagged[role].digest
        mine = [a for a in roles if a.role == role]
        first = next(a for a in mine if a.cell.platform == platforms[0])
        gpu = (first.note or PASSED) if native.variant == "gpu" else ""
        remote = f"{_repo(registry, role)}:{suffix}"
        images = tuple(
            PlatformImage(
                a.cell.platform, a.cell.id, manifests[(a.cell.platform, role)].digest,
                a.image_id, PROVEN[a.cell.native],
            )
            for a in sorted(mine, key=lambda a: PLATFORMS.index(a.cell.platform))
        )  # fmt: skip
        out.append(
            Pushed(
                native.id, native.ray, native.python, native.variant, role, remote, digest,
                f"{_repo(registry, role)}@{digest}", first.image_id, gpu, images,
                f"{_repo(registry, role)}:{dated[role]}", at, *signed[role], exporter.compression,
            )
        )  # fmt: skip
    by_image = {a.image_id: [(b.digest, b.size) for b in layers[a.image_id]] for a in roles}
    for platform in platforms:
        by_role = {a.role: by_image[a.image_id] for a in roles if a.cell.platform == platform}
        log(f"push: {suffix} {platform}: pull {pulls.summary(by_role)}")
    what = f"an index of {', '.join(platforms)} per role" if len(platforms) > 1 else "tags"
    back = (
        "pulled back by digest (same images)"
        if client
        else "read back by digest through the registry's API, every layer unpacked to the "
        "tested image's (this engine cannot pull zstd layers: Docker 23 or later can)"
    )
    log(
        f"push: {names}: {len(roles)} image(s) uploaded ({exporter.compression} layers), "
        f"{back}, {what} in {time.monotonic() - t0:.1f}s"
    )
    return out, by_image


def _dated_tag(
    api: registry_api.Registry, repo: str, suffix: str, day: str, manifest: registry_api.Manifest
) -> str:
    """Tag the digest `SUFFIX-YYYYMMDD` (`.2`, `.3`... when that day already has another
    digest): a patch rebuild moves the plain tag, and every digest it ever named stays
    pullable by a tag of its own. Put before the plain tag moves; a new tag harms nothing."""
    for n in range(1, 100):
        tag = f"{suffix}-{day}" + (f".{n}" if n > 1 else "")
        there = api.manifest(repo, tag)
        if there is not None and there.digest == manifest.digest:
            return tag  # this very digest, pushed again today
        if there is None:
            api.put_manifest(repo, tag, manifest)
            return tag
    raise registry_api.RegistryError(f"{repo}: 99 dated tags on {day} already")


def _index(
    api: registry_api.Registry,
    repo: str,
    platforms: Sequence[str],
    manifests: Mapping[tuple[str, str], registry_api.Manifest],
    role: str,
) -> registry_api.Manifest:
    """Put one role's image index (a Docker manifest list; an OCI index of zstd images) by
    digest and read it back: it must list exactly each platform's pushed manifest."""
    index = registry_api.index_of([(p, manifests[(p, role)]) for p in platforms])
    api.put_manifest(repo, index.digest, index)
    served = api.manifest(repo, index.digest)
    listed = registry_api.index_entries(served) if served is not None else {}
    want = {p: manifests[(p, role)].digest for p in platforms}
    if listed != want:
        raise registry_api.RegistryError(
            f"{repo}@{index.digest}: the registry serves an index of {listed}, not {want}"
        )
    return index


def _move_tags(
    api: registry_api.Registry,
    path: str,
    suffix: str,
    names: str,
    manifests: Mapping[str, registry_api.Manifest],
) -> None:
    """Point the tags at the new manifests; on a failure, restore those moved."""
    before: dict[str, registry_api.Manifest | None] = {
        role: api.manifest(f"{path}/ray-{role}", suffix) for role in manifests
    }
    moved: list[str] = []
    try:
        for role, manifest in manifests.items():
            api.put_manifest(f"{path}/ray-{role}", suffix, manifest)
            moved.append(role)
    except registry_api.RegistryError as exc:
        unrestored = []
        for role in moved:
            repo, old = f"{path}/ray-{role}", before[role]
            try:
                if old is not None:
                    api.put_manifest(repo, suffix, old)
                elif not api.delete_tag(repo, suffix):
                    unrestored.append(role)
            except registry_api.RegistryError:
                unrestored.append(role)
        left = (
            f"; could not restore the {', '.join(unrestored)} tag(s)"
            if unrestored
            else "; the tags already moved were put back"
        )
        raise registry_api.RegistryError(
            f"moving the tags of {names} failed: {exc}{left}"
        ) from None


@dataclass(frozen=True)
class ImagesLock:
    """build/images.lock.json, read back typed."""

    registry: str
    updated: str
    images: tuple[Pushed, ...]
    history: tuple[Pushed, ...] = ()  # what the tags named before, newest first

    def refs(self) -> dict[str, dict[str, str]]:
        """Pushed refs (by digest) per cell and role."""
        out: dict[str, dict[str, str]] = {}
        for e in self.images:
            out.setdefault(e.cell, {})[e.role] = e.ref
        return out


_PUSHED_FIELDS = tuple(f.name for f in fields(Pushed))


_PLATFORM_FIELDS = tuple(f.name for f in fields(PlatformImage))


def _pushed_entry(doc: object, i: int) -> Pushed:
    if not isinstance(doc, dict):
        raise ValueError(f"images[{i}] is not an object")
    doc = dict(doc)
    raw = doc.pop("platforms", [])
    optional = (  # older schemas lack them
        "gpu_e2e", "platforms", "dated_tag", "pushed_at", "signed", "signature", "attestations",
        "layers",
    )  # fmt: skip
    missing = [k for k in _PUSHED_FIELDS if k not in doc and k not in optional]
    unknown = set(doc) - set(_PUSHED_FIELDS)
    if missing or unknown:
        raise ValueError(f"images[{i}]: missing {missing}, unknown {sorted(unknown)}")
    if not all(isinstance(v, str) for v in doc.values()):
        raise ValueError(f"images[{i}]: every value must be a string")
    if not str(doc["digest"]).startswith("sha256:") or "@sha256:" not in str(doc["ref"]):
        raise ValueError(f"images[{i}]: digest and ref must name a sha256 digest")
    if doc.get("layers", "") not in ("", *LAYER_COMPRESSIONS):
        raise ValueError(f"images[{i}].layers: {doc['layers']!r}, not one of {LAYER_COMPRESSIONS}")
    if not isinstance(raw, list) or not all(
        isinstance(p, dict)
        and set(p) == set(_PLATFORM_FIELDS)
        and all(isinstance(v, str) for v in p.values())
        for p in raw
    ):
        raise ValueError(f"images[{i}].platforms: a list of {{{', '.join(_PLATFORM_FIELDS)}}}")
    return Pushed(**doc, platforms=tuple(PlatformImage(**p) for p in raw))


def read_lock(path: Path) -> ImagesLock:
    """The one reader of images.lock.json; HarnessError naming the file and the entry."""
    if not path.is_file():
        raise HarnessError(f"{path}: no images lock; run `nox -s push` first")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
            raise ValueError("no list of images")
        if doc.get("schema") not in READ_SCHEMAS:
            raise ValueError(
                f"schema {doc.get('schema')!r}, this harness reads "
                f"{', '.join(map(str, READ_SCHEMAS))}"
            )
        if not isinstance(doc.get("registry"), str):
            raise ValueError("no registry")
        images = tuple(_pushed_entry(e, i) for i, e in enumerate(doc["images"]))
        raw = doc.get("history", [])
        if not isinstance(raw, list):
            raise ValueError("history is not a list")
        history = tuple(_pushed_entry(e, i) for i, e in enumerate(raw))
    except (ValueError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{path}: not an images lock ({exc}); run `nox -s push`") from None
    return ImagesLock(doc["registry"], str(doc.get("updated", "")), images, history)


def write_lock(path: Path, registry: str, pushed: Sequence[Pushed]) -> ImagesLock:
    """Merge these pushes into images.lock.json (earlier entries of other cells are kept,
    when they were pushed to the same registry)."""
    entries: dict[tuple[str, str], Pushed] = {}
    history: list[Pushed] = []
    if path.is_file():
        try:
            old = read_lock(path)
            if old.registry == registry:
                entries = {(e.cell, e.role): e for e in old.images}
                history = list(old.history)
        except HarnessError:
            entries = {}  # an unreadable lock is replaced, never half-merged
    for p in pushed:
        before = entries.get((p.cell, p.role))
        if before is not None and before.digest != p.digest:
            history.insert(0, before)  # a patch rebuild: the old digest stays on record
        entries[(p.cell, p.role)] = p
    lock = ImagesLock(
        registry,
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        tuple(entries[k] for k in sorted(entries)),
        tuple(history),
    )
    doc = {
        "schema": LOCK_SCHEMA,
        "registry": lock.registry,
        "updated": lock.updated,
        "images": [asdict(e) for e in lock.images],
        "history": [asdict(e) for e in lock.history],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(doc, indent=1) + "\n")
    return lock
