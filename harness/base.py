"""Base images that carry an exact Python micro, with no registry needed.

- `debian:<suite>`: a minbase rootfs built on the host with mmdebstrap from Debian's archive
  (reproducible with SOURCE_DATE_EPOCH) and `docker load`ed from an image archive written
  here: one layer, the tarball unchanged, and a config dated SOURCE_DATE_EPOCH. Its tarball
  sha256 is the base's identity (`base.rootfs.sha256` label) and the layer's diff_id, and
  the same rootfs gives the same image id (`docker import` would date it now, so a rebuilt
  base would be a new image and every image on it would be rebuilt). A linux/arm64 base is
  the same recipe with `mmdebstrap --arch=arm64` (dpkg runs under QEMU).
- `image:<ref>`: a registry image (e.g. python:3.11.9-slim-bookworm), used if present
  locally, else pulled.
Either way the Python micro inside is measured and must equal the one asked for.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from harness import children, labels
from harness.engine import Engine
from harness.errors import EngineError, HarnessError
from harness.matrix import Cell, Matrix, debian_offer

RECIPE = 2  # bump when the rootfs recipe below changes
# Merged /usr the way Debian's own images have it, without the `usrmerge` package: on
# bookworm, apt satisfies init-system-helpers' `usrmerge | usr-is-merged` with usrmerge,
# which depends on perl (~47 MB unpacked, ~14 MB of every pull). mmdebstrap's hook sets
# up the /usr symlinks and installs usr-is-merged where the suite has it (bookworm on);
# on bullseye it does nothing.
MERGED_USR_HOOKS = Path("/usr/share/mmdebstrap/hooks/maybe-merged-usr")
# No python3-venv: it ships pip/setuptools wheels in /usr/share/python-wheels. The image
# bootstraps pip from the locked pip wheel instead (see images/Dockerfile).
PACKAGES = ("python3",)


def interpreter_package(suite: str, python: str) -> str:
    """`python3`, or `python3.X` where the micro is a suite's extra interpreter (forky)."""
    offer = debian_offer(suite, python)
    return offer.package if offer else "python3"


def packages(suite: str, python: str) -> tuple[str, ...]:
    """Debian packages of the base. Debian splits distutils out of Python < 3.10, and pip
    on those interpreters needs it. wget: KubeRay's default readiness and liveness probes
    run `wget ... | grep success` in the Ray containers."""
    minor = int(python.split(".")[1])
    base = (interpreter_package(suite, python), "wget")
    return (*base, "python3-distutils") if minor < 10 else base


def _hooks(suite: str, python: str) -> list[str]:
    """Merged /usr (see MERGED_USR_HOOKS); an extra interpreter becomes `python3` on PATH
    (/usr/local/bin comes first)."""
    hooks = [f"--hook-dir={MERGED_USR_HOOKS}"]
    package = interpreter_package(suite, python)
    if package != "python3":
        hooks.append(f'--customize-hook=ln -sf /usr/bin/{package} "$1/usr/local/bin/python3"')
    return hooks


DPKG_OPTS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)
MICRO_PROBE = "import sys; print('%d.%d.%d' % sys.version_info[:3])"


@dataclass(frozen=True)
class BaseImage:
    ref: str  # what FROM uses
    id: str
    python: str
    rootfs_sha256: str | None
    source: str  # "debian:bookworm" / "image:python:3.11.9-slim"


def _sources(matrix: Matrix, suite: str) -> list[str]:
    mirror = matrix.debian_mirror
    lines = [f"deb {mirror} {suite} main"]
    if mirror.endswith("/debian"):
        lines.append(f"deb {mirror}-security {suite}-security main")
    return lines


def _apt_options(matrix: Matrix) -> list[str]:
    """A snapshot mirror outlives the Valid-Until of testing/security Release files;
    signatures are still checked."""
    if matrix.debian_snapshot:
        return ['--aptopt=Acquire::Check-Valid-Until "false"']
    return []


