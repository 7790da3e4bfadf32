"""Load and validate matrix.yaml, expand it into cells, select cells and name their tags.

Everything here is pure: no Docker, no network. Every problem raises MatrixError
naming the file, the key, the line where the YAML parser knows it, and what to do.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import itertools
import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from packaging.version import InvalidVersion, Version

from harness import matrix_schema
from harness.errors import MatrixError
from harness.inside.probe import WIRE_LIBS  # what the probe measures is what can be judged
from harness.results import NATIVE_PLATFORM as NATIVE_PLATFORM
from harness.results import Word

ROLES: tuple[str, ...] = ("head", "worker", "notebook")
# Platforms a cell's images are built for. linux/amd64 is native here and every cell has it;
# linux/arm64 is opt-in (`platforms:`), built and run under QEMU emulation.
PLATFORMS: tuple[str, ...] = (NATIVE_PLATFORM, "linux/arm64")
_MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}  # OCI architecture -> platform.machine()


def mirror_problem(mirror: object) -> str | None:
    """Why `mirror` is not a URL apt reads as the one URI of a sources line, or None. It
    goes into `deb URI SUITE main` as it is: white space, a control character, a leading
    `[` (apt's options), a `#` (a comment) would change what apt fetches or trusts, and
    credentials would be written into the build's sources and logs."""
    what = "must be an http(s):// or file:/ URL of a Debian archive"
    if not isinstance(mirror, str):
        return what
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in mirror):
        return f"{what}, without white space or control characters"
    try:
        url = urllib.parse.urlsplit(mirror)
    except ValueError as exc:
        return f"{what}: {exc}"
    if url.scheme not in ("http", "https", "file") or not mirror.startswith(
        ("http://", "https://", "file:/")
    ):
        return what
    if url.scheme != "file" and not url.hostname:
        return f"{what}: no host in {mirror!r}"
    if url.username is not None or url.password is not None:
        return (
            "must not carry credentials: apt would write them into the build's sources and "
            "logs; put them in /etc/apt/auth.conf.d/ on the host instead"
        )
    if url.query or url.fragment or "#" in mirror or "?" in mirror:
        return f"{what}, without a query or a fragment ('?', '#')"
    if "[" in url.path or "]" in url.path:
        return f"{what}: '[' and ']' are apt's option brackets"
    return None


def machine_of(arch: str) -> str:
    """What `platform.machine()` says on an OCI architecture (`amd64` -> `x86_64`): the
    name wheel tags and pip's platforms use too."""
    return _MACHINES[arch]


class Variant(Word):
    CPU = "cpu"
    GPU = "gpu"


class AuditPolicy(Word):
    """What a known vulnerability (or an incomplete audit) in a cell's locks means."""

    WARN = "warn"
    FAIL = "fail"
    OFF = "off"


class GpuE2E(Word):
    """Whether a gpu cell whose `gpu:e2e` was skipped (no GPU on the test host) may be pushed."""

    OPTIONAL = "optional"
    REQUIRED = "required"


VARIANTS: tuple[str, ...] = tuple(v.value for v in Variant)
# CUDA 12 runtimes NVIDIA publishes as `nvidia-cuda-runtime-cu12` wheels on PyPI.
CUDA_VERSIONS: tuple[str, ...] = tuple(f"12.{n}" for n in range(10))
DEFAULT_CUDA = "12.8"


@dataclass(frozen=True)
class DebianPython:
    """A Python micro that a Debian suite ships, and the package that installs it."""

    suite: str
    micro: str
    package: str  # python3 (the suite's default) or python3.X (an extra interpreter)


# Stable suites keep their micro (security fixes arrive as +debNuM rebuilds); testing
# suites move, so the micro is measured inside every built base and a move is an error.
DEBIAN_PYTHONS: tuple[DebianPython, ...] = (
    DebianPython("bullseye", "3.9.2", "python3"),
    DebianPython("bookworm", "3.11.2", "python3"),
    DebianPython("trixie", "3.13.5", "python3"),
    DebianPython("forky", "3.13.15", "python3.13"),  # testing, checked 2026-11-23
    DebianPython("forky", "3.14.8", "python3.14"),  # testing, checked 2026-11-23
)


def debian_offer(suite: str, micro: str) -> DebianPython | None:
    return next((d for d in DEBIAN_PYTHONS if d.suite == suite and d.micro == micro), None)


DEFAULT_PREFIX = "localhost/raycompat"
DEFAULT_SOURCE_DATE_EPOCH = 1735689600  # 2025-01-01T00:00:00Z
DEFAULT_NOTEBOOK_PACKAGES: tuple[str, ...] = ("jupyterlab", "nbclient", "ipykernel")
# Ray's extras in head and worker: `default` (dashboard, Jobs API) and `serve` (Serve, as
# RayService and `serve.run` need it). The notebook deploys through the Jobs API: no Serve.
DEFAULT_RAY_EXTRAS: tuple[str, ...] = ("default", "serve")
REQUIRED_RAY_EXTRAS = ("default",)
_EXTRA = re.compile(r"^[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?$")
DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian"

