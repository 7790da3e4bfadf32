"""The Kubernetes *restricted* Pod Security Standard, checked offline on pod specs.

Users run Ray pods in namespaces that enforce `pod-security.kubernetes.io/enforce:
restricted` (ray#29665, kuberay#750); a manifest the harness renders must be admitted
there. The rules below are the restricted profile's (which includes the baseline one) as
Kubernetes documents them for v1.32 ("Pod Security Standards"): one function per rule
family, each returning what breaks it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

PROFILE = "restricted (Kubernetes Pod Security Standards, v1.32)"
VOLUME_TYPES = frozenset(  # the only volume sources the restricted profile admits
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
ADDABLE_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SECCOMP_TYPES = frozenset({"RuntimeDefault", "Localhost"})
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)


def _dicts(value: object) -> list[Mapping[str, Any]]:
    """The mappings in a list (a malformed field is the schema check's to report)."""
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for c in _dicts(spec.get(kind)):
            yield f"{kind}/{c.get('name', '?')}", c


def _host_namespaces(spec: Mapping[str, Any]) -> list[str]:
    return [f"{k} must not be true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k)]


def _volumes(spec: Mapping[str, Any]) -> list[str]:
    out = []
    for v in _dicts(spec.get("volumes")):
        kinds = set(v) - {"name"}
        bad = sorted(kinds - VOLUME_TYPES)
        if bad:
            out.append(f"volume {v.get('name')}: {', '.join(bad)} is not allowed")
    return out


def _sysctls(spec: Mapping[str, Any]) -> list[str]:
    ctx = _dict(spec.get("securityContext"))
    return [
        f"sysctl {s.get('name')} is not in the safe set"
        for s in _dicts(ctx.get("sysctls"))
        if s.get("name") not in SAFE_SYSCTLS
    ]


def _per_container(spec: Mapping[str, Any]) -> list[str]:
    pod = _dict(spec.get("securityContext"))
    pod_non_root = pod.get("runAsNonRoot") is True
    pod_seccomp = _dict(pod.get("seccompProfile")).get("type")
    if pod_seccomp is not None and pod_seccomp not in SECCOMP_TYPES:
        return [f"seccompProfile {pod_seccomp} is not RuntimeDefault or Localhost"]
    out = []
    if pod.get("runAsUser") == 0:
        out.append("runAsUser must not be 0")
    for where, c in _containers(spec):
        ctx = _dict(c.get("securityContext"))
        if ctx.get("privileged"):
            out.append(f"{where}: privileged must not be true")
        if ctx.get("allowPrivilegeEscalation") is not False:
            out.append(f"{where}: allowPrivilegeEscalation must be false")
        non_root = ctx.get("runAsNonRoot")
        if non_root is False or (non_root is None and not pod_non_root):
            out.append(f"{where}: runAsNonRoot must be true (here or on the pod)")
        if ctx.get("runAsUser") == 0:
            out.append(f"{where}: runAsUser must not be 0")
        seccomp = _dict(ctx.get("seccompProfile")).get("type")
        if seccomp is not None and seccomp not in SECCOMP_TYPES:
            out.append(f"{where}: seccompProfile {seccomp} is not RuntimeDefault or Localhost")
        if seccomp is None and pod_seccomp is None:
            out.append(f"{where}: seccompProfile must be RuntimeDefault (here or on the pod)")
        caps = _dict(ctx.get("capabilities"))
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{where}: capabilities must drop ALL")
        added = sorted(set(caps.get("add") or []) - ADDABLE_CAPABILITIES)
        if added:
            out.append(f"{where}: capabilities may add only NET_BIND_SERVICE, not {added}")
        ports = [p for p in _dicts(c.get("ports")) if p.get("hostPort")]
        if ports:
            out.append(f"{where}: hostPort must not be set")
        if ctx.get("procMount") not in (None, "Default"):
            out.append(f"{where}: procMount must be Default")
    return out


def restricted(spec: Mapping[str, Any], where: str) -> list[str]:
    """What keeps a pod with this spec out of a namespace enforcing the restricted profile."""
    problems = [
        *_host_namespaces(spec),
        *_volumes(spec),
        *_sysctls(spec),
        *_per_container(spec),
    ]
    return [f"{where}: {PROFILE}: {p}" for p in problems]
