"""A CycloneDX SBOM per image, made at build time from what the image holds.

The structure probe reads the image itself: its Debian packages (dpkg: name, version,
architecture, the licences its DEP-5 copyright file names) and its Python distributions
(name, version, declared licence). The SBOM
lists each as a component with its package URL (`pkg:deb/debian/...`, `pkg:pypi/...`),
the interpreter as `cpython` at the image's micro, and the image as the BOM's subject with
the cell, role, Ray version and Python micro as properties. It is written with
cyclonedx-python-lib (CycloneDX 1.6 JSON) and validated against the CycloneDX schema.

Deterministic: the same image gives the same bytes. The timestamp is SOURCE_DATE_EPOCH,
the serial number a UUID derived from the image id, every ref is a package URL or the
image id, and components are sorted.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import uuid
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.files import write_atomic
from harness.matrix import Cell
from harness.paths import sbom_file
from harness.results import FAILED, PASSED, Check

if TYPE_CHECKING:
    from harness.registry import ImagesLock, Pushed
    from harness.report import Report

FORMAT = "CycloneDX 1.6"
PUSHED = "pushed-sboms"  # beside images.lock.json: each pushed digest's SBOM, by digest
NAMESPACE = uuid.UUID("7d3f4b8e-5a52-4c1e-9c3a-6f0e2b1d9a11")  # this project's SBOM serials


def _normalize(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def document(
    cell: Cell, role: str, image_id: str, tag: str, facts: Mapping[str, object], epoch: int
) -> str:
    """The image's SBOM as CycloneDX JSON text; ValueError when the facts lack a package
    list (no SBOM is better than an empty one)."""
    # imported here: every command imports this module, few make an SBOM (~0.3 s of imports)
    try:  # its home since 11.x; the old path is deprecated
        from cyclonedx.contrib.license.factories import LicenseFactory
    except ImportError:  # pragma: no cover - older cyclonedx-python-lib
        from cyclonedx.factory.license import LicenseFactory
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.license import DisjunctiveLicense
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    dpkg = facts.get("dpkg")
    arch = facts.get("dpkg_arch")
    freeze = facts.get("pip_freeze")
    licences = facts.get("python_licenses") or {}
    if not isinstance(dpkg, dict) or "error" in dpkg or not isinstance(arch, dict):
        raise ValueError(f"no Debian package list was read from the image ({dpkg!r:.200})")
    if not isinstance(freeze, list) or not freeze or not isinstance(licences, dict):
        raise ValueError("no Python distribution list was read from the image")
    repo, _, version = tag.rpartition(":")
    root = Component(
        name=repo,
        version=version,
        type=ComponentType.CONTAINER,
        bom_ref=image_id,
        properties=[
            Property(name="raycompat:cell", value=cell.id),
            Property(name="raycompat:role", value=role),
            Property(name="raycompat:python", value=cell.python),
            Property(name="raycompat:ray", value=cell.ray),
            Property(name="raycompat:image-id", value=image_id),
            # Trivy reads this back as the scan's Metadata.ImageID (`trivy sbom`): the
            # vulnerability gate then matches a report of this SBOM to its image
            Property(name="aquasecurity:trivy:ImageID", value=image_id),
        ],
    )
    bom = Bom(serial_number=uuid.uuid5(NAMESPACE, image_id))
    bom.metadata.timestamp = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    bom.metadata.component = root
    factory = LicenseFactory()
    python = str(facts.get("python") or cell.python)
    components = [
        Component(
            name="cpython",
            version=python,
            type=ComponentType.APPLICATION,
            purl=PackageURL("generic", name="cpython", version=python),
            bom_ref=f"pkg:generic/cpython@{python}",
        )
    ]

    def package(
        name: str, ver: str, purl: PackageURL, licenses: list[Any], props: Sequence[Any] = ()
    ) -> Component:
        made = Component(
            name=name,
            version=ver,
            purl=purl,
            bom_ref=purl.to_string(),
            licenses=licenses,
            properties=props,
        )
        components.append(made)
        return made

    debian_licences = facts.get("dpkg_licenses") or {}
    sources = facts.get("dpkg_source") or {}
    os_facts = facts.get("os") or {}
    assert isinstance(debian_licences, dict) and isinstance(sources, dict)
    assert isinstance(os_facts, dict)
    os_id, os_version = str(os_facts.get("id") or "debian"), str(os_facts.get("version") or "")
    system = Component(
        name=os_id,
        version=os_version,
        type=ComponentType.OPERATING_SYSTEM,
        bom_ref=f"os:{os_id}@{os_version}",
    )
    debs: list[Component] = []
    for name, ver in sorted(dpkg.items()):
        src, src_ver = (sources.get(name) or [name, ver])[:2]
        qualifiers = {"arch": arch[name], "distro": f"{os_id}-{os_version}"}
        if src != name or src_ver != ver:  # syft's convention: upstream=NAME[@VERSION]
            qualifiers["upstream"] = src if src_ver == ver else f"{src}@{src_ver}"
        purl = PackageURL("deb", namespace="debian", name=name, version=ver, qualifiers=qualifiers)
        licence = debian_licences.get(name)  # DEP-5 short names: a named licence
        debs.append(package(
            name, ver, purl, [DisjunctiveLicense(name=str(licence))] if licence else [],
            _trivy_source(str(src), str(src_ver)),
        ))  # fmt: skip
    for line in sorted(freeze):
        name, _, ver = str(line).partition("==")
        purl = PackageURL("pypi", name=_normalize(name), version=ver)
        licence = licences.get(name)
        package(name, ver, purl, [factory.make_from_string(str(licence))] if licence else [])
    for c in [system, *components]:
        bom.components.add(c)
    # the image holds the system and the Python side; the system holds the Debian packages
    # (Trivy takes the OS component's dependencies as its OS packages)
    bom.register_dependency(root, [system, *(c for c in components if c not in debs)])
    bom.register_dependency(system, debs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the library's note on incomplete graphs
        text: str = JsonV1Dot6(bom).output_as_string(indent=1)
    return text + "\n"


def _trivy_source(name: str, version: str) -> list[Any]:
    """The source package as Trivy's properties, its version split as Trivy keeps it
    (epoch, upstream, Debian revision): Trivy matches Debian advisories by source package
    and, without these, would take each binary package for its own source."""
    from cyclonedx.model import Property

    epoch, _, rest = version.rpartition(":") if ":" in version else ("", "", version)
    upstream, dash, release = rest.rpartition("-")
    if not dash:
        upstream, release = rest, ""
    props = [Property(name="aquasecurity:trivy:SrcName", value=name)]
    props.append(Property(name="aquasecurity:trivy:SrcVersion", value=upstream))
    if release:
        props.append(Property(name="aquasecurity:trivy:SrcRelease", value=release))
    if epoch and epoch != "0":
        props.append(Property(name="aquasecurity:trivy:SrcEpoch", value=epoch))
    return props


def validate(text: str) -> str | None:
    """Why `text` is not a valid CycloneDX 1.6 JSON document, or None."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    return None if error is None else str(error)[:500]


