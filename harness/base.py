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
import shlex
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from harness import children, debian_lock, labels
from harness.engine import Engine
from harness.errors import EngineError, HarnessError
from harness.files import write_atomic
from harness.matrix import Cell, Matrix, debian_offer
from harness.progress import log

RECIPE = 3  # bump when the rootfs recipe below changes
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


# Run by the base's own interpreter with -X no_debug_ranges: the bytecode dpkg compiled
# (stdlib, dist-packages; or the directories given) again, without Python 3.11's column
# tables (the `^^^^` under a traceback line's failing expression; -1.1 MB of a pull), same
# file, same invalidation mode.
RECOMPILE = """
import os, py_compile, sys, sysconfig
if next(compile("x", "", "eval").co_positions())[2] is not None:
    sys.exit("recompile: run with -X no_debug_ranges")
M = py_compile.PycInvalidationMode
modes = {0: M.TIMESTAMP, 1: M.UNCHECKED_HASH, 3: M.CHECKED_HASH}
suffix = "." + sys.implementation.cache_tag + ".pyc"
n = 0
for top in sys.argv[1:] or (sysconfig.get_paths()["stdlib"], "/usr/lib/python3/dist-packages"):
    for root, dirs, files in os.walk(top):
        dirs.sort()
        if os.path.basename(root) != "__pycache__":
            continue
        for name in sorted(files):  # not .opt-1.pyc, nor another interpreter's
            source = os.path.join(os.path.dirname(root), name[: -len(suffix)] + ".py")
            if not name.endswith(suffix) or not os.path.isfile(source):
                continue
            pyc = os.path.join(root, name)
            with open(pyc, "rb") as f:
                flags = int.from_bytes(f.read(8)[4:8], "little")
            py_compile.compile(source, pyc, doraise=True, invalidation_mode=modes[flags])
            n += 1
print("recompiled %d .pyc without column tables" % n)
"""


# Removed once the packages are configured (a path-exclude would break python3.X's postinst,
# which compiles every file of its package): CPython's own test suite (`test`: test.support,
# regrtest; the `_test*` extension modules), and dpkg's and debconf's backups of their
# databases (nothing reads them). Paths relative to the rootfs.
REMOVED = (
    "usr/lib/python3*/test",
    "usr/lib/python3*/lib-dynload/_test*",
    "usr/lib/python3*/lib-dynload/_ctypes_test*",
    "usr/lib/python3*/lib-dynload/_xxtestfuzz*",
    "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old",
)


def _hooks(suite: str, python: str) -> list[str]:
    """Merged /usr (see MERGED_USR_HOOKS); an extra interpreter becomes `python3` on PATH
    (/usr/local/bin comes first); REMOVED removed; then the bytecode dpkg compiled, without
    column tables (Python 3.11 and newer, see RECOMPILE)."""
    hooks = [f"--hook-dir={MERGED_USR_HOOKS}"]
    package = interpreter_package(suite, python)
    if package != "python3":
        hooks.append(f'--customize-hook=ln -sf /usr/bin/{package} "$1/usr/local/bin/python3"')
    major, minor = (int(x) for x in python.split(".")[:2])
    hooks.append(f'--customize-hook=cd "$1" && rm -rf {" ".join(REMOVED)}')
    if (major, minor) >= (3, 11):
        run = f"/usr/bin/python{major}.{minor} -X no_debug_ranges -c {shlex.quote(RECOMPILE)}"
        hooks.append(f'--customize-hook=chroot "$1" {run}')
    return hooks


