"""Build a cell's head, worker and notebook images and check what was built.

Inputs per image (base image id, lock hash, Dockerfile hash, role, build args) give a
content-addressed build key stored as a label; an image whose label carries the same key
is reused and reported `cached`. After building, every image gets its structure checks
(`image_checks`), reused with the image when it is the very one checked before, by the
same check code (`image_checks.fingerprint`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from harness import children, image_checks, labels, lock, sbom, sdists
from harness.base import BaseImage
from harness.base import ensure as ensure_base
from harness.debian_lock import LockMoved
from harness.engine import Engine
from harness.errors import EngineError, HarnessError
from harness.files import write_atomic
from harness.matrix import NATIVE_PLATFORM, ROLES, Cell, Matrix
from harness.paths import Paths
from harness.progress import log, step
from harness.results import CellResult, Check, Image
from harness.wheelhouse import Wheelhouse, link_into


class BuildFailed(HarnessError):
    """One image of a cell did not build; carries the tail of its log."""

    exit_code = 1

    def __init__(self, role: str, log_path: Path, tail: str) -> None:
        super().__init__(f"building {role} failed (log: {log_path}):\n{tail}")
        self.role = role
        self.log_path = log_path
        self.tail = tail


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def image_files(paths: Paths) -> list[Path]:
    """The files beside the Dockerfile that it COPYs into images (Jupyter's config) or
    bind-mounts into a build step (trim.py)."""
    return sorted(
        p for p in paths.dockerfile.parent.iterdir() if p.is_file() and p.name != "Dockerfile"
    )


def recipe_sha(paths: Paths) -> str:
    """sha256 over the Dockerfile and every file it COPYs (names and contents)."""
    digest = hashlib.sha256()
    for path in [paths.dockerfile, *image_files(paths)]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def stage_context(paths: Paths, cell: Cell, wheelhouse: Wheelhouse, epoch: int) -> Path:
    """A minimal build context: Dockerfile, the files it COPYs, the two locks, and links to
    their wheels only."""
    ctx = paths.context(cell.id)
    if ctx.exists():
        shutil.rmtree(ctx)
    (ctx / "locks").mkdir(parents=True)
    shutil.copy2(paths.dockerfile, ctx / "Dockerfile")
    for extra in image_files(paths):  # what the Dockerfile COPYs or mounts, at the fixed time
        shutil.copyfile(extra, ctx / extra.name)
        os.utime(ctx / extra.name, (epoch, epoch))
    runtime = lock.lock_path(paths.locks, cell, "runtime")
    notebook = lock.lock_path(paths.locks, cell, "notebook")
    for source, name in ((runtime, "runtime.txt"), (notebook, "notebook.txt")):
        # an sdist pin also accepts the wheel built from it (pip checks the wheel's hash)
        built = {
            p.name: w
            for p in sdists.pins(source)
            if (w := wheelhouse.built(sorted(p.hashes)[0], cell.python, cell.arch))
        }
        (ctx / "locks" / name).write_text(
            sdists.with_wheel_hashes(source.read_text(encoding="utf-8"), built),
            encoding="utf-8",
        )
    runtime_wheels = wheelhouse.wheels_for(runtime, cell.python, cell.arch)
    names = {w.name for w in runtime_wheels}
    link_into(runtime_wheels, ctx / "wheels" / "runtime")
    link_into(
        [w for w in wheelhouse.wheels_for(notebook, cell.python, cell.arch) if w.name not in names],
        ctx / "wheels" / "notebook",
    )
    return ctx


def build_key(
    base: BaseImage,
    lock_sha: str,
    dockerfile_sha: str,
    role: str,
    args: dict[str, str],
    platform: str = NATIVE_PLATFORM,
) -> str:
    doc: dict[str, object] = {
        "base": base.id,
        "lock": lock_sha,
        "dockerfile": dockerfile_sha,
        "role": role,
        "args": args,
    }
    if platform != NATIVE_PLATFORM:  # linux/amd64 keys stay what they were
        doc["platform"] = platform
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def labels_for(
    cell: Cell, matrix: Matrix, role: str, base: BaseImage, commit: str, lock_sha: str, key: str
) -> dict[str, str]:
    created = datetime.fromtimestamp(matrix.source_date_epoch, tz=timezone.utc)
    return {
        "org.opencontainers.image.title": f"ray-{role}",
        "org.opencontainers.image.description": (
            f"Ray {cell.ray} {role} on Python {cell.python} ({cell.variant})"
        ),
        "org.opencontainers.image.version": cell.tag_suffix,
        "org.opencontainers.image.created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "org.opencontainers.image.base.name": base.ref,
        labels.MANAGED: "image",
        labels.ROLE: role,
        labels.CELL: cell.id,
        labels.RAY: cell.ray,
        labels.COMMIT: commit,
        labels.PYTHON: cell.python,
        labels.VARIANT: cell.variant,
        labels.PLATFORM: cell.platform,
        labels.LOCK: lock_sha,
        labels.BUILD_KEY: key,
        labels.ROOTFS: base.rootfs_sha256 or "",
        **({labels.BASE_LOCK: base.lock_sha256} if base.lock_sha256 else {}),
        **({labels.CUDA: cell.cuda} if cell.cuda else {}),
    }


def _docker_build(
    engine: Engine,
    ctx: Path,
    role: str,
    tag: str,
    args: dict[str, str],
    image_labels: dict[str, str],
    log_path: Path,
    no_cache: bool,
    platform: str = NATIVE_PLATFORM,
) -> None:
    cmd = ["build", "--network", "none", "--progress", "plain", "--target", role, "--tag", tag]
    if platform != NATIVE_PLATFORM:  # RUN steps execute under QEMU (binfmt_misc)
        cmd += ["--platform", platform]
    if no_cache:
        cmd.append("--no-cache")
    for k, v in args.items():
        cmd += ["--build-arg", f"{k}={v}"]
    for k, v in image_labels.items():
        cmd += ["--label", f"{k}={v}"]
    cmd.append(str(ctx))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        r = engine.run(cmd, timeout=3600, check=False, env={"DOCKER_BUILDKIT": "1"})
    except EngineError as exc:
        log_path.write_text(str(exc))
        raise BuildFailed(role, log_path, str(exc)) from None
    log_path.write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-25:])
        raise BuildFailed(role, log_path, tail)


def write_manifest(
    path: Path, image: Image, inputs: dict[str, object], facts: dict[str, object]
) -> None:
    """Everything that went into the image and what it contains: build/manifests/<cell>/."""
    doc = {
        "image": {"role": image.role, "tag": image.tag, "id": image.id, "labels": image.labels},
        "inputs": inputs,
        "measured": {k: facts.get(k) for k in ("python", "ray", "commit", "cuda")},
        "dpkg": facts.get("dpkg"),
        "pip_freeze": facts.get("pip_freeze"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(doc, indent=1, sort_keys=True))


def prepare(
    engine: Engine,
    matrix: Matrix,
    paths: Paths,
    cells: list[Cell],
    fresh: bool = False,
    wheelhouse: Wheelhouse | None = None,
) -> dict[str, BaseImage | str]:
    """Work shared by cells, done once: every lock's wheels, and one base per Python micro.
    A base needs no wheel: the bases build (one per core) while the wheels download. The
    wheels a cell builds from sdists come later, in its own job (`with_sdists`).

    Returns, per cell id, its base image or the reason it has none (that cell then fails;
    the others go on).
    """
    first: dict[tuple[str, str, str], Cell] = {}
    for cell in cells:
        first.setdefault((cell.base.label, cell.python, cell.platform), cell)

    def base_of(cell: Cell) -> BaseImage | str:
        try:
            with step(f"base {cell.base.label} (Python {cell.python}, {cell.platform})"):
                return ensure_base(engine, matrix, cell, paths.build / "rootfs", fresh=fresh)
        except LockMoved:
            raise  # the mirror is not what the locks say: the whole build stops (exit 2)
        except HarnessError as exc:
            return f"base {cell.base.label} for Python {cell.python}: {exc}"

    # an interrupt does not wait for the bases (the CLI's signal handling stops mmdebstrap)
    pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="raycompat-base")
    try:
        building = {key: pool.submit(base_of, cell) for key, cell in first.items()}
        house = wheelhouse or Wheelhouse(paths.wheelhouse)
        out: dict[str, BaseImage | str] = dict(_fetch_wheels(paths, cells, house))
        bases = {key: future.result() for key, future in building.items()}
    except LockMoved:
        children.stop_all()  # the other bases' mmdebstrap: nothing more is built
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    for cell in cells:
        out.setdefault(cell.id, bases[(cell.base.label, cell.python, cell.platform)])
    return out


def _locks(paths: Paths, cell: Cell) -> list[Path]:
    """The cell's runtime lock, then its notebook lock (`sdists.build_for` takes pip from
    the first)."""
    return [lock.lock_path(paths.locks, cell, kind) for kind in ("runtime", "notebook")]


def pins_sdists(paths: Paths, cell: Cell) -> bool:
    """Whether one of the cell's locks pins a package published only as an sdist."""
    return any(f.is_file() and lock.sdist_names(f) for f in _locks(paths, cell))


