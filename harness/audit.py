"""Known vulnerabilities in a cell's locked packages (pip-audit against PyPI's data).

A lock counts as audited only when pip-audit found vulnerability data for every package
in it: a package pip-audit skips ("Dependency not found on PyPI and could not be
audited", as behind an index that serves no per-version data) is never a pass. Results
are cached per lock digest for a day, so a no-op build asks nothing. The matrix's `audit:`
policy decides what a finding means: `warn` (default: findings are a warning, an
incomplete audit is `skipped` with the reason), `fail` (pip-audit's --strict semantics:
a finding or an incomplete audit fails the cell) or `off`.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import children
from harness.files import write_atomic
from harness.results import ERROR, FAILED, PASSED, SKIPPED, WARNING, Check

CACHE_SECONDS = 24 * 3600
CACHE_FORMAT = 2  # 2: audited/unaudited counts beside the findings


@dataclass
class Audit:
    """What pip-audit said about one or more locks."""

    packages: int = 0
    findings: list[dict[str, Any]] = field(default_factory=list)
    unaudited: dict[str, str] = field(default_factory=dict)  # "name version" -> why

    def add(self, other: Audit) -> None:
        self.packages += other.packages
        self.findings += [f for f in other.findings if f not in self.findings]
        self.unaudited.update(other.unaudited)


def summarize(doc: Mapping[str, Any]) -> Audit:
    """pip-audit's JSON report (`--format json`) as an Audit."""
    out = Audit()
    for dep in doc.get("dependencies", []):
        out.packages += 1
        name = f"{dep.get('name')} {dep.get('version', '')}".strip()
        if dep.get("skip_reason"):
            out.unaudited[name] = str(dep["skip_reason"])
        elif dep.get("vulns"):
            out.findings.append(
                {
                    "name": dep["name"],
                    "version": dep.get("version"),
                    "ids": [v["id"] for v in dep["vulns"]],
                    "fix_versions": sorted(
                        {f for v in dep["vulns"] for f in v.get("fix_versions", [])}
                    ),
                }
            )
    return out


def run_pip_audit(lock_file: Path, out: Path) -> dict[str, Any]:
    """pip-audit's JSON report for one hash-pinned lock; RuntimeError when it gives none."""
    cmd = [
        sys.executable,
        "-m",
        "pip_audit",
        "--requirement",
        str(lock_file),
        "--no-deps",
        "--disable-pip",
        "--progress-spinner",
        "off",
        "--format",
        "json",
        "--output",
        str(out),
    ]
    try:  # a child an interrupt stops (audits run in the background of a build)
        _, _, err = children.run(cmd, timeout=600)
    except children.Stopped as exc:
        raise RuntimeError(str(exc)) from None
    if not out.is_file():  # exit 1 means "vulnerabilities found" and still writes the file
        raise RuntimeError((err.strip().splitlines() or ["pip-audit gave no output"])[-1])
    try:
        doc: dict[str, Any] = json.loads(out.read_text())
        return doc
    finally:
        out.unlink()


Runner = Callable[[Path, Path], Mapping[str, Any]]

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==\S+", re.MULTILINE)


def locked_packages(lock_file: Path) -> int:
    """How many packages a hash-pinned lock pins (`name==version` at a line's start)."""
    return len(_PIN.findall(lock_file.read_text(encoding="utf-8")))


def audit_lock(lock_file: Path, cache: Path, runner: Runner = run_pip_audit) -> Audit:
    """One lock's audit, from the day's cache when there is one; raises on no answer."""
    digest = hashlib.sha256(lock_file.read_bytes()).hexdigest()
    cached = cache / f"{digest}.v{CACHE_FORMAT}.json"
    if cached.is_file() and time.time() - cached.stat().st_mtime < CACHE_SECONDS:
        try:
            return Audit(**json.loads(cached.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            pass  # not a cached audit (cut short, or another version's): audited again
    cache.mkdir(parents=True, exist_ok=True)
    result = summarize(runner(lock_file, cache / f"{digest}.partial"))
    write_atomic(cached, json.dumps(asdict(result)))
    return result


def check(locks: list[Path], cache: Path, policy: str, runner: Runner = run_pip_audit) -> Check:
    """One `audit:locks` check over a cell's lock files."""
    if policy == "off":
        return Check("audit:locks", SKIPPED, "audit: off in the matrix", "build")
    strict = policy == "fail"
    total = Audit()
    try:
        for lock_file in locks:
            total.add(audit_lock(lock_file, cache, runner))
    except (RuntimeError, OSError, ValueError, TypeError, subprocess.TimeoutExpired) as exc:
        why = f"pip-audit could not run: {exc}"
        if strict:
            why += "; audit: fail needs a complete audit"
        return Check("audit:locks", FAILED if strict else SKIPPED, why, "build")
    locked = sum(locked_packages(lock_file) for lock_file in locks)
    if total.packages != locked or not locked:
        # pip-audit's count is the evidence: one that is not the lock's proves nothing
        return Check(
            "audit:locks",
            ERROR,
            f"pip-audit reported {total.packages} package(s), the lock(s) pin {locked}: "
            "the audit does not cover the lock"
            + ("" if locked else " (no locked package: nothing was audited)"),
            "build",
            {"policy": policy, "packages": total.packages, "locked": locked},
        )
    data: dict[str, Any] = {
        "policy": policy,
        "locked": locked,
        "packages": total.packages,
        "audited": total.packages - len(total.unaudited),
        "findings": total.findings,
        "unaudited": dict(list(total.unaudited.items())[:50]),
    }
    parts: list[str] = []
    if total.findings:
        parts.append(
            f"{len(total.findings)} vulnerable package(s): "
            + "; ".join(
                f"{f['name']} {f['version']}: {', '.join(f['ids'])}"
                + (f" (fixed in {', '.join(f['fix_versions'])})" if f["fix_versions"] else "")
                for f in total.findings
            )
        )
    if total.unaudited:
        reasons = sorted({why.split(":")[0] for why in total.unaudited.values()})
        parts.append(
            f"{len(total.unaudited)} of {total.packages} package(s) could not be audited "
            f"({'; '.join(reasons)[:300]}), e.g. {', '.join(list(total.unaudited)[:3])}"
        )
    if not parts:
        detail = (
            f"pip-audit: all {total.packages} locked packages audited, no known vulnerabilities"
        )
        return Check("audit:locks", PASSED, detail, "build", data)
    if strict:
        status = FAILED
        parts.append("audit: fail requires every package audited and none vulnerable")
    else:
        status = WARNING if total.findings else SKIPPED
    return Check("audit:locks", status, "; ".join(parts), "build", data)
