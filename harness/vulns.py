"""The vulnerability gate: scanner reports on each image, a threshold, and exceptions that
expire.

The scanner runs where its database is reachable (the workflow runs Trivy before push);
the gate reads its JSON report (Trivy's, or Grype's), matched to the image by the image id
the report names, never by tag. A finding at or above `vulnerabilities.fail_on` blocks the
image's cell unless an exception in the committed exceptions file covers it: the same
vulnerability id and package, an image the exception names, and an expiry date not yet
passed. An expired exception, and one that names images of this push but matches no finding
of theirs, fail the gate too, so the file cannot rot into a blanket allow-list.

The exceptions file is the project's own YAML, not OpenVEX: an OpenVEX statement says a
product is not affected, with no date by which someone must look again, and that review-by
date is what a security team accepts an exception for (a CVE in code vendored inside the
Ray wheel is fixed only by a new Ray release).
"""

from __future__ import annotations

import datetime
import fnmatch
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.errors import HarnessError
from harness.files import write_atomic

SEVERITIES = ("unknown", "negligible", "low", "medium", "high", "critical")
FAIL_ON = ("critical", "high", "medium", "low")
EXCEPTION_KEYS = ("id", "package", "images", "reason", "expires")
FILE = "vulnerabilities.json"  # the gate's findings, beside report.json (report.md shows them)


@dataclass(frozen=True)
class Finding:
    id: str  # CVE-2025-1234, GHSA-..., DLA-...
    package: str
    installed: str
    fixed: str  # "" when no fix is known
    severity: str  # one of SEVERITIES

    def at_least(self, threshold: str) -> bool:
        return SEVERITIES.index(self.severity) >= SEVERITIES.index(threshold)


@dataclass(frozen=True)
class Scan:
    image_id: str  # sha256:... (the image's config digest)
    scanner: str  # "trivy 0.58.1", "grype 0.86.0"
    source: str  # the report's file
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class Exception_:
    id: str
    package: str
    images: tuple[str, ...]  # cell globs, each optionally /role: ray2.60.0-*, */notebook
    reason: str
    expires: datetime.date
    where: str  # file:entry, for messages

    def covers(self, image: str, f: Finding) -> bool:
        return self.id == f.id and self.package == f.package and self.names(image)

    def names(self, image: str) -> bool:
        """`image` (cell/role) is one this exception names: a cell glob, or cell/role."""
        return any(fnmatch.fnmatchcase(image, g if "/" in g else g + "/*") for g in self.images)


def _severity(raw: object) -> str:
    s = str(raw or "unknown").lower()
    return s if s in SEVERITIES else "unknown"