def with_sdists(
    engine: Engine, matrix: Matrix, paths: Paths, cell: Cell, base: BaseImage | str
) -> BaseImage | str:
    """`base`, once the sdists the cell's locks pin are wheels in the wheelhouse (built in
    that base, once: cached by hash); or why the cell cannot be built. Called by the cell's
    own build job, so the cells that pin no sdist do not wait for those that do."""
    if not isinstance(base, BaseImage) or not pins_sdists(paths, cell):
        return base
    try:
        with step(f"{cell.id}: wheels from sdists"):
            sdists.build_for(
                engine, cell, base.ref, base.id, _locks(paths, cell), Wheelhouse(paths.wheelhouse),
                matrix.source_date_epoch,
            )  # fmt: skip
    except HarnessError as exc:
        return f"{cell.id}: {exc}"
    return base


def _fetch_wheels(paths: Paths, cells: list[Cell], wheelhouse: Wheelhouse) -> dict[str, str]:
    """Every lock's wheels into the wheelhouse; per cell whose wheels failed, why."""
    failed: dict[str, str] = {}
    with step(f"wheels for {len(cells)} cell(s) into {paths.wheelhouse}"):
        fetched = 0
        for cell in cells:
            try:
                for kind in lock.KINDS:
                    fetched += wheelhouse.fetch(lock.lock_path(paths.locks, cell, kind), cell)
            except HarnessError as exc:
                failed[cell.id] = f"wheels: {exc}"
                log(f"{cell.id}: wheels failed: {str(exc).splitlines()[0]}")
        log(f"wheelhouse: {fetched} wheel(s) downloaded, the rest already there")
    return failed