def debian_key(matrix: Matrix, suite: str, python: str, arch: str = "amd64") -> str:
    doc: dict[str, object] = {
        "recipe": RECIPE,
        "suite": suite,
        "sources": _sources(matrix, suite),
        "packages": packages(suite, python),
        "hooks": _hooks(suite, python),
        "apt": _apt_options(matrix),
        "dpkg": DPKG_OPTS,
        "sde": matrix.source_date_epoch,
    }
    if arch != "amd64":  # amd64 keys stay what they were before other architectures
        doc["arch"] = arch
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def measure_python(engine: Engine, ref: str, timeout: float = 120) -> str:
    r = engine.run_once(ref, ["-c", MICRO_PROBE], entrypoint=["python3"], timeout=timeout)
    if r.returncode != 0:
        raise HarnessError(f"base {ref}: cannot run python3 in it: {r.stderr.strip()[-300:]}")
    return r.stdout.strip()


def build_rootfs(matrix: Matrix, suite: str, python: str, out: Path, arch: str = "amd64") -> str:
    """mmdebstrap a minbase rootfs tarball; returns its sha256."""
    if shutil.which("mmdebstrap") is None:
        raise HarnessError(
            "mmdebstrap not found: run `scripts/setup-engine.sh` as root or with sudo "
            "(installs mmdebstrap)"
        )
    if not MERGED_USR_HOOKS.is_dir():
        raise HarnessError(
            f"{MERGED_USR_HOOKS} not found: mmdebstrap 1.x from Debian ships it; run "
            "`scripts/setup-engine.sh` as root or with sudo"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".partial.tar")  # mmdebstrap picks the format by extension
    if arch != "amd64" and shutil.which("arch-test") is None:
        raise HarnessError(
            f"arch-test not found: mmdebstrap needs it for {arch}; run "
            "`scripts/setup-engine.sh` as root (installs qemu-user-static and arch-test)"
        )
    cmd = [
        "mmdebstrap",  # not --quiet: it would hide apt's reasons, which the error shows
        "--variant=minbase",
        *([f"--arch={arch}"] if arch != "amd64" else []),
        f"--include={','.join(packages(suite, python))}",
        *_hooks(suite, python),
        *_apt_options(matrix),
        *(f"--dpkgopt={o}" for o in DPKG_OPTS),
        suite,
        str(tmp),
        *_sources(matrix, suite),
    ]
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(matrix.source_date_epoch)}
    try:  # nothing half-built stays behind, whatever stops us (error, timeout, signal)
        try:
            rc, _, err = children.run(cmd, env=env, timeout=2400)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"mmdebstrap {suite} did not finish in 40 minutes") from None
        except children.Stopped as exc:
            raise HarnessError(str(exc)) from None
        if rc != 0:
            errors = [ln for ln in err.splitlines() if ln.startswith(("E:", "W:"))]
            tail = "\n".join((errors or err.strip().splitlines())[-8:])
            hint = f"is {matrix.debian_mirror} reachable?"
            if arch != "amd64" and "arch-test" in err:
                hint = (
                    f"this host cannot run {arch} binaries: run `scripts/setup-engine.sh` as "
                    "root (registers QEMU with binfmt_misc)"
                )
            if re.search(r"Release file .* is expired", err):
                hint = (
                    f"the Release files of {matrix.debian_mirror} have expired; if it is a "
                    "frozen snapshot on purpose, set HARNESS_DEBIAN_SNAPSHOT=1"
                )
            raise HarnessError(f"mmdebstrap {suite} failed ({hint}):\n{tail}")
        h = hashlib.sha256()
        with tmp.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        tmp.replace(out)
        return h.hexdigest()
    finally:
        tmp.unlink(missing_ok=True)