# Written into the rootfs (/etc/dpkg/dpkg.cfg.d/), so packages a derived image installs skip
# the same paths. Besides documentation, what no Ray process reads:
# - glibc's iconv modules but Debian's core eight (UTF-7/16/32, UNICODE, ISO-8859-1/15,
#   CP1252, ANSI_X3.110): the others are what Debian calls extra charsets (its own package
#   since trixie); iconv_open() in C refuses them, Python's codecs are its own;
# - tzdata's `right/` zones (clocks counting leap seconds, read only with TZ=right/...).
GCONV_CORE = (
    "ANSI_X3.110",
    "CP1252",
    "ISO8859-1",
    "ISO8859-15",
    "UNICODE",
    "UTF-16",
    "UTF-32",
    "UTF-7",
)
DPKG_OPTS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/lib/*/gconv/*",
    "path-include=/usr/lib/*/gconv/gconv-modules*",
    *(f"path-include=/usr/lib/*/gconv/{name}.so" for name in GCONV_CORE),
    "path-exclude=/usr/share/zoneinfo/right/*",
)
MICRO_PROBE = "import sys; print('%d.%d.%d' % sys.version_info[:3])"
LOADED_BY = "mmdebstrap --arch="  # the one history entry of a base the harness loads


@dataclass(frozen=True)
class BaseImage:
    ref: str  # what FROM uses
    id: str
    python: str
    rootfs_sha256: str | None
    source: str  # "debian:bookworm" / "image:python:3.11.9-slim"
    lock_sha256: str = ""  # a Debian base: its Debian lock's digest


def _sources(matrix: Matrix, suite: str) -> list[str]:
    mirror = matrix.debian_mirror
    lines = [f"deb {mirror} {suite} main"]
    security = debian_lock.security_mirror(mirror)
    if security:
        lines.append(f"deb {security} {suite}-security main")
    return lines


def _apt_options(matrix: Matrix) -> list[str]:
    """A frozen mirror (HARNESS_DEBIAN_SNAPSHOT=1) or a snapshot.debian.org-style one
    outlives the Valid-Until of testing/security Release files; signatures are still
    checked."""
    if matrix.debian_snapshot or debian_lock.is_snapshot(matrix.debian_mirror):
        return ['--aptopt=Acquire::Check-Valid-Until "false"']
    return []


def locks_dir(matrix: Matrix) -> Path:
    """The committed locks beside the matrix file (locks/, as harness.paths names it)."""
    return matrix.path.resolve().parent / "locks"


def lock_file(matrix: Matrix, suite: str, python: str, arch: str = "amd64") -> Path:
    return debian_lock.lock_path(locks_dir(matrix), suite, python, arch)


def recipe_digest(matrix: Matrix, suite: str, python: str, arch: str = "amd64") -> str:
    """sha256 of the rootfs recipe a Debian lock is made for (a lock's `input-sha256`):
    not apt's options, which say how the mirror is read (HARNESS_DEBIAN_SNAPSHOT, a
    property of the machine), not what is installed."""
    doc = _recipe(matrix, suite, python, arch)
    del doc["apt"]
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def debian_key(
    matrix: Matrix, suite: str, python: str, arch: str = "amd64", lock_sha: str = ""
) -> str:
    """The base image's key: its recipe and the digest of its Debian lock."""
    doc = _recipe(matrix, suite, python, arch)
    if lock_sha:
        doc["debian_lock"] = lock_sha
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _recipe(matrix: Matrix, suite: str, python: str, arch: str = "amd64") -> dict[str, object]:
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
    return doc


def measure_python(engine: Engine, ref: str, timeout: float = 120) -> str:
    r = engine.run_once(ref, ["-c", MICRO_PROBE], entrypoint=["python3"], timeout=timeout)
    if r.returncode != 0:
        raise HarnessError(f"base {ref}: cannot run python3 in it: {r.stderr.strip()[-300:]}")
    return r.stdout.strip()