def check(
    path: Path,
    cell: Cell,
    role: str,
    image_id: str,
    tag: str,
    facts: Mapping[str, object],
    epoch: int,
) -> Check:
    """`image:<role>:sbom`: write the image's SBOM to `path`, valid, or fail saying why."""
    name = f"image:{role}:sbom"
    try:
        text = document(cell, role, image_id, tag, facts, epoch)
    except ValueError as exc:
        return Check(name, FAILED, f"no SBOM: {exc}", "build")
    problem = validate(text)
    if problem:
        return Check(name, FAILED, f"{FORMAT} schema: {problem}", "build")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text)
    digest = hashlib.sha256(text.encode()).hexdigest()
    dpkg, freeze = facts.get("dpkg"), facts.get("pip_freeze")
    assert isinstance(dpkg, dict) and isinstance(freeze, list)  # document() checked them
    detail = (
        f"{FORMAT}, valid: cpython {cell.python}, {len(dpkg)} Debian and {len(freeze)} Python "
        f"packages (Ray {cell.ray}); sha256 {digest[:16]}"
    )
    data = {"path": str(path), "sha256": digest, "format": FORMAT}
    return Check(name, PASSED, detail, "build", data)


def rebuild_differences(original: str, rebuild: str) -> list[str]:
    """How a rebuild's SBOM differs from the original image's, once the rebuild's own
    identity (its image id, serial number and repository: a rebuild runs under a scratch
    prefix and label) is renamed to the original's; [] when the bytes are then identical."""
    import difflib

    def identity(text: str) -> tuple[str, str, str]:
        doc = json.loads(text)
        root = doc["metadata"]["component"]
        return str(root["bom-ref"]), str(doc["serialNumber"]), f'"{root["name"]}"'

    try:
        names = list(zip(identity(rebuild), identity(original), strict=True))
    except (ValueError, KeyError, TypeError) as exc:  # empty, truncated, not ours
        return [f"not an SBOM this harness writes: {exc!r:.200}"]
    renamed = rebuild
    for theirs, ours in names:
        renamed = renamed.replace(theirs, ours)
    if renamed == original:
        return []
    lines = difflib.unified_diff(original.splitlines(), renamed.splitlines(), lineterm="", n=0)
    return [line for line in lines if line[:1] in "+-" and line[:3] not in ("---", "+++")]