def ensure(
    engine: Engine,
    matrix: Matrix,
    cell: Cell,
    work: Path,
    fresh: bool = False,
    extra_labels: Mapping[str, str] | None = None,
) -> BaseImage:
    """Return the base for the cell's Python micro, building or pulling it if needed."""
    spec = cell.base
    if spec.kind == "image":
        return _registry_base(engine, spec.ref, cell.python)
    suite = spec.ref
    key = debian_key(matrix, suite, cell.python, cell.arch)
    ref = f"{matrix.prefix}/base:debian-{suite}-py{cell.python}"
    if not cell.native:
        ref += f"-{cell.arch}"
    have = engine.image_labels(ref)
    if not fresh and have and have.get(labels.BASE_KEY) == key:
        info = engine.inspect("image", ref) or {}
        return BaseImage(ref, str(info.get("Id")), cell.python, have.get(labels.ROOTFS), spec.label)
    tarball = work / f"debian-{suite}-{key}.tar"
    digest = build_rootfs(matrix, suite, cell.python, tarball, cell.arch)
    base_labels = {
        labels.MANAGED: "base",
        labels.BASE_KEY: key,
        labels.ROOTFS: digest,
        labels.PYTHON: cell.python,
        f"{labels.NS}.base.source": f"debian:{suite}",
        **({} if cell.native else {labels.PLATFORM: cell.platform}),
        **(extra_labels or {}),
    }
    try:
        _load_rootfs(engine, tarball, digest, ref, cell.arch, base_labels, matrix)
    finally:
        tarball.unlink(missing_ok=True)
    return _measured(engine, matrix, cell, ref, suite, digest)


def _measured(
    engine: Engine, matrix: Matrix, cell: Cell, ref: str, suite: str, digest: str
) -> BaseImage:
    """The base just made, once its Python micro is the one asked for."""
    measured = measure_python(engine, ref, timeout=120 if cell.native else 600)
    if measured != cell.python:
        engine.untag(ref, force=True)
        raise HarnessError(
            f"Debian {suite} now ships Python {measured}, not {cell.python}; set "
            f'`bases: {{"{cell.python}": ...}}` in {matrix.path} to a suite or image that has it'
        )
    info = engine.inspect("image", ref) or {}
    return BaseImage(ref, str(info.get("Id")), cell.python, digest, cell.base.label)


def _load_rootfs(
    engine: Engine,
    tarball: Path,
    digest: str,
    ref: str,
    arch: str,
    image_labels: Mapping[str, str],
    matrix: Matrix,
) -> None:
    """`docker load` the rootfs as a one-layer image of `arch`: an image archive (docker
    save's format) whose layer is the tarball itself, so its diff_id is the rootfs sha256,
    and whose config is dated SOURCE_DATE_EPOCH, so its image id is the same every time."""
    created = config_created(matrix)
    config = {
        "architecture": arch,
        "os": "linux",
        "created": created,
        "config": {
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
            ],
            "Cmd": ["python3"],
            "Labels": dict(image_labels),
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{digest}"]},
        "history": [{"created": created, "created_by": f"mmdebstrap --arch={arch}"}],
    }
    blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    image_id = hashlib.sha256(blob).hexdigest()
    config_name = image_id + ".json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [ref], "Layers": [f"{digest}/layer.tar"]}]
    ).encode()
    archive = tarball.with_suffix(".image.tar")
    try:
        with tarfile.open(archive, "w") as tar:
            for name, data in ((config_name, blob), ("manifest.json", manifest)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = matrix.source_date_epoch
                tar.addfile(info, io.BytesIO(data))
            tar.add(tarball, arcname=f"{digest}/layer.tar")
        engine.load(archive, ref, f"sha256:{image_id}")
    finally:
        archive.unlink(missing_ok=True)


def config_created(matrix: Matrix) -> str:
    created = datetime.fromtimestamp(matrix.source_date_epoch, tz=timezone.utc)
    return created.strftime("%Y-%m-%dT%H:%M:%SZ")


def _registry_base(engine: Engine, ref: str, python: str) -> BaseImage:
    if engine.inspect("image", ref) is None:
        try:
            engine.pull(ref, timeout=900)
        except EngineError as exc:
            raise HarnessError(
                f"base image {ref} is not present and cannot be pulled: `docker load` it or "
                f"use a Debian base (remove it from `bases:`); the pull said: {exc}"
            ) from None
    measured = measure_python(engine, ref)
    if measured != python:
        raise HarnessError(f"base image {ref} has Python {measured}, not {python}")
    info = engine.inspect("image", ref) or {}
    return BaseImage(ref, str(info.get("Id")), python, None, f"image:{ref}")
