"""The admission policy: valid against policy-controller's real CRD (v0.15.1, v1beta1) and
its webhook's rules; each required part, broken, is refused."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import crds, policy, signing
from harness.registry import ImagesLock, Pushed

CRD = Path(__file__).resolve().parents[3] / "shared" / "policy-crds"
CRD_FILE = CRD / "policy.sigstore.dev_clusterimagepolicies.yaml"
PEM = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"
REG = "europe-west4-docker.pkg.dev/acme/ray"


def lock() -> ImagesLock:
    def entry(role: str) -> Pushed:
        d = "sha256:" + "a" * 64
        return Pushed("c", "2.60.0", "3.11.2", "cpu", role, f"{REG}/ray-{role}:2.60.0-py3.11.2-cpu",
                      d, f"{REG}/ray-{role}@{d}", d)  # fmt: skip

    return ImagesLock(REG, "x", tuple(entry(r) for r in ("head", "worker", "notebook")))


def crd() -> crds.Crd:
    if not CRD_FILE.is_file():
        pytest.skip(f"{CRD_FILE}: policy-controller's CRD (test data beside the checkout)")
    doc = yaml.safe_load(CRD_FILE.read_text())
    version = next(v for v in doc["spec"]["versions"] if v["name"] == "v1beta1")
    return crds.Crd("ClusterImagePolicy", CRD_FILE, version["schema"]["openAPIV3Schema"])


@pytest.mark.crds
@pytest.mark.parametrize("signer", ["key", "keyless"])
def test_the_rendered_policy_is_valid_and_names_every_repository(signer: str) -> None:
    identity = "^https://github.com/acme/ray/"
    obj = (policy.cluster_image_policy(lock(), key_pem=PEM) if signer == "key" else
           policy.cluster_image_policy(lock(), identity=identity))  # fmt: skip
    assert crds.validate(obj, crd()) == []
    assert policy.problems(obj) == []
    assert [i["glob"] for i in obj["spec"]["images"]] == [
        f"{REG}/ray-head*",
        f"{REG}/ray-notebook*",
        f"{REG}/ray-worker*",
    ]
    att = obj["spec"]["authorities"][0]["attestations"][0]
    assert (
        att["predicateType"] == signing.TEST_REPORT and 'status: "passed"' in att["policy"]["data"]
    )


def _break(obj: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    broken = copy.deepcopy(obj)
    *parents, last = path.split(".")
    node: Any = broken
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    if value is None:
        del node[int(last) if last.isdigit() else last]
    else:
        node[last] = value
    return broken


@pytest.mark.crds
@pytest.mark.parametrize(
    ("path", "value", "says"),
    [
        ("spec.images", None, "spec.images"),
        ("spec.images.0.glob", None, "spec.images"),
        ("spec.authorities", None, "spec.authorities: at least one"),
        ("spec.authorities.0.key", None, "exactly one of key, keyless, static"),
        ("spec.authorities.0.key.data", "not a key", "a PEM public key"),
        ("spec.authorities.0.attestations", None, "the test report's is required"),
        ("spec.authorities.0.attestations.0.predicateType", None, "predicateType: required"),
        ("spec.authorities.0.attestations.0.policy.type", "json", "type cue or rego"),
        ("spec.mode", "audit", "spec.mode"),
        ("metadata.name", None, "metadata.name"),
    ],
)
def test_each_required_part_broken_is_refused(path: str, value: object, says: str) -> None:
    obj = _break(policy.cluster_image_policy(lock(), key_pem=PEM), path, value)
    assert any(says in p for p in policy.problems(obj)), policy.problems(obj)


@pytest.mark.crds
def test_the_crd_refuses_what_an_api_server_would() -> None:
    obj = policy.cluster_image_policy(lock(), key_pem=PEM)
    typo = _break(obj, "spec.authorities.0.keys", {"data": PEM})
    assert any("keys" in p for p in crds.validate(typo, crd()))
    wrong = _break(obj, "spec.images", "all")
    assert crds.validate(wrong, crd()) != []