def pushed_path(build: Path, digest: str) -> Path:
    return build / PUSHED / f"{digest.replace(':', '-')}.cdx.json"


def keep_pushed(build: Path, pushed: Sequence[Pushed], sources: Mapping[str, Report]) -> int:
    """Copy each pushed image's SBOM (from beside the report that holds its cell) under its
    digest, for `sbom query`; how many were kept. A multi-arch tag's digest keeps the SBOM
    of its native image."""
    kept = 0
    for p in pushed:
        rep = sources.get(p.cell)
        if rep is None:
            continue
        made = sbom_file(rep.path.parent, p.cell, p.role)
        if made.is_file():
            target = pushed_path(build, p.digest)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, made.read_text(encoding="utf-8"))
            kept += 1
    return kept


def pushed_components(build: Path, digest: str) -> list[dict[str, Any]] | None:
    """The components of the SBOM `push` kept for `digest`; None when none was kept (or
    what is there is not JSON)."""
    try:
        doc = json.loads(pushed_path(build, digest).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    found = doc.get("components") if isinstance(doc, dict) else None
    return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def query(build: Path, lock: ImagesLock, name: str) -> tuple[list[str], list[str]]:
    """Which pushed images (current and earlier digests) hold a package named `name`
    (Python or Debian; case and -/_/. ignored), from the SBOMs kept by digest: one line
    each; and the images with no SBOM kept, which were not searched."""
    want = _normalize(name)
    found: list[str] = []
    unsearched: list[str] = []
    for e in [*lock.images, *lock.history]:
        components = pushed_components(build, e.digest)
        if components is None:
            unsearched.append(f"{e.tag} ({e.digest[:19]})")
            continue
        for c in components:
            if _normalize(str(c.get("name", ""))) == want:
                purl = str(c.get("purl", ""))
                kind = purl.split("/")[0].removeprefix("pkg:") if purl else str(c.get("type"))
                when = "now" if e in lock.images else f"earlier, {e.dated_tag or e.digest[:19]}"
                found.append(
                    f"{e.cell}/{e.role} {e.ref} ({when}): {c.get('name')} {c.get('version')} "
                    f"[{kind}]"
                )
    return found, unsearched