def parse_report(path: Path) -> Scan:
    """A Trivy (SchemaVersion 2) or Grype JSON report; HarnessError naming the file."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{path}: not a scanner's JSON report ({exc})") from None
    if not isinstance(doc, dict):
        raise HarnessError(f"{path}: not a scanner's JSON report (not an object)")
    try:
        if "SchemaVersion" in doc:
            return _trivy(doc, path)
        if "matches" in doc and "source" in doc:
            return _grype(doc, path)
    except (KeyError, TypeError, AttributeError) as exc:
        raise HarnessError(f"{path}: a malformed scanner report ({exc!r})") from None
    raise HarnessError(
        f"{path}: neither Trivy's JSON (`trivy image --format json`) nor Grype's (`grype -o json`)"
    )


def _image_id(value: object, path: Path) -> str:
    text = str(value or "")
    if not text.startswith("sha256:") or len(text) != 71:
        raise HarnessError(
            f"{path}: the report names no image id (sha256:...), so it cannot be matched "
            "to a tested image; scan the SBOM `build` made (`trivy sbom build/sbom/CELL/"
            "ROLE.cdx.json`) or the image itself by its id, not a tarball or another SBOM"
        )
    return text


def _trivy(doc: Mapping[str, Any], path: Path) -> Scan:
    findings = []
    for result in doc.get("Results") or []:
        for v in result.get("Vulnerabilities") or []:
            findings.append(
                Finding(
                    str(v["VulnerabilityID"]),
                    str(v["PkgName"]),
                    str(v.get("InstalledVersion", "")),
                    str(v.get("FixedVersion", "")),
                    _severity(v.get("Severity")),
                )
            )
    image = _image_id((doc.get("Metadata") or {}).get("ImageID"), path)
    version = doc.get("Trivy", {}).get("Version", "") if isinstance(doc.get("Trivy"), dict) else ""
    # `trivy sbom` on the image's SBOM: the same document names the image and each package
    read = " (the image's SBOM)" if doc.get("ArtifactType") in ("cyclonedx", "spdx") else ""
    return Scan(
        image, f"trivy {version}{read}".strip(), str(path), tuple(sorted(set(findings), key=_key))
    )


def _grype(doc: Mapping[str, Any], path: Path) -> Scan:
    findings = []
    for m in doc.get("matches") or []:
        v, a = m["vulnerability"], m["artifact"]
        fixed = (v.get("fix") or {}).get("versions") or []
        findings.append(
            Finding(
                str(v["id"]),
                str(a["name"]),
                str(a.get("version", "")),
                ", ".join(map(str, fixed)),
                _severity(v.get("severity")),
            )
        )
    image = _image_id(((doc.get("source") or {}).get("target") or {}).get("imageID"), path)
    version = (doc.get("descriptor") or {}).get("version", "")
    return Scan(
        image, f"grype {version}".strip(), str(path), tuple(sorted(set(findings), key=_key))
    )


def _key(f: Finding) -> tuple[int, str, str]:
    return (-SEVERITIES.index(f.severity), f.id, f.package)


def load_scans(dirs: Iterable[Path]) -> dict[str, Scan]:
    """Every *.json report in `dirs`, by image id; two reports of one image is an error."""
    out: dict[str, Scan] = {}
    for d in dirs:
        if not d.is_dir():
            continue
        for path in sorted(d.glob("*.json")):
            scan = parse_report(path)
            if scan.image_id in out:
                raise HarnessError(
                    f"{path} and {out[scan.image_id].source} both scan {scan.image_id[:19]}: "
                    "keep one report per image"
                )
            out[scan.image_id] = scan
    return out


def load_exceptions(path: Path, today: datetime.date) -> list[Exception_]:
    """The exceptions file; [] when it does not exist. HarnessError (exit 2) naming the
    entry and key for anything malformed."""
    if not path.is_file():
        return []
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{path}: not YAML ({exc})") from None
    if doc is None:
        return []
    if (
        not isinstance(doc, dict)
        or set(doc) != {"exceptions"}
        or not isinstance(doc["exceptions"], list)
    ):
        raise HarnessError(f"{path}: must be a mapping with one key, `exceptions:`, a list")
    out = []
    for i, e in enumerate(doc["exceptions"]):
        where = f"{path}: exceptions[{i}]"
        if not isinstance(e, dict):
            raise HarnessError(f"{where}: must be a mapping of {', '.join(EXCEPTION_KEYS)}")
        unknown = sorted(set(map(str, e)) - set(EXCEPTION_KEYS))
        missing = [k for k in EXCEPTION_KEYS if k not in e]
        if unknown or missing:
            raise HarnessError(
                f"{where}: "
                + "; ".join(
                    ([f"unknown key(s) {', '.join(unknown)}"] if unknown else [])
                    + ([f"missing {', '.join(missing)}"] if missing else [])
                )
                + f" (each entry has {', '.join(EXCEPTION_KEYS)})"
            )
        for key in ("id", "package", "reason"):
            if not isinstance(e[key], str) or not e[key].strip():
                raise HarnessError(f"{where}.{key}: must be a non-empty string")
        images = e["images"]
        if (
            not isinstance(images, list)
            or not images
            or not all(isinstance(g, str) and g for g in images)
        ):
            raise HarnessError(
                f'{where}.images: a list of cell globs, e.g. ["ray2.60.0-*", "*/notebook"]'
            )
        expires = e["expires"]
        if isinstance(expires, str):
            try:
                expires = datetime.date.fromisoformat(expires)
            except ValueError:
                expires = None
        if not isinstance(expires, datetime.date) or isinstance(expires, datetime.datetime):
            raise HarnessError(f"{where}.expires: a date, YYYY-MM-DD")
        if expires > today + datetime.timedelta(days=366):
            raise HarnessError(
                f"{where}.expires: {expires} is more than a year away; an exception is "
                "reviewed at least yearly"
            )
        out.append(Exception_(e["id"], e["package"], tuple(images), e["reason"], expires, where))
    return out


@dataclass
class ImageVerdict:
    image: str  # cell/role
    image_id: str
    scanner: str = ""
    blocking: list[Finding] = field(default_factory=list)
    excepted: list[tuple[Finding, Exception_]] = field(default_factory=list)
    below: int = 0  # findings under the threshold
    problem: str = ""  # no report

    def ok(self) -> bool:
        return not self.blocking and not self.problem


@dataclass
class Verdict:
    fail_on: str
    images: list[ImageVerdict]
    exception_problems: list[str]  # expired or unused

    def refused_cells(self) -> dict[str, str]:
        """Why each cell may not go, by cell id."""
        out: dict[str, list[str]] = {}
        for v in self.images:
            cell = v.image.split("/")[0]
            if v.problem:
                out.setdefault(cell, []).append(f"{v.image}: {v.problem}")
            for f in v.blocking:
                out.setdefault(cell, []).append(
                    f"{v.image}: {f.severity} {f.id} in {f.package} {f.installed}"
                    + (f" (fixed in {f.fixed})" if f.fixed else " (no fix yet)")
                )
        return {c: "; ".join(w[:4]) + (f"; and {len(w) - 4} more" if len(w) > 4 else "")
                for c, w in out.items()}  # fmt: skip


def judge(
    images: Sequence[tuple[str, str]],
    scans: Mapping[str, Scan],
    exceptions: Sequence[Exception_],
    fail_on: str,
    today: datetime.date,
) -> Verdict:
    """`images`: (cell/role, image id) of everything about to be pushed."""
    verdicts = []
    used: set[str] = set()
    expired = {e.where for e in exceptions if e.expires < today}
    for name, image_id in images:
        v = ImageVerdict(name, image_id)
        scan = scans.get(image_id)
        if scan is None:
            v.problem = (
                f"no scanner report of {image_id[:19]} (a Trivy or Grype JSON report naming "
                "that image id, in the scans directory)"
            )
            verdicts.append(v)
            continue
        v.scanner = scan.scanner
        for f in scan.findings:
            if not f.at_least(fail_on):
                v.below += 1
                continue
            match = next((e for e in exceptions if e.covers(name, f)), None)
            if match is None:
                v.blocking.append(f)
            else:
                used.add(match.where)
                if match.where in expired:
                    v.blocking.append(f)
                else:
                    v.excepted.append((f, match))
        verdicts.append(v)
    problems = [
        f"{e.where} ({e.id} in {e.package}) expired on {e.expires}: fix the finding or "
        "renew the exception after review"
        for e in exceptions
        if e.where in expired
    ]
    names = [n for n, _ in images]
    problems += [
        f"{e.where} ({e.id} in {e.package}) matches no finding of the images it names: remove it"
        for e in exceptions
        if e.where not in used and e.where not in expired and any(e.names(n) for n in names)
    ]
    return Verdict(fail_on, verdicts, problems)


def save(build: Path, verdict: Verdict) -> None:
    """The gate's findings for report.md (harness.report reads them back)."""
    doc = {
        "fail_on": verdict.fail_on,
        "exception_problems": verdict.exception_problems,
        "images": [
            {
                "image": v.image,
                "image_id": v.image_id,
                "scanner": v.scanner,
                "problem": v.problem,
                "below_threshold": v.below,
                "blocking": [asdict(f) for f in v.blocking],
                "excepted": [
                    dict(asdict(f), exception=e.where, reason=e.reason, expires=str(e.expires))
                    for f, e in v.excepted
                ],
            }
            for v in verdict.images
        ],
    }
    write_atomic(build / FILE, json.dumps(doc, indent=1) + "\n")


def markdown(build: Path, image_ids: Iterable[str]) -> list[str]:
    """report.md's section on the last gate's findings for these images (a report of
    images built since shows none); [] when there are none."""
    ids = set(image_ids)
    try:
        doc = json.loads((build / FILE).read_text(encoding="utf-8"))
        images = [v for v in doc["images"] if v["image_id"] in ids]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    if not images:
        return []
    lines = [
        "",
        f"## Vulnerabilities at the push gate (fail on {doc.get('fail_on')} and above)",
        "",
        "| Image | Scanner | Blocking | Excepted | Below threshold |",
        "|---|---|---|---|---|",
    ]
    for v in images:
        blocking = "<br>".join(
            f"{f['severity']} {f['id']} {f['package']} {f['installed']}" for f in v["blocking"]
        )
        excepted = "<br>".join(
            f"{f['id']} {f['package']}: {f['reason']} (until {f['expires']})" for f in v["excepted"]
        )
        lines.append(
            f"| {v['image']} | {v['scanner'] or v['problem']} | {blocking or '–'} | "
            f"{excepted or '–'} | {v['below_threshold']} |"
        )
    for p in doc.get("exception_problems") or []:
        lines.append(f"\nException problem: {p}")
    return lines
