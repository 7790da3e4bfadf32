"""Build a cell's head, worker and notebook images and check what was built.

Inputs per image (base image id, lock hash, Dockerfile hash, role, build args) give a
content-addressed build key stored as a label; an image whose label carries the same key
is reused and reported `cached`. After building, labels are read back and compared with
what the probe measures inside the image (structure checks).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from harness import labels, lock
from harness.backends import probe_result
from harness.base import BaseImage
from harness.base import ensure as ensure_base
from harness.engine import Engine
from harness.errors import EngineError, HarnessError
from harness.inside import PROBE_SOURCE
from harness.matrix import ROLES, Cell, Matrix
from harness.paths import Paths
from harness.progress import log, step
from harness.results import SKIPPED, CellResult, Check, Image
from harness.wheelhouse import Wheelhouse, link_into

EXPECTED_CMD = {
    "head": "ray start --head",
    "worker": "ray start --block",
    "notebook": "jupyter lab",
}
RUNTIME_USER = "1000:1000"
# The structure checks every image gets (`image:<role>:<name>`); the gate refuses a cell
# unless each ran on the very image id that was tested.
STRUCTURE_CHECKS = (
    "python",
    "ray",
    "labels",
    "non-root",
    "cmd",
    "ray-cli",
    "no-leftovers",
    "bytecode",
    "base-layer",
    "kuberay-shell",
    "no-secrets",
)


def structure_check_names(cell: Cell, role: str) -> list[str]:
    """Names of the structure checks an image of `cell` in `role` must carry."""
    names = [*STRUCTURE_CHECKS, *(["cuda"] if cell.cuda else [])]
    return [f"image:{role}:{n}" for n in names]


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


def stage_context(paths: Paths, cell: Cell, wheelhouse: Wheelhouse) -> Path:
    """A minimal build context: Dockerfile, the two locks, and links to their wheels only."""
    ctx = paths.context(cell.id)
    if ctx.exists():
        shutil.rmtree(ctx)
    (ctx / "locks").mkdir(parents=True)
    shutil.copy2(paths.dockerfile, ctx / "Dockerfile")
    runtime = lock.lock_path(paths.locks, cell, "runtime")
    notebook = lock.lock_path(paths.locks, cell, "notebook")
    shutil.copy2(runtime, ctx / "locks" / "runtime.txt")
    shutil.copy2(notebook, ctx / "locks" / "notebook.txt")
    runtime_wheels = wheelhouse.wheels_for(runtime, cell.python)
    names = {w.name for w in runtime_wheels}
    link_into(runtime_wheels, ctx / "wheels" / "runtime")
    link_into(
        [w for w in wheelhouse.wheels_for(notebook, cell.python) if w.name not in names],
        ctx / "wheels" / "notebook",
    )
    return ctx


def build_key(
    base: BaseImage, lock_sha: str, dockerfile_sha: str, role: str, args: dict[str, str]
) -> str:
    doc = {
        "base": base.id,
        "lock": lock_sha,
        "dockerfile": dockerfile_sha,
        "role": role,
        "args": args,
    }
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
        labels.LOCK: lock_sha,
        labels.BUILD_KEY: key,
        labels.ROOTFS: base.rootfs_sha256 or "",
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
) -> None:
    cmd = ["build", "--network", "none", "--progress", "plain", "--target", role, "--tag", tag]
    if no_cache:
        cmd.append("--no-cache")
    for k, v in args.items():
        cmd += ["--build-arg", f"{k}={v}"]
    for k, v in image_labels.items():
        cmd += ["--label", f"{k}={v}"]
    cmd.append(str(ctx))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        r = engine.run(cmd, timeout=1800, check=False, env={"DOCKER_BUILDKIT": "1"})
    except EngineError as exc:
        log_path.write_text(str(exc))
        raise BuildFailed(role, log_path, str(exc)) from None
    log_path.write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-25:])
        raise BuildFailed(role, log_path, tail)


def run_probe(engine: Engine, image: str, command: str, timeout: float = 180) -> dict[str, object]:
    """Run probe.py COMMAND in a throwaway container of `image`, with no network."""
    r = engine.run(
        ["run", "--rm", "-i", "--network", "none", "--entrypoint", "python", image, "-", command],
        input=PROBE_SOURCE,
        timeout=timeout,
        check=False,
    )
    result = probe_result(r.stdout)
    if r.returncode != 0 or result is None:
        raise HarnessError(f"probe {command} in {image} failed: {r.stderr.strip()[-500:]}")
    return result


SECRET_PATTERNS = (
    re.compile(
        r"(?i)\b[\w.-]*(password|passwd|secret|token|api[_-]?key|access[_-]?key)"
        r"[\w.-]*\s*[=:]\s*['\"]?[^\s'\"$]{6,}"
    ),
    re.compile(r"AKIA[0-9A-Z]{16}"),  # AWS access key id
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"),  # GitHub tokens
    re.compile(r"ya29\.[\w-]{20,}"),  # Google OAuth access token
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"),  # credentials in a URL
)


def find_secrets(texts: list[str]) -> list[str]:
    """Lines that look like they carry a credential (shown truncated)."""
    hits = []
    for text in texts:
        for pattern in SECRET_PATTERNS:
            m = pattern.search(text)
            if m:
                hits.append(m.group(0)[:24] + "...")
                break  # one hit per line is enough to flag it
    return hits


def secret_check(engine: Engine, role: str, tag: str, config: dict[str, object]) -> Check:
    """`docker history`, env and labels of the image must not carry credentials."""
    history = engine.run(
        ["history", "--no-trunc", "--format", "{{.CreatedBy}}", tag], timeout=60
    ).stdout.splitlines()
    env = [str(e) for e in config.get("Env") or []]  # type: ignore[attr-defined]
    label_lines = [f"{k}={v}" for k, v in (config.get("Labels") or {}).items()]  # type: ignore[attr-defined]
    hits = find_secrets([*history, *env, *label_lines])
    return Check.of(
        f"image:{role}:no-secrets",
        not hits,
        f"{len(history)} history entries, env and labels scanned: "
        + (", ".join(hits) if hits else "no credentials or tokens"),
        stage="build",
    )


def structure_checks(
    engine: Engine, cell: Cell, role: str, tag: str
) -> tuple[list[Check], dict[str, object]]:
    """container-structure-test style checks of one built image, and what was measured."""
    info = engine.inspect("image", tag) or {}
    config = info.get("Config") or {}
    found: dict[str, str] = dict(config.get("Labels") or {})
    facts = run_probe(engine, tag, "structure")
    name = f"image:{role}"
    checks = [
        Check.of(
            f"{name}:python",
            facts.get("python") == cell.python == found.get(labels.PYTHON),
            f"measured {facts.get('python')}, label {found.get(labels.PYTHON)}, "
            f"asked {cell.python}",
            stage="build",
        ),
        Check.of(
            f"{name}:ray",
            facts.get("ray") == cell.ray == found.get(labels.RAY)
            and facts.get("commit") == found.get(labels.COMMIT),
            f"measured {facts.get('ray')} ({facts.get('commit')}), label "
            f"{found.get(labels.RAY)} ({found.get(labels.COMMIT)})",
            stage="build",
        ),
        Check.of(
            f"{name}:labels",
            found.get(labels.VARIANT) == cell.variant
            and bool(found.get(labels.LOCK))
            and found.get(labels.ROLE) == role,
            f"variant={found.get(labels.VARIANT)} role={found.get(labels.ROLE)} "
            f"lock={str(found.get(labels.LOCK))[:12]}",
            stage="build",
        ),
        Check.of(
            f"{name}:non-root",
            config.get("User") == RUNTIME_USER and facts.get("uid") == 1000,
            f"User={config.get('User')!r}, uid inside={facts.get('uid')}",
            stage="build",
        ),
        Check.of(
            f"{name}:cmd",
            EXPECTED_CMD[role] in " ".join(config.get("Cmd") or []),
            f"Cmd={config.get('Cmd')}",
            stage="build",
        ),
        Check.of(
            f"{name}:ray-cli",
            facts.get("ray_cli_rc") == 0 and cell.ray in str(facts.get("ray_cli")),
            str(facts.get("ray_cli"))[:200],
            stage="build",
        ),
        Check.of(
            f"{name}:no-leftovers",
            not facts.get("wheel_files") and not facts.get("pip_caches"),
            f"wheel files: {facts.get('wheel_files') or 'none'}; pip caches: "
            f"{facts.get('pip_caches') or 'none'}",
            stage="build",
        ),
    ]
    checks.append(bytecode_check(name, facts))
    checks.append(base_layer_check(name, info, found))
    checks.append(kuberay_check(cell, name, facts))
    checks.append(secret_check(engine, role, tag, config))
    if cell.cuda:
        env = dict(e.split("=", 1) for e in config.get("Env") or [])
        measured = facts.get("cuda") or {}
        assert isinstance(measured, dict)
        checks.append(
            Check.of(
                f"{name}:cuda",
                bool(measured.get("ok"))
                and measured.get("runtime") == cell.cuda == found.get(labels.CUDA)
                and env.get("NVIDIA_VISIBLE_DEVICES") == "all"
                and "compute" in env.get("NVIDIA_DRIVER_CAPABILITIES", ""),
                f"libcudart reports CUDA {measured.get('runtime')}, "
                f"label {found.get(labels.CUDA)}, asked {cell.cuda}; "
                f"NVIDIA_VISIBLE_DEVICES={env.get('NVIDIA_VISIBLE_DEVICES')}"
                + ("" if measured.get("ok") else f"; {measured.get('error')}"),
                stage="build",
            )
        )
    for c in checks:
        c.image_id = str(info.get("Id"))
    return checks, facts


def bytecode_check(name: str, facts: Mapping[str, object]) -> Check:
    """Every .pyc in the venv (all the layers the harness builds) is checked-hash, so
    bytecode does not depend on when the image was built."""
    found = facts.get("bytecode")
    counts = found if isinstance(found, dict) else {}
    good = int(counts.get("checked-hash") or 0)
    bad = int(counts.get("unchecked-hash") or 0) + int(counts.get("timestamp") or 0)
    detail = (
        f"{good} checked-hash .pyc, {counts.get('timestamp')} timestamp, "
        f"{counts.get('unchecked-hash')} unchecked-hash under /opt/ray"
    )
    if bad:
        detail += f"; e.g. {', '.join(counts.get('examples') or [])}"
    return Check.of(f"{name}:bytecode", good > 0 and bad == 0, detail, stage="build")


def base_layer_check(name: str, info: Mapping[str, object], found: Mapping[str, str]) -> Check:
    """A Debian base is one imported rootfs tarball: the image's first layer (its diff id)
    is that tarball, whose sha256 the label records. A registry base records none."""
    rootfs = found.get(labels.ROOTFS) or ""
    layers = (info.get("RootFS") or {}).get("Layers") or []  # type: ignore[attr-defined]
    first = str(layers[0]) if layers else ""
    if not rootfs:
        return Check(
            f"{name}:base-layer",
            SKIPPED,
            "registry base: no rootfs tarball to compare",
            stage="build",
        )
    return Check.of(
        f"{name}:base-layer",
        first == f"sha256:{rootfs}",
        f"first layer {first[:19]}, rootfs label sha256:{rootfs[:12]}",
        stage="build",
    )


def kuberay_check(cell: Cell, name: str, facts: Mapping[str, object]) -> Check:
    """KubeRay runs `bash -lc 'ray start ...'` and probes nodes with `wget`."""
    shell = facts.get("login_shell")
    found = [str(p) for p in shell] if isinstance(shell, list) else []
    ok = "/opt/ray/bin/ray" in found and any(p.endswith("/wget") for p in found)
    if not ok and cell.base.kind == "image":
        return Check(
            f"{name}:kuberay-shell",
            SKIPPED,
            f"registry base {cell.base.ref}: KubeRay's default probes need bash and wget "
            f"in the base (found {found})",
            stage="build",
        )
    return Check.of(
        f"{name}:kuberay-shell",
        ok,
        f"`bash -lc` finds {', '.join(found) or 'neither ray nor wget'}",
        stage="build",
    )


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
    path.write_text(json.dumps(doc, indent=1, sort_keys=True))


def prepare(
    engine: Engine, matrix: Matrix, paths: Paths, cells: list[Cell], fresh: bool = False
) -> dict[str, BaseImage | str]:
    """Work shared by cells, done once: every lock's wheels, and one base per Python micro.

    Returns, per cell id, its base image or the reason it has none (that cell then fails;
    the others go on).
    """
    wheelhouse = Wheelhouse(paths.wheelhouse)
    out: dict[str, BaseImage | str] = {}
    with step(f"wheels for {len(cells)} cell(s) into {paths.wheelhouse}"):
        fetched = 0
        for cell in cells:
            try:
                for kind in lock.KINDS:
                    fetched += wheelhouse.fetch(lock.lock_path(paths.locks, cell, kind), cell)
            except HarnessError as exc:
                out[cell.id] = f"wheels: {exc}"
                log(f"{cell.id}: wheels failed: {str(exc).splitlines()[0]}")
        log(f"wheelhouse: {fetched} wheel(s) downloaded, the rest already there")
    bases: dict[tuple[str, str], BaseImage | str] = {}
    for cell in cells:
        if cell.id in out:
            continue
        key = (cell.base.label, cell.python)
        if key not in bases:
            try:
                with step(f"base {cell.base.label} (Python {cell.python})"):
                    bases[key] = ensure_base(
                        engine, matrix, cell, paths.build / "rootfs", fresh=fresh
                    )
            except HarnessError as exc:
                bases[key] = f"base {cell.base.label} for Python {cell.python}: {exc}"
        out[cell.id] = bases[key]
    return out


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
    image `previous` checked, its structure checks are reused too, so a no-op build only
    asks the engine a few questions."""
    lock.check(paths.locks, cell, matrix)
    runtime_lock = lock.lock_path(paths.locks, cell, "runtime")
    notebook_lock = lock.lock_path(paths.locks, cell, "notebook")
    wheelhouse = Wheelhouse(paths.wheelhouse)
    commit = ""
    lock_sha = lock.file_digest(runtime_lock, notebook_lock)
    dockerfile_sha = _sha256_file(paths.dockerfile)
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
    checked = {i.role: i.id for i in previous.images} if previous else {}
    ctx: Path | None = None
    for role in ROLES:
        tag = cell.tag(matrix.prefix, role)
        key = build_key(base, lock_sha, dockerfile_sha, role, args)
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
                and checked.get(role) == existing.get("Id")
                and paths.manifest(cell.id, role).is_file()
            ):
                # Same image as last checked: its structure checks still hold.
                prefix = f"image:{role}:"
                reused = [c for c in previous.build_checks if c.name.startswith(prefix)]
                complete = {c.name for c in reused} >= set(structure_check_names(cell, role))
                if complete and all(c.status in ("passed", "skipped") for c in reused):
                    images.append(next(i for i in previous.images if i.role == role))
                    images[-1].cached = True
                    checks += reused
                    continue
        else:
            if ctx is None:
                ctx = stage_context(paths, cell, wheelhouse)
                commit = wheelhouse.ray_commit(runtime_lock, cell.python)
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
                )
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
            )
        )
        with step(f"{cell.id}: structure checks {role}"):
            role_checks, facts = structure_checks(engine, cell, role, tag)
        checks += role_checks
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
                    notebook_lock if role == "notebook" else runtime_lock, cell.python
                )
            },
        }
        write_manifest(paths.manifest(cell.id, role), images[-1], inputs, facts)
    return images, checks