TOP_KEYS = (
    "version",
    "prefix",
    "source_date_epoch",
    "debian_mirror",
    "debian_snapshot",
    "ray",
    "python",
    "variants",
    "cuda",
    "bases",
    "notebook_packages",
    "ray_extras",
    "runtime_packages",
    "exclude",
    "audit",
    "grid",
    "registry",
    "layer_compression",
    "gpu_e2e",
    "targets",
    "constraints",
    "platforms",
    "vulnerabilities",
)
VULN_KEYS = ("fail_on", "exceptions")
DEFAULT_EXCEPTIONS = "vulnerability-exceptions.yaml"
# Who consumes a cell's images; each target adds its contract's checks (harness/contracts.py).
TARGETS = ("kuberay", "kubeflow", "vertex")
DEFAULT_TARGETS: Mapping[str, str | tuple[str, ...]] = {"kuberay": "all", "kubeflow": "all"}
GRID_KEYS = ("only", "fail", "warn")
IDENTITY_KEYS = ("python", "ray", "commit")
AUDIT_POLICIES: tuple[str, ...] = tuple(a.value for a in AuditPolicy)
GPU_E2E_POLICIES: tuple[str, ...] = tuple(g.value for g in GpuE2E)
# How `push` compresses layers: gzip every client pulls; zstd needs Docker >= 23 or
# containerd >= 1.5 on every node that pulls (docs/explanation/gate.md)
LAYER_COMPRESSIONS = ("gzip", "zstd")
REQUIRED_KEYS = ("ray", "python")
EXCLUDE_KEYS = ("ray", "python", "variant", "reason")
CONSTRAINT_KEYS = ("ray", "python", "variant", "requirement", "reason")
BASE_KEYS = ("debian", "image")
SELECT_KEYS = ("ray", "python", "variant", "platform")


@dataclass(frozen=True)
class BaseSpec:
    """Where a Python micro comes from: a Debian suite (built here) or a registry image."""

    kind: str  # "debian" | "image"
    ref: str  # suite name or image reference

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.ref}"


