"""Signatures and attestations on pushed digests, with cosign, and their verification.

On push, each image is signed by digest (never by tag) and gets three attestations, in-toto
statements cosign stores beside it in the registry, the kinds the usual verifiers read:

- its SBOM (`cyclonedx`), the one `build` made from the image (harness.sbom);
- SLSA v1 provenance (`slsaprovenance1`): the build's inputs (matrix and lock digests, base,
  Dockerfile, SOURCE_DATE_EPOCH, build key), the builder and the commit;
- this project's test report (TEST_REPORT): the cell, the image's digest and id, the
  cell's verdict and each check's name, status and detail, the harness version.

Keys: a key file or KMS URI (`RAYCOMPAT_COSIGN_KEY`; cosign reads COSIGN_PASSWORD), with no
transparency log (offline, as here); or keyless (`RAYCOMPAT_COSIGN_KEYLESS=1`), with the
CI's OIDC token and Sigstore's public log, as the workflow signs. `verify` checks the
signature and each attestation against a public key (or a keyless identity), and that the
test report is of this very digest and says it passed.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import __version__, children
from harness.errors import HarnessError
from harness.results import NATIVE_PLATFORM, REQUIRED_CHECKS, WAIVED_WHEN_EMULATED, CellResult

TEST_REPORT = "https://raycompat.dev/test-report/v1"
SBOM = "cyclonedx"
PROVENANCE = "slsaprovenance1"
TYPES = {SBOM: "https://cyclonedx.org/bom", PROVENANCE: "https://slsa.dev/provenance/v1"}
BUILD_TYPE = "https://raycompat.dev/build/v1"
KEY_ENV = "RAYCOMPAT_COSIGN_KEY"
KEYLESS_ENV = "RAYCOMPAT_COSIGN_KEYLESS"


@dataclass(frozen=True)
class Signer:
    key: str  # a key file or a KMS URI; "" when keyless
    keyless: bool = False

    def describe(self) -> str:
        return "keyless (OIDC)" if self.keyless else f"key {self.key}"


def signer_from_env(env: Mapping[str, str] = os.environ) -> Signer | None:
    """The signer the environment names, or None (the push is then not signed)."""
    key = env.get(KEY_ENV, "")
    keyless = env.get(KEYLESS_ENV, "") == "1"
    if key and keyless:
        raise HarnessError(f"{KEY_ENV} and {KEYLESS_ENV}=1 both set: sign one way")
    if key and "://" not in key and not Path(key).is_file():
        raise HarnessError(f"{KEY_ENV}={key}: no such key file (or give a KMS URI)")
    if not (key or keyless):
        return None
    return Signer(key, keyless)


def _cosign(args: Sequence[str], what: str, timeout: float = 300) -> tuple[int, str, str]:
    if shutil.which("cosign") is None:
        raise HarnessError("cosign not found: run `scripts/setup-engine.sh` (installs it)")
    return children.bounded(["cosign", *args], timeout=timeout, what=what)


def _registry_flags(ref: str) -> list[str]:
    host = ref.split("/", 1)[0]
    loopback = host.startswith(("127.", "localhost", "[::1]"))
    return ["--allow-http-registry"] if loopback else []


def sign(signer: Signer, ref: str, predicates: Mapping[str, Path]) -> None:
    """Sign `ref` (REPO@sha256:...) and attest each predicate file by its type."""
    if "@sha256:" not in ref:
        raise HarnessError(f"{ref}: signing is by digest, never by tag")
    common = ["--yes", *_registry_flags(ref)]
    common += [] if signer.keyless else ["--key", signer.key, "--tlog-upload=false"]
    rc, _, err = _cosign(["sign", *common, ref], f"cosign sign {ref}")
    if rc != 0:
        raise HarnessError(f"cosign sign {ref} failed: {err.strip()[-400:]}")
    for kind, path in predicates.items():
        args = ["attest", *common, "--type", kind, "--predicate", str(path), ref]
        rc, _, err = _cosign(args, f"cosign attest --type {kind} {ref}")
        if rc != 0:
            raise HarnessError(f"cosign attest --type {kind} {ref} failed: {err.strip()[-400:]}")


@dataclass(frozen=True)
class Verifier:
    key: str = ""  # a public key file or KMS URI
    identity: str = ""  # keyless: the certificate identity (regexp) and its issuer
    issuer: str = ""

    def flags(self) -> list[str]:
        if self.key:
            return ["--key", self.key, "--insecure-ignore-tlog=true"]
        return ["--certificate-identity-regexp", self.identity, "--certificate-oidc-issuer",
                self.issuer]  # fmt: skip


def verifier_for(signer: Signer, work: Path) -> Verifier:
    """How the push verifies what it signed: the key's public half, or the CI's identity."""
    if signer.keyless:
        repo = os.environ.get("GITHUB_REPOSITORY", "")
        if not repo:
            raise HarnessError(f"{KEYLESS_ENV}=1 outside GitHub Actions: no identity to verify")
        return Verifier(
            identity=f"^https://github.com/{repo}/",
            issuer="https://token.actions.githubusercontent.com",
        )
    rc, out, err = _cosign(["public-key", "--key", signer.key], "cosign public-key")
    if rc != 0:
        raise HarnessError(f"cosign public-key --key {signer.key}: {_said(err)}")
    work.mkdir(parents=True, exist_ok=True)
    pub = work / "cosign.pub"
    pub.write_text(out, encoding="utf-8")
    return Verifier(key=str(pub))


def _statements(out: str) -> list[dict[str, Any]]:
    found = []
    for line in out.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            env = json.loads(line)
            found.append(json.loads(base64.b64decode(env["payload"])))
        except (ValueError, KeyError, TypeError):
            continue
    return found


def verify(verifier: Verifier, ref: str) -> tuple[list[str], dict[str, Any]]:
    """Problems with `ref`'s signature and attestations ([] when all hold), and the test
    report predicate when one verified."""
    digest = ref.rsplit("@", 1)[-1]
    flags = [*verifier.flags(), *_registry_flags(ref)]
    problems: list[str] = []
    rc, _, err = _cosign(["verify", *flags, ref], f"cosign verify {ref}")
    if rc != 0:
        problems.append(f"signature: {_said(err)}")
    report: dict[str, Any] = {}
    for kind in (SBOM, PROVENANCE, TEST_REPORT):
        rc, out, err = _cosign(
            ["verify-attestation", *flags, "--type", kind, ref], f"cosign verify-attestation {ref}"
        )
        if rc != 0:
            problems.append(f"{kind} attestation: {_said(err)}")
            continue
        statements = [
            s for s in _statements(out) if s.get("predicateType") == TYPES.get(kind, kind)
        ]
        subjects = {
            "sha256:" + str(sub.get("digest", {}).get("sha256"))
            for s in statements
            for sub in s.get("subject", [])
        }
        if not statements or subjects != {digest}:
            problems.append(f"{kind} attestation: not of {digest} (subjects {sorted(subjects)})")
            continue
        if kind == TEST_REPORT:
            mine = [s["predicate"] for s in statements if s["predicate"].get("digest") == digest]
            if not mine:
                problems.append(f"test report: of another digest, not {digest}")
            elif any(p.get("status") != "passed" for p in mine):
                problems.append(f"test report: status {mine[0].get('status')!r}, not passed")
            elif unproven(mine[0]):
                problems.append(f"test report: not proven: {', '.join(unproven(mine[0]))}")
            else:
                report = mine[0]
    return problems, report


def stored(ref: str) -> tuple[str, str]:
    """The digests of the signature and attestation manifests cosign stored for `ref`, as
    the registry serves them ("" for one it does not)."""
    from harness import registry_api

    host, _, rest = ref.partition("/")
    repo, _, digest = rest.partition("@")
    api = registry_api.Registry(host)
    out = []
    for suffix in ("sig", "att"):
        found = api.manifest(repo, f"{digest.replace(':', '-')}.{suffix}")
        out.append(found.digest if found is not None else "")
    return out[0], out[1]


def _said(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if "error" in ln.lower()] or err.splitlines()
    return (lines[-1] if lines else "cosign gave no reason").strip()[:300]


def commit() -> str:
    """The source commit: GITHUB_SHA in the workflow, else the checkout's HEAD, else ""."""
    if os.environ.get("GITHUB_SHA"):
        return os.environ["GITHUB_SHA"]
    try:
        rc, out, _ = children.bounded(
            ["git", "rev-parse", "HEAD"], timeout=30, what="git rev-parse HEAD"
        )
    except (OSError, HarnessError):
        return ""
    return out.strip() if rc == 0 else ""


