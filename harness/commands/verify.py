"""`verify [REF...]`: what a consumer runs before using an image. Each REF (a tag or a
digest; default: every image of images.lock.json) must carry a valid signature, SBOM,
provenance and a test report of this very digest in which every required check passed
(harness.signing); an images-lock entry's tag must still name the digest the gate pushed."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness import registry, registry_api, signing
from harness.errors import HarnessError


def run(args: argparse.Namespace, run_id: str) -> int:
    if bool(args.key) == bool(args.certificate_identity):
        raise HarnessError(
            "verify: give --key PUBLIC_KEY, or --certificate-identity (keyless) with "
            "--certificate-oidc-issuer"
        )
    verifier = signing.Verifier(args.key or "", args.certificate_identity or "",
                                args.certificate_oidc_issuer or "")  # fmt: skip
    targets: list[tuple[str, str, list[str]]] = []  # (what was asked, by digest, problems)
    if args.refs:
        for ref in args.refs:
            by_digest, problems = _resolve(ref)
            targets.append((ref, by_digest, problems))
    else:
        lock = registry.read_lock(Path(args.images_lock))
        for e in lock.images:
            targets.append((f"{e.tag} ({e.cell}/{e.role})", e.ref, _tag_problem(e)))
    failed = 0
    for asked, ref, problems in targets:
        report: dict[str, object] = {}
        if ref:
            more, report = signing.verify(verifier, ref)
            problems = problems + more
        if problems:
            failed += 1
            print(f"FAIL {asked}: " + "; ".join(problems))
            continue
        checks = report.get("checks")
        count = len(checks) if isinstance(checks, list) else 0
        print(
            f"ok   {asked} = {ref}: signed; SBOM, provenance; tested {report.get('reported')}: "
            f"{report.get('cell')}/{report.get('role')}, Python {report.get('python')}, "
            f"Ray {report.get('ray')}, {count} checks, every required one passed"
        )
    return 1 if failed else 0


def _split(ref: str) -> tuple[str, str, str]:
    host, _, rest = ref.partition("/")
    if "@" in rest:
        repo, _, digest = rest.partition("@")
        return host, repo, digest
    repo, _, tag = rest.rpartition(":")
    if not repo or not tag or "/" in tag:
        raise HarnessError(f"{ref}: not REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:...")
    return host, repo, tag


def _resolve(ref: str) -> tuple[str, list[str]]:
    """`ref` by digest (a tag is asked of the registry), or "" with the reason."""
    host, repo, reference = _split(ref)
    if reference.startswith("sha256:"):
        return ref, []
    try:
        found = registry_api.Registry(host).manifest(repo, reference)
    except registry_api.RegistryError as exc:
        return "", [f"cannot be read ({exc})"]
    if found is None:
        return "", ["no such tag"]
    return f"{host}/{repo}@{found.digest}", []


def _tag_problem(e: registry.Pushed) -> list[str]:
    """The plain tag must still name the pushed digest: another digest under it was not
    pushed by the gate (or is a newer push this lock does not know)."""
    by_digest, problems = _resolve(e.tag)
    if problems:
        return [f"{e.tag}: {p}" for p in problems]
    if by_digest != e.ref:
        found = by_digest.rsplit("@", 1)[1]
        return [f"{e.tag} names {found[:19]}, not the pushed {e.digest[:19]}"]
    return []