def build_rootfs(
    matrix: Matrix,
    suite: str,
    python: str,
    out: Path,
    arch: str = "amd64",
    locked: Sequence[debian_lock.Deb] = (),
    scratch: Path | None = None,
) -> tuple[str, list[debian_lock.Deb]]:
    """mmdebstrap a minbase rootfs tarball (or, with `out` /dev/null, none), apt pinned to
    the `locked` versions; its sha256 ("" for none) and what it installed, each package
    with its .deb's sha256 from the mirror's Packages index. Its scratch files go under
    `scratch` (default: beside `out`), a staging area `clean` empties after a crash."""
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
    null = out == Path(os.devnull)
    if not null:
        out.parent.mkdir(parents=True, exist_ok=True)
    # mmdebstrap picks the format by extension; /dev/null: a temporary chroot, no output
    tmp = out if null else out.with_suffix(".partial.tar")
    scratch = scratch or out.parent
    scratch.mkdir(parents=True, exist_ok=True)
    seen = Path(tempfile.mkdtemp(prefix=".dpkg-", dir=scratch))
    prefs = seen / debian_lock.PREFS_NAME
    prefs.write_text(debian_lock.preferences(locked))
    pin = [  # apt chooses the locked versions; the preferences do not stay in the rootfs
        '--setup-hook=mkdir -p "$1/etc/apt/preferences.d"',
        f"--setup-hook=copy-in {prefs} /etc/apt/preferences.d/",
        f"--customize-hook=copy-out /var/lib/dpkg/status /var/lib/apt/lists {seen}",
        f'--customize-hook=rm -f "$1/etc/apt/preferences.d/{debian_lock.PREFS_NAME}"',
    ]
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
        *pin,
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
            lines = err.strip().splitlines()
            errors = [ln for ln in lines if ln.startswith(("E:", "W:"))]
            tail = "\n".join((errors or lines)[-8:])
            hint = f"is {matrix.debian_mirror} reachable?"
            hook = next((i for i, ln in enumerate(lines) if "E: command failed" in ln), None)
            if hook is not None:  # what the hook printed last is above mmdebstrap's E: lines
                hint = "a step of the recipe failed in the rootfs"
                said = [ln for ln in lines[max(0, hook - 4) : hook] if not ln.startswith("I:")]
                tail = "\n".join([*said, lines[hook][:200]])
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
        status = (seen / "status").read_text(encoding="utf-8")
        indexes = [
            p.read_text(encoding="utf-8", errors="replace")
            for p in sorted((seen / "lists").glob("*_Packages"))
        ]
        got = debian_lock.debs(status, indexes, arch)
        if null:
            return "", got
        h = hashlib.sha256()
        with tmp.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        tmp.replace(out)
        return h.hexdigest(), got
    finally:
        if not null:
            tmp.unlink(missing_ok=True)
        shutil.rmtree(seen, ignore_errors=True)


def check_lock(matrix: Matrix, cell: Cell) -> None:
    """Refuse a missing or stale Debian lock of the cell's base (a registry base has none)."""
    if cell.base.kind == "debian":
        suite = cell.base.ref
        debian_lock.check(
            lock_file(matrix, suite, cell.python, cell.arch),
            cell.base.label,
            recipe_digest(matrix, suite, cell.python, cell.arch),
        )