def drop_replaced(engine: Engine, old: Mapping[str, object] | None, tag: str) -> None:
    """Remove the image `tag` named before a rebuild, once nothing names or uses it.

    Docker leaves a replaced image behind, untagged; a harness that rebuilds ~1 GB images
    whenever an input changes would fill the disk with them. The engine refuses while a
    container uses it; another tag on it keeps it too. An image built FROM it keeps only
    the layers they share (BuildKit records no parent image)."""
    if not old:
        return
    old_id = str(old.get("Id"))
    now = engine.inspect("image", old_id)
    if (
        now is None
        or now.get("RepoTags")
        or (engine.inspect("image", tag) or {}).get("Id") == old_id
    ):
        return
    if engine.untag(old_id):
        log(f"{tag}: removed the image it replaced ({old_id.removeprefix('sha256:')[:12]})")


def build_cell(
    engine: Engine,
    matrix: Matrix,
    paths: Paths,
    cell: Cell,
    base: BaseImage,
    no_cache: bool = False,
    previous: CellResult | None = None,
    extra_labels: Mapping[str, str] | None = None,
) -> tuple[list[Image], list[Check]]:
    """Build (or reuse) the three images of a cell; return them and their structure checks.

    An image whose build key is unchanged is reused (`cached`); if it is also the very
    image `previous` checked, by the same check code, its structure checks are reused too,
    so a no-op build only asks the engine a few questions."""
    lock.check(paths.locks, cell, matrix)
    runtime_lock = lock.lock_path(paths.locks, cell, "runtime")
    notebook_lock = lock.lock_path(paths.locks, cell, "notebook")
    wheelhouse = Wheelhouse(paths.wheelhouse)
    commit = ""
    lock_sha = lock.file_digest(runtime_lock, notebook_lock)
    dockerfile_sha = recipe_sha(paths)
    args = {
        "BASE_IMAGE": base.ref,
        "PYTHON": "python3",
        "SOURCE_DATE_EPOCH": str(matrix.source_date_epoch),
        "VARIANT": cell.variant,
    }
    if cell.cuda:
        args["CUDA_VERSION"] = cell.cuda
    images: list[Image] = []
    checks: list[Check] = []
    checked = {i.role: (i.id, i.checked_with) for i in previous.images} if previous else {}
    ctx: Path | None = None
    for role in ROLES:
        tag = cell.tag(matrix.prefix, role)
        key = build_key(base, lock_sha, dockerfile_sha, role, args, cell.platform)
        existing = engine.inspect("image", tag)
        existing_labels = (existing or {}).get("Config", {}).get("Labels") or {}
        cached = (
            not no_cache and existing is not None and existing_labels.get(labels.BUILD_KEY) == key
        )
        start = time.monotonic()
        if cached:
            log(f"{cell.id}: {role} cached ({tag})")
            if (
                previous
                and existing
                and checked.get(role) == (existing.get("Id"), image_checks.fingerprint())
                and paths.manifest(cell.id, role).is_file()
                and paths.sbom(cell.id, role).is_file()
            ):
                # Same image as last checked, by the same checks: their results still hold.
                prefix = f"image:{role}:"
                reused = [c for c in previous.build_checks if c.name.startswith(prefix)]
                complete = {c.name for c in reused} >= set(
                    image_checks.structure_check_names(cell, role)
                )
                if complete and all(c.status in ("passed", "skipped") for c in reused):
                    images.append(next(i for i in previous.images if i.role == role))
                    images[-1].cached = True
                    checks += reused
                    continue
        else:
            if ctx is None:
                ctx = stage_context(paths, cell, wheelhouse, matrix.source_date_epoch)
                commit = wheelhouse.ray_commit(runtime_lock, cell.python, cell.arch)
            with step(f"{cell.id}: build {role} -> {tag}"):
                # --no-cache rebuilds the shared runtime stage once (with the first role);
                # the other roles reuse that fresh stage instead of rebuilding it again.
                _docker_build(
                    engine,
                    ctx,
                    role,
                    tag,
                    args,
                    {
                        **labels_for(cell, matrix, role, base, commit, lock_sha, key),
                        **(extra_labels or {}),
                    },
                    paths.logs(cell.id) / f"{role}.log",
                    no_cache and role == ROLES[0],
                    cell.platform,
                )
            drop_replaced(engine, existing, tag)
        info = engine.inspect("image", tag) or {}
        images.append(
            Image(
                role=role,
                tag=tag,
                id=str(info.get("Id")),
                size_bytes=int(info.get("Size") or 0),
                cached=cached,
                build_seconds=round(time.monotonic() - start, 2),
                labels=dict((info.get("Config") or {}).get("Labels") or {}),
                checked_with=image_checks.fingerprint(),
            )
        )
        with step(f"{cell.id}: structure checks {role}"):
            role_checks, facts = image_checks.structure_checks(engine, cell, role, tag)
            made = sbom.check(
                paths.sbom(cell.id, role), cell, role, images[-1].id, tag, facts,
                matrix.source_date_epoch,
            )  # fmt: skip
            made.image_id = images[-1].id
        checks += [*role_checks, made]
        inputs: dict[str, object] = {
            "base": dataclasses.asdict(base),
            "locks": {
                "runtime.txt": _sha256_file(runtime_lock),
                "notebook.txt": _sha256_file(notebook_lock),
            },
            "lock_sha256": lock_sha,
            "dockerfile_sha256": dockerfile_sha,
            "build_args": args,
            "build_key": key,
            "wheels": {
                w.name: wheelhouse.sha256_of(w)
                for w in wheelhouse.wheels_for(
                    notebook_lock if role == "notebook" else runtime_lock, cell.python, cell.arch
                )
            },
        }
        write_manifest(paths.manifest(cell.id, role), images[-1], inputs, facts)
    return images, checks