@dataclass(frozen=True)
class Cell:
    """One (Ray, Python micro, variant) combination on one platform: builds three images.

    The same combination on linux/amd64 and linux/arm64 is two cells here (two builds, two
    sets of checks, local tags told apart by `-arm64`); the registry gets one multi-arch tag
    per role (`index_suffix`) whose index lists both."""

    ray: str
    python: str
    variant: Variant
    base: BaseSpec
    cuda: str | None = None  # CUDA runtime (major.minor) of a gpu cell
    targets: tuple[str, ...] = ("kuberay", "kubeflow")  # who consumes the images (`targets:`)
    constraints: tuple[str, ...] = ()  # extra requirements its locks resolve with
    platform: str = NATIVE_PLATFORM

    @property
    def arch(self) -> str:
        """`amd64` or `arm64`: the OCI architecture."""
        return self.platform.rpartition("/")[2]

    @property
    def native(self) -> bool:
        return self.platform == NATIVE_PLATFORM

    @property
    def machine(self) -> str:
        """What `platform.machine()` says inside the cell's images."""
        return machine_of(self.arch)

    @property
    def _arch_suffix(self) -> str:
        return "" if self.native else f"-{self.arch}"

    @property
    def flavour(self) -> str:
        """The variant as it appears in tags: `cpu`, or `cu128` for a CUDA 12.8 gpu cell."""
        if self.variant == "gpu" and self.cuda:
            return "cu" + self.cuda.replace(".", "")
        return self.variant

    @property
    def id(self) -> str:
        return f"ray{self.ray}-py{self.python}-{self.flavour}{self._arch_suffix}"

    @property
    def tag_suffix(self) -> str:
        """The local tag: one architecture per tag (the engine holds one per name)."""
        return f"{self.index_suffix}{self._arch_suffix}"

    @property
    def index_suffix(self) -> str:
        """The registry's tag: one image index listing every platform of the combination."""
        return f"{self.ray}-py{self.python}-{self.flavour}"

    @property
    def python_minor(self) -> str:
        major, minor, _ = self.python.split(".")
        return f"{major}.{minor}"

    def tag(self, prefix: str, role: str) -> str:
        """`<prefix>/ray-<role>:<ray>-py<python>-<cpu|cuXY>`, one repository per role."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        return f"{prefix}/ray-{role}:{self.tag_suffix}"

    def tags(self, prefix: str) -> dict[str, str]:
        return {role: self.tag(prefix, role) for role in ROLES}

    def as_selector(self) -> dict[str, str]:
        return {
            "ray": self.ray,
            "python": self.python,
            "variant": self.variant,
            "platform": self.platform,
        }


@dataclass(frozen=True)
class Excluded:
    """A cell the matrix names but will not build, with the reason shown in plan and report."""

    cell: Cell
    reason: str


@dataclass(frozen=True)
class GridPolicy:
    """Which notebook/cluster differences make a pair incompatible and which only warn."""

    fail: tuple[str, ...] = IDENTITY_KEYS
    warn: tuple[str, ...] = WIRE_LIBS
    only: tuple[str, ...] = ()  # default cell selection of `grid` (selectors like --only)


_REGISTRY = re.compile(r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+$")
# Docker's reference grammar (distribution/reference): components of lower-case
# alphanumerics joined by one '.', '_', '__' or any run of '-'; an optional HOST[:PORT]/.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?/)"
_REPOSITORY = re.compile(rf"{_HOST}?{_COMPONENT}(?:/{_COMPONENT})*")
_IMAGE_REF = re.compile(
    rf"{_HOST}?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?(?:@sha256:[0-9a-f]{{64}})?"
)
MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z
# Debian suites mmdebstrap can build here (codenames and the moving aliases).
DEBIAN_SUITES = ("bullseye", "bookworm", "trixie", "forky", "sid", "unstable", "testing")


def requirement_problem(spec: str) -> str | None:
    """Why `spec` is not a plain requirement (name, extras, version specifier), or None.
    Options (`--extra-index-url ...`), URLs and environment markers reach the resolver and
    the installer: they are never accepted from the matrix."""
    from packaging.requirements import InvalidRequirement, Requirement

    hint = "write a plain requirement like 'jupyterlab' or 'numpy>=2,<3'"
    if spec.startswith("-"):
        return f"{spec!r} is an installer option, not a requirement; {hint}"
    try:
        req = Requirement(spec)
    except InvalidRequirement as exc:
        return f"{spec!r} is not a requirement ({str(exc).splitlines()[0]}); {hint}"
    if req.url or req.marker is not None:
        return f"{spec!r} carries a URL or an environment marker; {hint}"
    return None


def registry_problem(value: object) -> str | None:
    """Why `value` is not a registry path like REGION-docker.pkg.dev/PROJECT/REPO, or None."""
    if not isinstance(value, str) or not value:
        return "must be a registry path like europe-west4-docker.pkg.dev/PROJECT/REPO"
    if "@" in value or "://" in value:
        return (
            "must be a plain registry path (no scheme, no user or password): credentials "
            "come only from Docker's own config or a credential helper (`docker login`, "
            "`gcloud auth configure-docker`)"
        )
    if not _REGISTRY.match(value):
        return (
            f"{value!r} is not a registry path; use HOST[:PORT]/PATH in lower case, e.g. "
            "europe-west4-docker.pkg.dev/PROJECT/REPO"
        )
    return None


@dataclass(frozen=True)
class Matrix:
    path: Path
    prefix: str
    source_date_epoch: int
    debian_mirror: str
    cells: tuple[Cell, ...]
    excluded: tuple[Excluded, ...] = ()
    notebook_packages: tuple[str, ...] = DEFAULT_NOTEBOOK_PACKAGES
    ray_extras: tuple[str, ...] = DEFAULT_RAY_EXTRAS
    runtime_packages: tuple[str, ...] = ()  # the user's own, in every image of a cell
    ray_versions: tuple[str, ...] = field(default=())
    audit: AuditPolicy = AuditPolicy.WARN
    debian_snapshot: bool = False  # mirror is a frozen snapshot: do not enforce Valid-Until
    grid: GridPolicy = GridPolicy()
    registry: str | None = None  # push target, e.g. europe-west4-docker.pkg.dev/proj/ray
    layer_compression: str = "gzip"  # how push compresses layers (LAYER_COMPRESSIONS)
    gpu_e2e: GpuE2E = GpuE2E.OPTIONAL
    vulnerabilities: VulnPolicy | None = None  # None: push does not read scanner reports
    lines: Mapping[str, int] = field(default_factory=dict)  # key path -> line, for later errors

    def fail(self, key: str, message: str) -> MatrixError:
        """An error about this matrix found after loading (e.g. by the package index)."""
        line = None
        probe = key
        while probe and line is None:
            line = self.lines.get(probe)
            probe = probe.rpartition(".")[0]
        return MatrixError(str(self.path), key, message, line)

    def cell(self, cell_id: str) -> Cell:
        for c in self.cells:
            if c.id == cell_id:
                return c
        raise KeyError(cell_id)


# --- YAML with line numbers ---------------------------------------------------------------


MAX_BYTES = 1 << 20  # a matrix file is a few KB; refuse what could only be a mistake or an attack
MAX_NODES = 20_000  # YAML nodes after expanding aliases ("billion laughs" stays bounded)


class _Lines:
    """Maps key paths ("ray", "bases.3.11.2.debian", "exclude.0") to 1-based source lines,
    and finds keys given twice in one mapping (YAML would silently keep the last)."""

    def __init__(self, root: yaml.Node | None) -> None:
        self._lines: dict[str, int] = {}
        self.duplicates: list[tuple[str, int, int]] = []  # (key path, first line, second)
        self._seen: set[int] = set()
        if root is not None:
            self._walk(root, "")

    def _walk(self, node: yaml.Node, path: str) -> None:
        self._lines.setdefault(path, node.start_mark.line + 1)
        if id(node) in self._seen:  # an alias: its lines are where the anchor is
            return
        self._seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key_node, value_node in node.value:
                key = f"{path}.{key_node.value}" if path else str(key_node.value)
                line = key_node.start_mark.line + 1
                if key in first:
                    self.duplicates.append((key, first[key], line))
                first.setdefault(key, line)
                self._lines[key] = line
                self._walk(value_node, key)
                self._lines[key] = line
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, f"{path}.{i}" if path else str(i))

    def as_dict(self) -> dict[str, int]:
        return dict(self._lines)

    def __call__(self, path: str) -> int | None:
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path.rpartition(".")[0]
        return self._lines.get("")


def _expanded_size(root: yaml.Node) -> int:
    """How many nodes the document has once every alias is expanded, without expanding it
    (each distinct node is counted once and its size reused), capped at MAX_NODES + 1."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        if not done:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        sizes[id(node)] = min(MAX_NODES + 1, 1 + sum(sizes.get(id(c), 1) for c in children))
    return sizes[id(root)]


