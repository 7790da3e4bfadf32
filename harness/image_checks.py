"""Structure checks of one built image (in the manner of container-structure-test): what
is measured inside it (Python micro, Ray version and commit, uid, leftovers, bytecode,
KubeRay's login shell) against its labels and the cell, and what its metadata says (user,
command, base layer, no credentials). Every check records the image id it ran on: the
push gate accepts a role only when all of them ran on the tested image."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from pathlib import Path

from packaging.version import InvalidVersion, Version

from harness import contracts, labels, sbom
from harness.backends import probe_result
from harness.engine import STAGING, Engine
from harness.errors import HarnessError
from harness.inside import PROBE_SOURCE
from harness.inside.probe import STDLIB_SAMPLE
from harness.matrix import Cell
from harness.probe_client import STRUCTURE_ARGS
from harness.results import SKIPPED, Check

EXPECTED_CMD = {
    "head": "ray start --head",
    "worker": "ray start --block",
    "notebook": "jupyter lab",
}
RUNTIME_USER = {  # uid:gid; the notebook is Kubeflow's jovyan (group users), the nodes `ray`
    "head": "1000:1000",
    "worker": "1000:1000",
    "notebook": "1000:100",
}
VERTEX_ROLES = ("head", "worker")  # the images a Vertex AI cluster's node types run
# The structure checks every image gets (`image:<role>:<name>`); the gate refuses a cell
# unless each ran on the very image id that was tested.
STRUCTURE_CHECKS = (
    "python",
    "platform",
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
    names = [*STRUCTURE_CHECKS, "sbom", *(["cuda"] if cell.cuda else [])]
    if "vertex" in cell.targets and role in VERTEX_ROLES:
        names.append("vertex:contract")
    return [f"image:{role}:{n}" for n in names]


def run_probe(
    engine: Engine, image: str, args: list[str], timeout: float = 180
) -> dict[str, object]:
    """Run the probe with `args` in a throwaway container of `image`, with no network."""
    r = engine.run_once(
        image,
        [f"{STAGING}/probe.py", *args],
        entrypoint=["python"],
        files={"probe.py": PROBE_SOURCE},
        timeout=timeout,
    )
    result = probe_result(r.stdout)
    if r.returncode != 0 or result is None:
        raise HarnessError(f"probe {' '.join(args)} in {image} failed: {r.stderr.strip()[-500:]}")
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
    history = [line for entry in engine.history(tag) for line in entry.splitlines()]
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


@functools.cache
def fingerprint() -> str:
    """Of the code that decides structure checks (this module, the contracts, the probe run
    inside the image): checks recorded under another fingerprint are not reused."""
    h = hashlib.sha256(PROBE_SOURCE.encode())
    for module in (__file__, contracts.__file__, sbom.__file__):
        h.update(Path(module).read_bytes())
    return h.hexdigest()[:16]


def structure_checks(
    engine: Engine, cell: Cell, role: str, tag: str
) -> tuple[list[Check], dict[str, object]]:
    """container-structure-test style checks of one built image, and what was measured."""
    info = engine.inspect("image", tag) or {}
    config = info.get("Config") or {}
    found: dict[str, str] = dict(config.get("Labels") or {})
    facts = run_probe(engine, tag, STRUCTURE_ARGS, timeout=180 if cell.native else 900)
    name = f"image:{role}"
    checks = [
        Check.of(
            f"{name}:python",
            facts.get("python") == cell.python == found.get(labels.PYTHON),
            f"measured {facts.get('python')}, label {found.get(labels.PYTHON)}, "
            f"asked {cell.python}",
            stage="build",
        ),
        platform_check(cell, name, info, facts, found),
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
            config.get("User") == RUNTIME_USER[role] and facts.get("uid") == 1000,
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
    checks.append(bytecode_check(name, facts, debian_base=cell.base.kind == "debian"))
    checks.append(base_layer_check(name, info, found, debian_base=cell.base.kind == "debian"))
    checks.append(kuberay_check(cell, name, facts))
    checks.append(secret_check(engine, role, tag, config))
    if "vertex" in cell.targets and role in VERTEX_ROLES:
        checks.append(vertex_check(name, facts))
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


def platform_check(
    cell: Cell,
    name: str,
    info: Mapping[str, object],
    facts: Mapping[str, object],
    found: Mapping[str, str],
) -> Check:
    """The image is the cell's platform: its config's architecture, its label and what
    `platform.machine()` says inside it (run under QEMU for a foreign architecture). Every
    image the harness builds carries the label: one without it was not built by this
    harness and fails, native or not."""
    arch = info.get("Architecture")
    label = found.get(labels.PLATFORM)
    return Check.of(
        f"{name}:platform",
        arch == cell.arch and facts.get("machine") == cell.machine and label == cell.platform,
        f"config {info.get('Os')}/{arch}, label {label or '(none)'}, platform.machine() "
        f"{facts.get('machine')}; asked {cell.platform} ({cell.machine})"
        + ("" if cell.native else ", run under QEMU emulation"),
        stage="build",
    )


def bytecode_check(name: str, facts: Mapping[str, object], debian_base: bool = True) -> Check:
    """Every .pyc in the venv (all the layers the harness builds) is checked-hash, so
    bytecode does not depend on when the image was built; on Python 3.11 and newer, a
    module of each layer the harness compiled has bytecode without column tables (what the
    pull sizes assume): the venv's, and the standard library's (STDLIB_SAMPLE) of a Debian
    base it built. A registry base's standard library is that image's own."""
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
    tables = facts.get("column_tables")
    columns_ok = True
    python = str(facts.get("python") or "")
    if tables is None and _before_column_tables(python):
        detail += f"; Python {python} has no column tables"  # they came with 3.11
    elif isinstance(tables, dict):
        tables = {m: v for m, v in tables.items() if debian_base or m != STDLIB_SAMPLE}
        with_tables = sorted(
            f"{m} ({v})" if v is not True else m for m, v in tables.items() if v is not False
        )
        columns_ok = bool(tables) and not with_tables
        if with_tables:
            detail += f"; bytecode with column tables or none: {', '.join(with_tables)}"
        else:
            detail += f"; no column tables in {', '.join(sorted(tables)) or 'no sampled module'}"
    else:  # absent, None or another shape on 3.11+: not measured is not a pass
        columns_ok = False
        detail += f"; column tables not measured on Python {python or '(unknown)'}"
    return Check.of(f"{name}:bytecode", good > 0 and bad == 0 and columns_ok, detail, stage="build")


def _before_column_tables(python: str) -> bool:
    """A measured Python older than 3.11, whose bytecode has no column tables."""
    try:
        return Version(python) < Version("3.11")
    except InvalidVersion:
        return False


def base_layer_check(
    name: str, info: Mapping[str, object], found: Mapping[str, str], debian_base: bool = True
) -> Check:
    """A Debian base is one loaded rootfs tarball: the image's first layer (its diff id)
    is that tarball, whose sha256 the label records; an image on a Debian base without the
    label fails. A registry base (`bases:` image) has no tarball: skipped, with that."""
    rootfs = found.get(labels.ROOTFS) or ""
    layers = (info.get("RootFS") or {}).get("Layers") or []  # type: ignore[attr-defined]
    first = str(layers[0]) if layers else ""
    if not debian_base:
        return Check(
            f"{name}:base-layer",
            SKIPPED,
            "registry base (matrix.yaml `bases:`): no rootfs tarball to compare",
            stage="build",
        )
    return Check.of(
        f"{name}:base-layer",
        bool(rootfs) and first == f"sha256:{rootfs}",
        f"first layer {first[:19] or '(none)'}, rootfs label "
        + (f"sha256:{rootfs[:12]}" if rootfs else "missing: which rootfs is under it is unknown"),
        stage="build",
    )


def vertex_check(name: str, facts: Mapping[str, object]) -> Check:
    """`vertex:contract`: the image against Vertex AI's documented list (contracts.VERTEX),
    judged on what was measured inside it."""
    problems = contracts.vertex_problems(
        str(facts.get("python")), str(facts.get("ray")), contracts.installed_of(facts)
    )
    return Check.of(
        f"{name}:vertex:contract", not problems, contracts.vertex_detail(problems), stage="build"
    )


def kuberay_check(cell: Cell, name: str, facts: Mapping[str, object]) -> Check:
    """KubeRay starts a node with `bash -lc 'ray start ...'`; its operators' exec probes
    (before Ray 2.53's HTTP probes, kuberay#4448) run `wget` in the container."""
    shell = facts.get("login_shell")
    found = [str(p) for p in shell] if isinstance(shell, list) else []
    if "kuberay" not in cell.targets:
        return Check(
            f"{name}:kuberay-shell",
            SKIPPED,
            "kuberay is not among this cell's targets (matrix.yaml `targets:`)",
            stage="build",
        )
    problems = []
    if "/opt/ray/bin/ray" not in found:
        problems.append("`bash -lc` does not find /opt/ray/bin/ray")
    if not any(p.endswith("/wget") for p in found):
        base = f"the base {cell.base.ref}" if cell.base.kind == "image" else "the image"
        problems.append(
            f"{base} has no wget, which KubeRay's exec probes run (operators before HTTP "
            "probes, and Ray < 2.53): build your base with wget installed (e.g. `RUN apt-get "
            "install -y wget` on a python:*-slim image) or remove kuberay from this cell's "
            "targets"
        )
    return Check.of(
        f"{name}:kuberay-shell",
        not problems,
        "; ".join(problems) or f"`bash -lc` finds {', '.join(found)}",
        stage="build",
    )