def provenance(
    manifest: Mapping[str, Any], matrix_sha256: str, run_id: str, source_commit: str
) -> dict[str, Any]:
    """SLSA v1 provenance predicate from the image's build manifest (build/manifests/)."""
    inputs = manifest.get("inputs") or {}
    deps = [
        {"name": f"locks/{name}", "digest": {"sha256": sha}}
        for name, sha in sorted((inputs.get("locks") or {}).items())
    ]
    base = inputs.get("base") or {}
    if base.get("id"):
        base_sha = str(base["id"]).removeprefix("sha256:")
        deps.append({"name": f"base {base.get('ref', '')}", "digest": {"sha256": base_sha}})
    if inputs.get("dockerfile_sha256"):
        deps.append({"name": "images/", "digest": {"sha256": inputs["dockerfile_sha256"]}})
    if source_commit:
        deps.append({"uri": "git+source", "digest": {"gitCommit": source_commit}})
    builder = os.environ.get("GITHUB_SERVER_URL", "") and (
        f"{os.environ['GITHUB_SERVER_URL']}/{os.environ.get('GITHUB_REPOSITORY', '')}"
        f"/.github/workflows/ci.yml"
    )
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "matrix_sha256": matrix_sha256,
                "image": (manifest.get("image") or {}).get("tag", ""),
            },
            "internalParameters": {
                "build_args": inputs.get("build_args") or {},
                "build_key": inputs.get("build_key", ""),
                "lock_sha256": inputs.get("lock_sha256", ""),
            },
            "resolvedDependencies": deps,
        },
        "runDetails": {
            "builder": {"id": builder or f"ray-image-harness {__version__}"},
            "metadata": {"invocationId": run_id},
        },
    }