class _Loader:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        loader: yaml.SafeLoader | None = None
        try:
            loader = yaml.SafeLoader(text)
            root = loader.get_single_node()
            if root is not None and _expanded_size(root) > MAX_NODES:
                raise MatrixError(
                    str(path),
                    "(yaml)",
                    f"expands to more than {MAX_NODES} values (aliases that multiply, e.g. a "
                    "'billion laughs' document); write the matrix out plainly",
                )
            self.data: Any = loader.construct_document(root) if root is not None else None
        except RecursionError:
            raise MatrixError(
                str(path), "(yaml)", "is nested too deeply to be a matrix; write it out plainly"
            ) from None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            line = mark.line + 1 if mark is not None else None
            problem = exc.problem or str(exc)
            raise MatrixError(
                str(path), "(yaml)", f"malformed YAML: {problem}; fix the syntax", line
            ) from None
        except yaml.YAMLError as exc:
            raise MatrixError(str(path), "(yaml)", f"malformed YAML: {exc}") from None
        finally:
            if loader is not None:
                loader.dispose()
        try:
            self.lines = _Lines(root)
        except RecursionError:
            raise MatrixError(
                str(path), "(yaml)", "is nested too deeply to be a matrix; write it out plainly"
            ) from None
        for key, first, second in self.lines.duplicates:
            raise MatrixError(
                str(path),
                key,
                f"is given twice (lines {first} and {second}); YAML would keep only the last: "
                "remove one",
                second,
            )

    def fail(self, key: str, message: str) -> MatrixError:
        return MatrixError(str(self.path), key, message, self.lines(key))

    def check_keys(self, mapping: Mapping[Any, Any], allowed: Sequence[str], where: str) -> None:
        for key in mapping:
            if key in allowed:
                continue
            near = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"allowed: {', '.join(allowed)}"
            full = f"{where}.{key}" if where else str(key)
            raise self.fail(full, f"unknown key {key!r}; {hint}")

    def str_list(self, key: str) -> list[str]:
        value = self.data.get(key)
        if isinstance(value, (str, int, float)):
            value = [value]
        if not isinstance(value, list) or not value:
            example = LIST_EXAMPLES.get(key, '["..."]')
            raise self.fail(key, f"must be a non-empty list, e.g. {example}")
        out: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.fail(
                    f"{key}.{i}",
                    f"{item!r} must be a quoted string (YAML reads 3.10 as the number 3.1)",
                )
            out.append(item.strip())
        return out


# What a list key's error shows as an example (matrix.yaml's own keys).
LIST_EXAMPLES = {
    "ray": '["2.60.0"]',
    "python": '["3.11.2"]',
    "variants": "[cpu, gpu]",
    "ray_extras": "[default, serve]",
    "notebook_packages": "[jupyterlab, nbclient, ipykernel]",
    "runtime_packages": '["torch==2.9.1"]',
}


def exact_version(loader: _Loader, key: str, text: str, what: str) -> str:
    """Accept only a final X.Y.Z release: `3.11` or `2.60` is refused, not guessed."""
    example = "3.11.2" if what == "Python" else "2.60.0"
    try:
        version = Version(text)
    except InvalidVersion:
        raise loader.fail(
            key, f"{text!r} is not a version; write an exact {what} version like {example}"
        ) from None
    if (
        len(version.release) != 3
        or version.is_prerelease
        or version.is_postrelease
        or version.local
    ):
        raise loader.fail(
            key,
            f"{text!r} is not an exact {what} version; pin major.minor.micro (e.g. {example})",
        )
    if str(version) != text:
        raise loader.fail(key, f"{text!r} is not written canonically; write {str(version)!r}")
    return text


