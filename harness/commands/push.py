"""`push`: the gate, then every approved cell to the registry, whole or not at all."""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness import diff, registry, report, sbom, signing, vulns
from harness.commands import context
from harness.engine import Engine
from harness.errors import HarnessError
from harness.files import write_atomic
from harness.paths import manifest_file, sbom_file
from harness.progress import log
from harness.results import CellResult


def run(args: argparse.Namespace, run_id: str) -> int:
    ctx = context(args, run_id, check_index=False)
    m, paths, cells = ctx.matrix, ctx.paths, ctx.cells
    target = registry.target(m)
    reports = args.report or [paths.build / "report.json"]
    results, conflicts = registry.load_reports(reports)
    engine = Engine()
    engine.ping()
    approved, refused = registry.gate(engine, m, cells, results, conflicts)
    scan_dirs = [Path(d) for d in args.scans] or [r.parent / "scans" for r in reports]
    approved, refused, verdict = registry.gate_vulnerabilities(
        m, approved, refused, scan_dirs, datetime.date.today()
    )
    if verdict is not None:
        vulns.save(paths.build, verdict)
        for v in verdict.images:
            log(
                f"push: vulnerabilities {v.image}: {v.problem or v.scanner}: "
                f"{len(v.blocking)} blocking, {len(v.excepted)} excepted, {v.below} below "
                f"{verdict.fail_on}"
            )
    elif m.vulnerabilities is None:
        log(f"push: no `vulnerabilities:` in {m.path}: scanner reports are not read")
    for r in refused:
        log(f"push: refused {r}")
    cells_ok = sorted({a.cell.id for a in approved})
    log(f"push: {len(cells_ok)} cell(s) pass the gate, {len({r.cell for r in refused})} refused")
    for cid, note in sorted({(a.cell.id, a.note) for a in approved if a.note}):
        log(f"push: WARNING {cid}: {note} (gpu_e2e: optional in {m.path})")
    if args.dry_run:
        for a in approved:
            log(f"push: would push {a.local_tag} ({a.image_id[:19]}) to {target}")
        return 1 if refused else 0
    sources = _sources(reports) if approved else {}
    signer = signing.signer_from_env()
    attest = None
    if signer is None:
        log(
            f"push: NOT SIGNED: set {signing.KEY_ENV} (a cosign key file or KMS URI) or "
            f"{signing.KEYLESS_ENV}=1 (CI's OIDC) to sign and attest every pushed digest"
        )
    elif approved:
        attest = _attester(signer, results, sources, m.path, run_id, paths.build / "push")
    pushed, failures = registry.push(
        engine,
        target,
        approved,
        paths.build / "push",
        build=paths.build,
        attest=attest,
        compression=m.layer_compression,
    )
    if (pushed or verdict) and (paths.build / "report.json").is_file():
        try:  # with the pull sizes push measured; the push itself is done
            report.rerender(paths.build)
        except HarnessError as exc:
            log(f"push: report.md not rendered again: {exc}")
    lock_path = paths.build / "images.lock.json"
    if pushed:
        before = _previous(lock_path, target)
        registry.write_lock(lock_path, target, pushed)
        log(f"push: {len(pushed)} image(s) recorded in {lock_path}")
        kept = sbom.keep_pushed(paths.build, pushed, sources)
        log(f"push: {kept} SBOM(s) kept by digest in {paths.build / sbom.PUSHED}")
        now = {(p.cell, p.role) for p in pushed}
        if before:  # what this push changed, against the images lock as it was
            was = {k: v for k, v in diff.pushed_images(before.images).items() if k in now}
            d = diff.diff(was, diff.pushed_images(pushed))
            for line in d.lines:
                log(f"push: {line}")
            write_atomic(paths.build / "push-diff.txt", d.text())
        for p in pushed:
            log(f"push: {p.tag} -> {p.digest} (also {p.dated_tag})")
    if failures:
        raise HarnessError("; ".join(failures))
    if refused:
        print("push refused for: " + "; ".join(str(r) for r in refused), file=sys.stderr)
        return 1
    return 0


def _previous(path: Path, target: str) -> registry.ImagesLock | None:
    """The images lock before this push, when it is of the same registry."""
    try:
        old = registry.read_lock(path) if path.is_file() else None
    except HarnessError:
        return None
    return old if old is not None and old.registry == target else None


def _sources(reports: Sequence[Path]) -> dict[str, report.Report]:
    """The report that holds each cell's result: its SBOMs and build manifests lie beside
    it (sbom/, manifests/)."""
    out: dict[str, report.Report] = {}
    for path in reports:
        rep = report.read(path)
        for cid, r in rep.cells.items():
            if r.status not in report.NOT_A_RESULT:
                out[cid] = rep
    return out


def _attester(
    signer: signing.Signer,
    results: Mapping[str, CellResult],
    sources: Mapping[str, report.Report],
    matrix: Path,
    run_id: str,
    work: Path,
) -> registry.Attester:
    """Sign and attest one pushed digest with what the cell's build and test recorded, then
    verify it as a consumer would; HarnessError on anything missing or not verifying."""
    verifier = signing.verifier_for(signer, work)
    matrix_sha = hashlib.sha256(matrix.read_bytes()).hexdigest()
    source_commit = signing.commit()

    def attest(a: registry.Approved, ref: str) -> tuple[str, str, str]:
        cid, role = a.cell.id, a.role
        result, rep = results[cid], sources.get(cid)
        if rep is None:
            raise HarnessError(f"{cid}: no report holds its result")
        where = rep.path.parent
        made = next((c for c in result.build_checks if c.name == f"image:{role}:sbom"), None)
        sbom = sbom_file(where, cid, role)
        if made is None or made.status != "passed" or not sbom.is_file():
            raise HarnessError(f"{cid}/{role}: no SBOM from its build beside {where}")
        if hashlib.sha256(sbom.read_bytes()).hexdigest() != made.data.get("sha256"):
            raise HarnessError(f"{sbom}: not the SBOM its build recorded (sha256 differs)")
        built = manifest_file(where, cid, role)
        try:
            manifest = json.loads(built.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise HarnessError(f"{built}: no build manifest to derive provenance ({exc})") from None
        digest = ref.rsplit("@", 1)[1]
        predicates = signing.write_predicates(
            work / "predicates",
            {
                signing.SBOM: sbom,
                signing.PROVENANCE: signing.provenance(manifest, matrix_sha, run_id, source_commit),
                signing.TEST_REPORT: signing.test_report(
                    result, role, digest, a.image_id, rep.generated
                ),
            },
        )
        signing.sign(signer, ref, predicates)
        problems, _ = signing.verify(verifier, ref)
        if problems:
            raise HarnessError(f"{ref} does not verify: {'; '.join(problems)}")
        log(f"push: {ref}: signed ({signer.describe()}), SBOM, provenance, test report")
        return signer.describe(), *signing.stored(ref)

    return attest
