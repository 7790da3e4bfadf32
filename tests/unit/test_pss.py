"""The restricted Pod Security Standard, offline: every manifest the harness renders
passes, and a manifest that breaks each rule is refused with that rule named."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from harness import k8s, pss
from tests.unit.test_k8s import CELL, IMAGES

Spec = dict[str, Any]


def rendered() -> list[k8s.Manifest]:
    return [
        k8s.raycluster(CELL, IMAGES),
        k8s.rayjob(CELL, IMAGES),
        *k8s.rayservice(CELL, IMAGES),
        *k8s.plain(CELL, IMAGES),
        k8s.notebook_pod(CELL, IMAGES["notebook"]),
    ]


def test_every_rendered_pod_spec_meets_the_restricted_profile() -> None:
    specs = [(m["kind"], s) for m in rendered() for _, s in k8s.pod_specs(m)]
    # RayCluster, RayJob (with its submitter) and RayService: head and worker group each;
    # two Deployments, the notebook Pod
    assert len(specs) == 2 + 3 + 2 + 2 + 1
    for kind, spec in specs:
        assert pss.restricted(spec, kind) == []
    assert all(k8s.validate(m) == [] for m in rendered())


def first(spec: Spec) -> Spec:
    container: Spec = spec["containers"][0]
    return container


BREAKS: list[tuple[str, Callable[[Spec], None], str]] = [
    ("host network", lambda s: s.update(hostNetwork=True), "hostNetwork must not be true"),
    ("host pid", lambda s: s.update(hostPID=True), "hostPID must not be true"),
    (
        "hostPath volume",
        lambda s: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        "volume h: hostPath is not allowed",
    ),
    (
        "unsafe sysctl",
        lambda s: s["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
        "sysctl kernel.msgmax is not in the safe set",
    ),
    (
        "privileged",
        lambda s: first(s)["securityContext"].update(privileged=True),
        "privileged must not be true",
    ),
    (
        "privilege escalation",
        lambda s: first(s)["securityContext"].pop("allowPrivilegeEscalation"),
        "allowPrivilegeEscalation must be false",
    ),
    (
        "root allowed",
        lambda s: s["securityContext"].pop("runAsNonRoot"),
        "runAsNonRoot must be true",
    ),
    ("uid 0", lambda s: first(s)["securityContext"].update(runAsUser=0), "runAsUser must not be 0"),
    (
        "no seccomp",
        lambda s: s["securityContext"].pop("seccompProfile"),
        "seccompProfile must be RuntimeDefault",
    ),
    (
        "unconfined seccomp",
        lambda s: s["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        "seccompProfile Unconfined is not RuntimeDefault or Localhost",
    ),
    (
        "capabilities kept",
        lambda s: first(s)["securityContext"].pop("capabilities"),
        "capabilities must drop ALL",
    ),
    (
        "capability added",
        lambda s: first(s)["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
        "capabilities may add only NET_BIND_SERVICE",
    ),
    (
        "host port",
        lambda s: first(s).update(ports=[{"containerPort": 8888, "hostPort": 8888}]),
        "hostPort must not be set",
    ),
    (
        "unmasked proc",
        lambda s: first(s)["securityContext"].update(procMount="Unmasked"),
        "procMount must be Default",
    ),
]


@pytest.mark.parametrize(("what", "breaks", "rule"), BREAKS, ids=[b[0] for b in BREAKS])
def test_a_manifest_that_breaks_a_rule_is_refused(
    what: str, breaks: Callable[[Spec], None], rule: str
) -> None:
    rc = copy.deepcopy(k8s.raycluster(CELL, IMAGES))
    breaks(rc["spec"]["headGroupSpec"]["template"]["spec"])
    problems = k8s.validate(rc)
    assert any(rule in p and "headGroupSpec/template/spec" in p for p in problems), problems
    assert all(pss.PROFILE in p for p in problems if rule in p)