def _bases(loader: _Loader, pythons: Iterable[str]) -> dict[str, BaseSpec]:
    raw = loader.data.get("bases") or {}
    if not isinstance(raw, dict):
        raise loader.fail(
            "bases", "must be a mapping of Python micro to {debian: SUITE} or {image: REF}"
        )
    overrides: dict[str, BaseSpec] = {}
    for micro, spec in raw.items():
        key = f"bases.{micro}"
        if not isinstance(spec, dict) or len(spec) != 1:
            raise loader.fail(key, "must be exactly one of {debian: SUITE} or {image: REF}")
        loader.check_keys(spec, BASE_KEYS, key)
        ((kind, ref),) = spec.items()
        if not isinstance(ref, str) or not ref:
            raise loader.fail(f"{key}.{kind}", "must be a non-empty string")
        if kind == "image" and not _IMAGE_REF.fullmatch(ref):
            raise loader.fail(
                f"{key}.{kind}",
                f"{ref!r} is not an image reference; write NAME[:TAG][@sha256:DIGEST], e.g. "
                "python:3.11.9-slim-bookworm",
            )
        if kind == "debian" and ref not in DEBIAN_SUITES:
            near = difflib.get_close_matches(ref, DEBIAN_SUITES, n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"known: {', '.join(DEBIAN_SUITES)}"
            raise loader.fail(f"{key}.{kind}", f"{ref!r} is not a Debian suite; {hint}")
        shipped = [d.micro for d in DEBIAN_PYTHONS if d.suite == ref]
        if kind == "debian" and shipped and str(micro) not in shipped:
            raise loader.fail(
                f"{key}.{kind}",
                f"Debian {ref} ships Python {' and '.join(shipped)}, not {micro}; "
                "choose the suite that ships this micro or an image base",
            )
        overrides[str(micro)] = BaseSpec(kind, ref)
    resolved: dict[str, BaseSpec] = {}
    for micro in pythons:
        if micro in overrides:
            resolved[micro] = overrides[micro]
            continue
        suites = [d.suite for d in DEBIAN_PYTHONS if d.micro == micro]
        if not suites:
            known = ", ".join(f"{d.suite} {d.micro}" for d in DEBIAN_PYTHONS)
            raise loader.fail(
                "python",
                f"no base provider delivers Python {micro} (Debian ships: {known}); pick one of "
                f'those or add `bases: {{"{micro}": {{image: "python:{micro}-slim-bookworm"}}}}` '
                "if you can pull from a registry",
            )
        resolved[micro] = BaseSpec("debian", suites[0])
    return resolved


@dataclass(frozen=True)
class VulnPolicy:
    """`vulnerabilities:`: push needs a scanner report on every image (harness.vulns);
    findings at `fail_on` or above block the cell unless `exceptions` covers them."""

    fail_on: str
    exceptions: Path


def _vulnerabilities(loader: _Loader, root: Path) -> VulnPolicy | None:
    from harness.vulns import FAIL_ON

    raw = loader.data.get("vulnerabilities")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise loader.fail("vulnerabilities", "must be a mapping: {fail_on: high}")
    loader.check_keys(raw, VULN_KEYS, "vulnerabilities")
    fail_on = raw.get("fail_on", "high")
    if fail_on not in FAIL_ON:
        raise loader.fail(
            "vulnerabilities.fail_on", f"{fail_on!r} is not one of {', '.join(FAIL_ON)}"
        )
    exceptions = raw.get("exceptions", DEFAULT_EXCEPTIONS)
    if not isinstance(exceptions, str) or not exceptions:
        raise loader.fail("vulnerabilities.exceptions", "must be a file name (YAML)")
    return VulnPolicy(fail_on, root / exceptions)


def _grid(loader: _Loader) -> GridPolicy:
    raw = loader.data.get("grid")
    if raw is None:
        return GridPolicy()
    if not isinstance(raw, dict):
        raise loader.fail("grid", "must be a mapping with only:, fail: and warn:")
    loader.check_keys(raw, GRID_KEYS, "grid")
    known = (*IDENTITY_KEYS, *WIRE_LIBS)
    lists: dict[str, tuple[str, ...]] = {}
    for key in GRID_KEYS:
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise loader.fail(f"grid.{key}", "must be a list of strings")
        if key != "only":
            for i, item in enumerate(value):
                if item not in known:
                    near = difflib.get_close_matches(item, known, n=1)
                    hint = f"did you mean {near[0]!r}?" if near else f"known: {', '.join(known)}"
                    raise loader.fail(f"grid.{key}.{i}", f"unknown key {item!r}; {hint}")
        lists[key] = tuple(value)
    for text in lists.get("only", ()):
        try:
            parse_selector(text)
        except MatrixError as exc:
            raise loader.fail("grid.only", str(exc)) from None
    default = GridPolicy()
    return GridPolicy(
        fail=lists.get("fail", default.fail),
        warn=lists.get("warn", default.warn),
        only=lists.get("only", ()),
    )


def _cell_rules(
    loader: _Loader, name: str, keys: Sequence[str], example: str, needs_reason: str
) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
    """The entries of a list of rules about cells (`exclude:`, `constraints:`), each a
    mapping of selector globs (ray, python, variant) with a reason: (key, selector, rule)."""
    raw = loader.data.get(name) or []
    if not isinstance(raw, list):
        raise loader.fail(name, f"must be a list of {{{', '.join(keys)}}}")
    found = []
    for i, rule in enumerate(raw):
        key = f"{name}.{i}"
        if not isinstance(rule, dict):
            raise loader.fail(key, f"must be a mapping like {example}")
        loader.check_keys(rule, keys, key)
        reason = rule.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise loader.fail(key, f"needs a `reason:` saying why {needs_reason}")
        for k in SELECT_KEYS:
            if k in rule and not isinstance(rule[k], str):
                raise loader.fail(
                    f"{key}.{k}",
                    f"{rule[k]!r} must be one quoted string (a glob like '3.9.*'); write one "
                    "rule per value",
                )
        found.append((key, {k: str(rule[k]) for k in SELECT_KEYS if k in rule}, rule))
    return found


def _excludes(loader: _Loader) -> list[tuple[dict[str, str], str]]:
    rules: list[tuple[dict[str, str], str]] = []
    example = '{ray: "2.60.0", python: "3.9.*", reason: ...}'
    for key, pattern, rule in _cell_rules(
        loader, "exclude", EXCLUDE_KEYS, example, "these cells are not built"
    ):
        if not pattern:
            raise loader.fail(key, "names no ray, python or variant: it would exclude everything")
        rules.append((pattern, rule["reason"].strip()))
    return rules


def _constraints(loader: _Loader) -> list[tuple[dict[str, str], str]]:
    """`constraints:` requirements the locks of the matching cells resolve with (a library
    version a Ray release breaks with), each with its reason."""
    found: list[tuple[dict[str, str], str]] = []
    example = '{ray: "2.51.*", requirement: "protobuf<7", reason: ...}'
    for key, pattern, rule in _cell_rules(
        loader, "constraints", CONSTRAINT_KEYS, example, "the cells need it"
    ):
        requirement = rule.get("requirement")
        if not isinstance(requirement, str):
            raise loader.fail(key, 'needs a `requirement:` like "protobuf<7"')
        why = requirement_problem(requirement)
        if why:
            raise loader.fail(f"{key}.requirement", why)
        found.append((pattern, requirement))
    return found


def matches(selector: Mapping[str, str], cell: Cell) -> bool:
    """True when every key of the selector glob-matches the cell (`python=3.11.*`)."""
    values = cell.as_selector()
    return all(fnmatch.fnmatchcase(values[k], pattern) for k, pattern in selector.items())


SNAPSHOT_ENV = "HARNESS_DEBIAN_SNAPSHOT"


def snapshot_from_env(env: Mapping[str, str]) -> bool:
    """$HARNESS_DEBIAN_SNAPSHOT: this machine's mirror is a frozen snapshot, so apt may accept
    Release files past their Valid-Until (signatures are still checked). A property of the
    machine, not of the product: it is never a default of the committed matrix."""
    value = env.get(SNAPSHOT_ENV, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise MatrixError(SNAPSHOT_ENV, "(environment)", f"{value!r} is not 1/true/yes or 0/false/no")


def load(path: str | Path, env: Mapping[str, str] = os.environ) -> Matrix:
    """Read, validate and expand a matrix file (and the environment's $HARNESS_DEBIAN_SNAPSHOT)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise MatrixError(
                str(path), "(file)", f"is {size} bytes; a matrix is at most {MAX_BYTES} bytes"
            )
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise MatrixError(
            str(path), "(file)", "not found; pass --matrix PATH or create matrix.yaml"
        ) from None
    except UnicodeDecodeError as exc:
        raise MatrixError(
            str(path), "(file)", f"is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise MatrixError(str(path), "(file)", f"cannot be read: {exc.strerror}") from None
    loader = _Loader(path, text)
    data = loader.data
    if data is None:
        raise MatrixError(str(path), "(file)", "is empty; declare at least `ray:` and `python:`")
    if not isinstance(data, dict):
        raise loader.fail("(top)", "must be a mapping with keys like ray:, python:, variants:")
    # the structure (types, allowed values, required and unknown keys): matrix.schema.json;
    # the rules between keys: below
    found = matrix_schema.problem(
        data, loader.lines, text, path.resolve().parent / ".cache" / "matrix-schema"
    )
    if found is not None:
        key, message, line = found
        raise MatrixError(str(path), key, message, line)

    rays = [
        exact_version(loader, f"ray.{i}", v, "Ray") for i, v in enumerate(loader.str_list("ray"))
    ]
    pythons = [
        exact_version(loader, f"python.{i}", v, "Python")
        for i, v in enumerate(loader.str_list("python"))
    ]
    variants = loader.str_list("variants") if "variants" in data else ["cpu"]
    for i, variant in enumerate(variants):
        if variant not in VARIANTS:
            near = difflib.get_close_matches(variant, VARIANTS, n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"known: {', '.join(VARIANTS)}"
            raise loader.fail(f"variants.{i}", f"unknown variant {variant!r}; {hint}")
    cuda = data.get("cuda", DEFAULT_CUDA)
    if not isinstance(cuda, str):
        raise loader.fail("cuda", f'{cuda!r} must be a quoted string like "{DEFAULT_CUDA}"')
    if cuda not in CUDA_VERSIONS:
        near = difflib.get_close_matches(cuda, CUDA_VERSIONS, n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"known: {', '.join(CUDA_VERSIONS)}"
        raise loader.fail("cuda", f"unknown CUDA version {cuda!r}; {hint}")
    for key, values in (("ray", rays), ("python", pythons), ("variants", variants)):
        seen: set[str] = set()
        for i, v in enumerate(values):
            if v in seen:
                raise loader.fail(
                    f"{key}.{i}", f"{v!r} is listed twice (duplicate cells); remove one"
                )
            seen.add(v)

    prefix = data.get("prefix", DEFAULT_PREFIX)
    if (
        not isinstance(prefix, str)
        or prefix != prefix.lower()
        or not _REPOSITORY.fullmatch(prefix)
        or len(prefix) > 200
    ):
        raise loader.fail(
            "prefix",
            f"{prefix!r} is not an image repository path; write lower-case path components "
            "(a-z, 0-9, '.', '_', '-') separated by '/', optionally after HOST[:PORT]/, with "
            "no scheme, credentials, spaces or empty segments, like localhost/raycompat",
        )
    sde = data.get("source_date_epoch", DEFAULT_SOURCE_DATE_EPOCH)
    if not isinstance(sde, int) or isinstance(sde, bool) or not 0 <= sde <= MAX_EPOCH:
        raise loader.fail(
            "source_date_epoch",
            f"must be an integer from 0 to {MAX_EPOCH} (seconds since 1970, at most the end "
            "of year 9999)",
        )
    mirror = data.get("debian_mirror", DEFAULT_DEBIAN_MIRROR)
    why = mirror_problem(mirror)
    if why:
        raise loader.fail("debian_mirror", why)
    packages = (
        tuple(loader.str_list("notebook_packages"))
        if "notebook_packages" in data
        else DEFAULT_NOTEBOOK_PACKAGES
    )
    for i, spec in enumerate(packages):
        why = requirement_problem(spec)
        if why:
            raise loader.fail(f"notebook_packages.{i}", why)
    extras = _ray_extras(loader) if "ray_extras" in data else DEFAULT_RAY_EXTRAS
    runtime_packages = _runtime_packages(loader) if "runtime_packages" in data else ()

    grid = _grid(loader)
    vulnerabilities = _vulnerabilities(loader, path.resolve().parent)
    registry = data.get("registry")
    if registry is not None:
        why = registry_problem(registry)
        if why:
            raise loader.fail("registry", why)
    compression = data.get("layer_compression", "gzip")
    if compression not in LAYER_COMPRESSIONS:
        raise loader.fail(
            "layer_compression", f"{compression!r} is not one of {', '.join(LAYER_COMPRESSIONS)}"
        )
    snapshot = data.get("debian_snapshot", False)
    if not isinstance(snapshot, bool):
        raise loader.fail("debian_snapshot", "must be true or false")
    snapshot = snapshot or snapshot_from_env(env)
    audit = data.get("audit", "warn")
    if audit is False:  # YAML 1.1 reads an unquoted `off` as false
        audit = "off"
    if audit not in AUDIT_POLICIES:
        raise loader.fail("audit", f"{audit!r} is not one of {', '.join(AUDIT_POLICIES)}")
    gpu_e2e = data.get("gpu_e2e", "optional")
    if gpu_e2e not in GPU_E2E_POLICIES:
        raise loader.fail("gpu_e2e", f"{gpu_e2e!r} is not one of {', '.join(GPU_E2E_POLICIES)}")
    bases = _bases(loader, pythons)
    rules = _excludes(loader)
    targets = _targets(loader)
    platforms = _platforms(loader)
    constraints = _constraints(loader)
    cells: list[Cell] = []
    excluded: list[Excluded] = []
    product = [
        Cell(ray, python, Variant(variant), bases[python])
        for ray, python, variant in itertools.product(rays, pythons, variants)
    ]
    for key, selected in (("constraints", constraints), ("exclude", rules)):
        for i, (sel, _) in enumerate(selected):
            if not any(matches(sel, c) for c in product):
                raise loader.fail(
                    f"{key}.{i}",
                    f"matches no cell of ray x python x variants ({sel}); it would do "
                    "nothing: fix its values or remove it",
                )
    for ray, python, variant in itertools.product(rays, pythons, variants):
        cell = Cell(
            ray=ray,
            python=python,
            variant=Variant(variant),
            base=bases[python],
            cuda=cuda if variant == "gpu" else None,
        )
        cell = dataclasses.replace(
            cell,
            targets=tuple(t for t in TARGETS if _targeted(targets.get(t), cell)),
            constraints=tuple(req for sel, req in constraints if matches(sel, cell)),
        )
        reason = next((r for sel, r in rules if matches(sel, cell)), None)
        if reason is not None:
            excluded.append(Excluded(cell, reason))
            continue
        for platform in PLATFORMS:
            if not _targeted(platforms.get(platform), cell):
                continue
            if platform != NATIVE_PLATFORM and cell.base.kind != "debian":
                raise loader.fail(
                    f"platforms.{platform}",
                    f"cell {cell.id} takes Python {cell.python} from {cell.base.label}: only "
                    "Debian bases (built here per architecture) can be built for "
                    f"{platform}; narrow the selector or use a Debian base",
                )
            cells.append(dataclasses.replace(cell, platform=platform))
    if not cells:
        raise MatrixError(
            str(path),
            "exclude",
            "every cell is excluded: the matrix is empty; loosen `exclude:`",
            loader.lines("exclude"),
        )
    return Matrix(
        path=path,
        prefix=prefix,
        source_date_epoch=sde,
        debian_mirror=mirror.rstrip("/"),
        cells=tuple(cells),
        excluded=tuple(excluded),
        notebook_packages=packages,
        ray_extras=extras,
        runtime_packages=runtime_packages,
        ray_versions=tuple(rays),
        audit=AuditPolicy(audit),
        debian_snapshot=snapshot,
        grid=grid,
        registry=registry,
        layer_compression=compression,
        gpu_e2e=GpuE2E(gpu_e2e),
        vulnerabilities=vulnerabilities,
        lines=loader.lines.as_dict(),
    )


def _targets(loader: _Loader) -> Mapping[str, str | tuple[str, ...]]:
    """`targets:` target -> `all`, `none` or a list of cell selectors (like --only)."""
    raw = loader.data.get("targets")
    if raw is None:
        return DEFAULT_TARGETS
    if not isinstance(raw, dict):
        raise loader.fail(
            "targets",
            "must map a target to all, none or a list of cell selectors, e.g. "
            '{kuberay: all, vertex: ["ray=2.33.0"]}',
        )
    loader.check_keys(raw, TARGETS, "targets")
    out: dict[str, str | tuple[str, ...]] = {}
    for name, value in raw.items():
        key = f"targets.{name}"
        if value in ("all", "none"):
            out[name] = value
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise loader.fail(key, 'must be all, none or a list of selectors like "python=3.10.*"')
        for i, text in enumerate(value):
            try:
                parse_selector(text)
            except MatrixError:
                raise loader.fail(
                    f"{key}.{i}",
                    f"{text!r} is not a cell selector; write KEY=GLOB[,KEY=GLOB] with keys "
                    f'{", ".join(SELECT_KEYS)}, e.g. "ray=2.33.0,python=3.10.*"',
                ) from None
        out[name] = tuple(value)
    return out


def _platforms(loader: _Loader) -> Mapping[str, str | tuple[str, ...]]:
    """`platforms:` a list (every cell) or platform -> all, none or cell selectors;
    linux/amd64 is every cell's."""
    raw = loader.data.get("platforms")
    if raw is None:
        return {NATIVE_PLATFORM: "all"}
    example = 'e.g. [linux/amd64, linux/arm64], or {linux/amd64: all, linux/arm64: ["ray=2.60.0"]}'
    if isinstance(raw, list):
        raw = {name: "all" for name in raw} if all(isinstance(v, str) for v in raw) else None
    if not isinstance(raw, dict) or not raw:
        raise loader.fail(
            "platforms", f"must list platforms or map each to all/none/selectors; {example}"
        )
    out: dict[str, str | tuple[str, ...]] = {}
    for name, value in raw.items():
        key = f"platforms.{name}"
        if name not in PLATFORMS:
            near = difflib.get_close_matches(str(name), PLATFORMS, n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"known: {', '.join(PLATFORMS)}"
            raise loader.fail(key, f"unknown platform {name!r}; {hint}")
        if value in ("all", "none"):
            out[name] = value
            continue
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise loader.fail(key, 'must be all, none or a list of selectors like "ray=2.60.0"')
        for i, text in enumerate(value):
            try:
                selector = parse_selector(text)
            except MatrixError:
                selector = {"platform": ""}
            if "platform" in selector:
                raise loader.fail(
                    f"{key}.{i}",
                    f"{text!r} is not a cell selector; write KEY=GLOB[,KEY=GLOB] with keys "
                    'ray, python, variant, e.g. "ray=2.60.0,python=3.11.*"',
                )
        out[name] = tuple(value)
    if out.get(NATIVE_PLATFORM) != "all":
        raise loader.fail(
            f"platforms.{NATIVE_PLATFORM}" if NATIVE_PLATFORM in out else "platforms",
            f"every cell is built for {NATIVE_PLATFORM} (native here; the grid and the "
            f"consumers' checks run on it): keep {NATIVE_PLATFORM}: all and add linux/arm64 "
            "beside it",
        )
    return out


def _targeted(rule: str | tuple[str, ...] | None, cell: Cell) -> bool:
    if rule is None or rule == "none":
        return False
    if rule == "all":
        return True
    return any(matches(parse_selector(text), cell) for text in rule)


def _ray_extras(loader: _Loader) -> tuple[str, ...]:
    extras = loader.str_list("ray_extras")
    for i, extra in enumerate(extras):
        if not _EXTRA.match(extra):
            raise loader.fail(
                f"ray_extras.{i}", f"{extra!r} is not an extra's name; e.g. serve, tune, data"
            )
    for needed in REQUIRED_RAY_EXTRAS:
        if needed not in extras:
            raise loader.fail(
                "ray_extras", f"must include {needed!r}: the dashboard and the Jobs API need it"
            )
    return tuple(dict.fromkeys(extras))


def _runtime_packages(loader: _Loader) -> tuple[str, ...]:
    value = loader.data.get("runtime_packages")
    if value == []:
        return ()
    packages = loader.str_list("runtime_packages")
    for i, spec in enumerate(packages):
        why = requirement_problem(spec)
        if why:
            raise loader.fail(f"runtime_packages.{i}", why)
        if re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0].lower() == "ray":
            raise loader.fail(
                f"runtime_packages.{i}", "Ray comes from `ray:`; add its extras to `ray_extras`"
            )
    return tuple(packages)


def parse_selector(text: str) -> dict[str, str]:
    """`ray=2.60.0,python=3.11.*` -> {"ray": "2.60.0", "python": "3.11.*"}."""
    selector: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not value.strip():
            raise MatrixError(
                "--only", part, "must be KEY=GLOB, e.g. --only ray=2.60.0,python=3.11.*"
            )
        if key not in SELECT_KEYS:
            near = difflib.get_close_matches(key, SELECT_KEYS, n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"use one of {', '.join(SELECT_KEYS)}"
            raise MatrixError("--only", key, f"unknown key; {hint}")
        selector[key] = value.strip()
    if not selector:
        raise MatrixError("--only", text, "is empty; e.g. --only ray=2.60.0,python=3.11.*")
    return selector


def select(matrix: Matrix, only: Sequence[str]) -> tuple[list[Cell], list[Excluded]]:
    """Cells matching any `--only` selector (all cells when none), and the ones left out."""
    if not only:
        return list(matrix.cells), []
    selectors = [parse_selector(text) for text in only]
    chosen = [c for c in matrix.cells if any(matches(s, c) for s in selectors)]
    if not chosen:
        raise MatrixError(
            "--only",
            " | ".join(only),
            f"selects no cell of {matrix.path}; `python -m harness plan` lists the cells",
        )
    left = [
        Excluded(c, f"not selected by --only {' | '.join(only)}")
        for c in matrix.cells
        if c not in chosen
    ]
    return chosen, left