def lock_base(
    matrix: Matrix,
    suite: str,
    python: str,
    arch: str = "amd64",
    *,
    scratch: Path,
    move: Collection[str] | None = None,
) -> Path:
    """Write the Debian lock of a base: what mmdebstrap installs from the mirror today
    (no tarball is kept; scratch files under `scratch`). The path written.

    With `move` (package names), the lock as it is stays pinned but for those: only they,
    and what they newly need, move (a locked version the mirror no longer has fails, as
    a locked build does). Every name must be in the lock."""
    path = lock_file(matrix, suite, python, arch)
    keep: list[debian_lock.Deb] = []
    if move is not None:
        if not path.is_file():
            raise HarnessError(f"{path}: no Debian lock to move packages in; run `nox -s lock`")
        locked = debian_lock.read(path)[1]
        unknown = sorted(set(move) - {d.name for d in locked})
        if unknown:
            raise HarnessError(
                f"{path}: {', '.join(unknown)} is not in this Debian lock (names are binary "
                "package names, e.g. libssl3)"
            )
        keep = [d for d in locked if d.name not in move]
    _, got = build_rootfs(
        matrix, suite, python, Path(os.devnull), arch, locked=keep, scratch=scratch
    )
    now = debian_lock.by_name(got)
    drifted = [
        f"{d.name} {d.version} -> {now[d.name].version if d.name in now else 'gone'}"
        for d in keep
        if d.name not in now or now[d.name].version != d.version
    ]
    if drifted:  # apt ignores a pin to a version the mirror no longer has
        raise debian_lock.moved(path, matrix.debian_mirror, drifted)
    path.parent.mkdir(parents=True, exist_ok=True)
    label = f"debian:{suite} (Python {python}, linux/{arch})"
    text = debian_lock.render(
        got, label, recipe_digest(matrix, suite, python, arch), matrix.debian_mirror
    )
    write_atomic(path, text)
    return path


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
    lock_path = lock_file(matrix, suite, cell.python, cell.arch)
    locked = debian_lock.check(
        lock_path, spec.label, recipe_digest(matrix, suite, cell.python, cell.arch)
    )
    lock_sha = debian_lock.digest(lock_path)
    key = debian_key(matrix, suite, cell.python, cell.arch, lock_sha)
    ref = f"{matrix.prefix}/base:debian-{suite}-py{cell.python}"
    if not cell.native:
        ref += f"-{cell.arch}"
    have = engine.image_labels(ref)
    if not fresh and have and have.get(labels.BASE_KEY) == key:
        info = engine.inspect("image", ref) or {}
        return BaseImage(
            ref, str(info.get("Id")), cell.python, have.get(labels.ROOTFS), spec.label, lock_sha
        )
    tarball = work / f"debian-{suite}-{key}.tar"
    try:
        digest, got = build_rootfs(matrix, suite, cell.python, tarball, cell.arch, locked)
        problems = debian_lock.differences(locked, got)
        if problems:  # the mirror moved: this is not the locked base
            raise debian_lock.moved(lock_path, matrix.debian_mirror, problems)
    except BaseException:
        tarball.unlink(missing_ok=True)
        raise
    base_labels = {
        labels.BASE_LOCK: lock_sha,
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
    return _measured(engine, matrix, cell, ref, suite, digest, lock_sha)


def _measured(
    engine: Engine, matrix: Matrix, cell: Cell, ref: str, suite: str, digest: str, lock_sha: str
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
    return BaseImage(ref, str(info.get("Id")), cell.python, digest, cell.base.label, lock_sha)


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
        "history": [{"created": created, "created_by": f"{LOADED_BY}{arch}"}],
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


def replaced(engine: Engine) -> list[str]:
    """Ids of Debian bases the harness loaded that no tag names any more.

    A base rebuilt under a new key takes the tag; the base it replaced stays behind,
    untagged, and nothing would ever remove it. An image is one of these only if its whole
    history is the one entry `_load_rootfs` writes: an image built FROM a base inherits its
    labels but adds history, so a user's derived image is never taken for one. A run's
    temporary bases go with their run."""
    found: list[str] = []
    for image_id in engine.ids("image", {labels.MANAGED: "base"}):
        info = engine.inspect("image", image_id) or {}
        image_labels = (info.get("Config") or {}).get("Labels") or {}
        if info.get("RepoTags") or image_labels.get(labels.RUN):
            continue
        history = engine.history(image_id)
        if len(history) == 1 and history[0].startswith(LOADED_BY):
            found.append(image_id)
    return found


def drop_replaced(engine: Engine) -> int:
    """Remove the bases `replaced` lists; the count removed. The engine refuses one a
    container uses (it goes in a later build). Images built on one keep working: BuildKit
    records no parent image, and the layer they share stays while any image uses it."""
    dropped = 0
    for image_id in replaced(engine):
        if engine.untag(image_id):
            dropped += 1
            short = image_id.removeprefix("sha256:")[:12]
            log(f"removed a base image no tag names any more ({short})")
    return dropped


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
