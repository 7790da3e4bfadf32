"""The admission policy: a Sigstore policy-controller `ClusterImagePolicy` that admits the
pushed images' repositories only with a valid signature and a test report attestation of
this project's type whose predicate says `passed`.

Rendered by `manifests` (with `--policy-key` or `--policy-identity`) from images.lock.json:
one `images` glob per pushed repository, one authority (the push's public key, or the CI's
keyless identity), and a CUE policy on the test report attestation. `problems()` holds it to
what policy-controller's admission webhook requires beyond its CRD's schema (which makes
almost nothing required); the tests also validate it against that CRD (v0.15.1), as an
API server would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.registry import ImagesLock
from harness.signing import TEST_REPORT

API_VERSION = "policy.sigstore.dev/v1beta1"
NAME = "raycompat-tested"
FULCIO = "https://fulcio.sigstore.dev"
REKOR = "https://rekor.sigstore.dev"
# CUE, evaluated by policy-controller on the attestation's in-toto statement
PASSED = f'predicateType: "{TEST_REPORT}"\npredicate: status: "passed"\n'


def cluster_image_policy(
    lock: ImagesLock,
    key_pem: str = "",
    identity: str = "",
    issuer: str = "https://token.actions.githubusercontent.com",
) -> dict[str, Any]:
    """The policy for every repository of the images lock; a key's PEM, or a keyless
    identity (a regexp of the signing workflow) with its issuer."""
    if bool(key_pem) == bool(identity):
        raise ValueError("a public key or a keyless identity, one of them")
    repos: Sequence[str] = sorted({e.tag.rpartition(":")[0] for e in lock.images})
    authority: dict[str, Any] = {"name": "raycompat-push"}
    if key_pem:
        authority["key"] = {"data": key_pem, "hashAlgorithm": "sha256"}
    else:
        authority["keyless"] = {
            "url": FULCIO,
            "identities": [{"issuer": issuer, "subjectRegExp": identity}],
        }
        authority["ctlog"] = {"url": REKOR}
    authority["attestations"] = [
        {
            "name": "test-report-passed",
            "predicateType": TEST_REPORT,
            "policy": {"type": "cue", "data": PASSED},
        }
    ]
    return {
        "apiVersion": API_VERSION,
        "kind": "ClusterImagePolicy",
        "metadata": {"name": NAME},
        "spec": {
            "images": [{"glob": f"{repo}*"} for repo in repos],
            "authorities": [authority],
            "mode": "enforce",
        },
    }


def problems(obj: dict[str, Any]) -> list[str]:
    """What policy-controller's webhook would refuse in a ClusterImagePolicy (its
    validation rules for the fields this harness renders); [] when nothing."""
    out: list[str] = []
    if obj.get("apiVersion") != API_VERSION or obj.get("kind") != "ClusterImagePolicy":
        out.append(f"not a {API_VERSION} ClusterImagePolicy")
    if not (obj.get("metadata") or {}).get("name"):
        out.append("metadata.name: required")
    spec = obj.get("spec") or {}
    images = spec.get("images") or []
    if not images or not all(isinstance(i, dict) and i.get("glob") for i in images):
        out.append("spec.images: at least one, each with a glob")
    if spec.get("mode", "enforce") not in ("enforce", "warn"):
        out.append("spec.mode: enforce or warn")
    authorities = spec.get("authorities") or []
    if not authorities:
        out.append("spec.authorities: at least one")
    for i, a in enumerate(authorities):
        where = f"spec.authorities[{i}]"
        kinds = [k for k in ("key", "keyless", "static") if a.get(k)]
        if len(kinds) != 1:
            out.append(f"{where}: exactly one of key, keyless, static (has {kinds or 'none'})")
        key = a.get("key") or {}
        if "key" in kinds and not (key.get("data") or key.get("kms") or key.get("secretRef")):
            out.append(f"{where}.key: data, kms or secretRef")
        if "key" in kinds and key.get("data") and "BEGIN PUBLIC KEY" not in key["data"]:
            out.append(f"{where}.key.data: a PEM public key")
        keyless = a.get("keyless") or {}
        if "keyless" in kinds and not keyless.get("identities"):
            out.append(f"{where}.keyless.identities: at least one (issuer and subject)")
        for j, att in enumerate(a.get("attestations") or []):
            for field in ("name", "predicateType"):
                if not att.get(field):
                    out.append(f"{where}.attestations[{j}].{field}: required")
            pol = att.get("policy") or {}
            if pol and (pol.get("type") not in ("cue", "rego") or not pol.get("data")):
                out.append(f"{where}.attestations[{j}].policy: type cue or rego, with data")
        if not a.get("attestations"):
            out.append(f"{where}.attestations: the test report's is required here")
    return out
