"""Known vulnerabilities in a cell's locked packages (pip-audit against PyPI's data).

Results are cached per lock digest for a day, so a no-op build asks nothing. The matrix's
`audit:` policy decides what a finding means: `warn` (default, reported as a warning),
`fail` (the cell fails) or `off`.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.results import FAILED, PASSED, SKIPPED, Check

WARNING = "warning"
CACHE_SECONDS = 24 * 3600


def audit_lock(lock_file: Path, cache: Path) -> list[dict[str, Any]]:
    """Findings for one lock: [{name, version, ids, fix_versions}]; raises on no answer."""
    digest = hashlib.sha256(lock_file.read_bytes()).hexdigest()
    cached = cache / f"{digest}.json"
    if cached.is_file() and time.time() - cached.stat().st_mtime < CACHE_SECONDS:
        findings: list[dict[str, Any]] = json.loads(cached.read_text())
        return findings
    out = cache / f"{digest}.partial"
    cache.mkdir(parents=True, exist_ok=True)
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
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if not out.is_file():  # exit 1 means "vulnerabilities found" and still writes the file
        raise RuntimeError((proc.stderr.strip().splitlines() or ["pip-audit gave no output"])[-1])
    doc = json.loads(out.read_text())
    findings = [
        {
            "name": dep["name"],
            "version": dep.get("version"),
            "ids": [v["id"] for v in dep.get("vulns", [])],
            "fix_versions": sorted(
                {f for v in dep.get("vulns", []) for f in v.get("fix_versions", [])}
            ),
        }
        for dep in doc.get("dependencies", [])
        if dep.get("vulns")
    ]
    cached.write_text(json.dumps(findings))
    out.unlink()
    return findings


def check(locks: list[Path], cache: Path, policy: str) -> Check:
    """One `audit:locks` check over a cell's lock files."""
    if policy == "off":
        return Check("audit:locks", SKIPPED, "audit: off in the matrix", "build")
    findings: list[dict[str, Any]] = []
    try:
        for lock_file in locks:
            for f in audit_lock(lock_file, cache):
                if f not in findings:
                    findings.append(f)
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
        return Check("audit:locks", SKIPPED, f"pip-audit could not run: {exc}", "build")
    if not findings:
        return Check("audit:locks", PASSED, "pip-audit: no known vulnerabilities", "build")
    listed = "; ".join(
        f"{f['name']} {f['version']}: {', '.join(f['ids'])}"
        + (f" (fixed in {', '.join(f['fix_versions'])})" if f["fix_versions"] else "")
        for f in findings
    )
    status = FAILED if policy == "fail" else WARNING
    return Check(
        "audit:locks",
        status,
        f"{len(findings)} vulnerable package(s): {listed}",
        "build",
        {"findings": findings, "policy": policy},
    )