def test_report(
    result: CellResult, role: str, digest: str, image_id: str, when: str
) -> dict[str, Any]:
    """This project's predicate: what was proven on the image pushed as `digest`."""
    return {
        "cell": result.id,
        "role": role,
        "digest": digest,
        "image_id": image_id,
        "python": result.python,
        "ray": result.ray,
        "platform": result.platform,
        "status": str(result.status),
        "reported": when,
        "harness": __version__,
        "checks": [
            {"name": c.name, "status": str(c.status), "detail": c.detail} for c in result.checks
        ],
    }


def unproven(predicate: Mapping[str, Any]) -> list[str]:
    """The required checks (harness.results) a test report predicate does not show passed;
    under emulation a waived check's stand-in counts for it."""
    passed = {c.get("name") for c in predicate.get("checks") or [] if c.get("status") == "passed"}
    emulated = predicate.get("platform") != NATIVE_PLATFORM
    return [
        name
        for name in REQUIRED_CHECKS
        if name not in passed and not (emulated and WAIVED_WHEN_EMULATED.get(name) in passed)
    ]


def write_predicates(
    work: Path, predicates: Mapping[str, dict[str, Any] | Path]
) -> dict[str, Path]:
    """Each predicate as a file cosign reads (a Path is used as it is)."""
    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for kind, value in predicates.items():
        if isinstance(value, Path):
            out[kind] = value
            continue
        fd, name = tempfile.mkstemp(prefix="predicate-", suffix=".json", dir=work)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(value, f, sort_keys=True)
        out[kind] = Path(name)
    return out
