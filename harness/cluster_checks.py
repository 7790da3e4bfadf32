"""Turn probe results into checks. Pure functions: no Docker, so they are unit-tested."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from harness.results import Check

PARITY_KEYS = ("python", "ray", "commit")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def plain(text: object) -> str:
    """Text without terminal colour codes (IPython tracebacks carry them)."""
    return _ANSI.sub("", str(text))


def _fmt(facts: Mapping[str, Any]) -> str:
    return f"Python {facts.get('python')}, Ray {facts.get('ray')} ({str(facts.get('commit'))[:10]})"


def parity(
    name: str,
    client: Mapping[str, Any],
    nodes: Sequence[Mapping[str, Any]],
    expected: Mapping[str, str] | None = None,
) -> Check:
    """Every node's (Python micro, Ray version, Ray commit) equals the client's (and the cell's)."""
    problems: list[str] = []
    if expected:
        for key, want in expected.items():
            if client.get(key) != want:
                problems.append(f"client {key} {client.get(key)} != cell {want}")
    if not nodes:
        problems.append("no node answered")
    for node in nodes:
        label = node.get("hostname") or str(node.get("node_id", "?"))[:12]
        facts = node.get("facts")
        if not facts:
            problems.append(f"{label}: no answer ({node.get('error', 'probe failed')})")
            continue
        for key in PARITY_KEYS:
            if facts.get(key) != client.get(key):
                problems.append(f"{label}: {key} {facts.get(key)} != client {client.get(key)}")
    detail = (
        f"client and {len(nodes)} node(s): {_fmt(client)}" if not problems else "; ".join(problems)
    )
    return Check.of(
        name,
        not problems,
        detail,
        client={k: client.get(k) for k in PARITY_KEYS},
        nodes=[
            {"host": n.get("hostname"), **{k: (n.get("facts") or {}).get(k) for k in PARITY_KEYS}}
            for n in nodes
        ],
    )


def connect(name: str, result: Mapping[str, Any], expect_nodes: int) -> list[Check]:
    """The connect check, and a node-count check when the connection worked."""
    conn = result.get("connect") or {"ok": False, "error": result.get("error", "probe failed")}
    if not conn.get("ok"):
        return [
            Check.of(
                name,
                False,
                f"{result.get('address')}: {conn.get('error')}",
                warnings=conn.get("warnings", []),
            )
        ]
    warnings = conn.get("warnings") or []
    detail = f"{result.get('address')} connected"
    if warnings:
        detail += f"; Ray warned: {warnings[0][:200]}"
    checks = [Check.of(name, True, detail, warnings=warnings)]
    alive = int(result.get("alive_nodes") or 0)
    checks.append(
        Check.of(
            f"{name}:nodes",
            alive >= expect_nodes,
            f"{alive} alive node(s), expected {expect_nodes}",
        )
    )
    return checks


def workload(result: Mapping[str, Any], node_ids: Sequence[str]) -> list[Check]:
    wl = result.get("workload")
    if not wl:
        return [Check.of("workload", False, "no workload result (connect failed?)")]
    if not wl.get("ok"):
        return [Check.of("workload", False, str(wl.get("error")))]
    tasks, actor, obj = wl["tasks"], wl["actor"], wl["object"]
    spread = set(tasks["nodes"]) >= set(node_ids) and bool(node_ids)
    return [
        Check.of(
            "workload:tasks",
            tasks["sum_ok"] and spread,
            f"{tasks['count']} tasks ran on {len(tasks['nodes'])} of {len(node_ids)} nodes"
            + ("" if tasks["sum_ok"] else "; wrong results"),
        ),
        Check.of("workload:actor", bool(actor["ok"]), f"counter returned {actor['values']}"),
        Check.of(
            "workload:object",
            bool(obj.get("ok")),
            f"{obj.get('bytes', 0)} bytes written on {str(obj.get('writer'))[:8]} read on "
            f"{str(obj.get('reader'))[:8]}"
            if obj.get("ok")
            else str(obj.get("error", obj)),
        ),
    ]


def notebook(result: Mapping[str, Any], marker: str = "PARITY_OK") -> Check:
    ok = bool(result.get("ok")) and marker in str(result.get("stdout", ""))
    if ok:
        line = next(ln for ln in str(result["stdout"]).splitlines() if marker in ln)
        return Check.of("notebook:execute", True, f"parity.ipynb ran in nbclient: {line[:200]}")
    return Check.of(
        "notebook:execute",
        False,
        plain(result.get("error") or result.get("stdout") or "no output")[-800:],
    )


def jupyterlab(result: Mapping[str, Any]) -> Check:
    if result.get("ok") and result.get("lab_page"):
        status = result.get("status") or {}
        return Check.of(
            "notebook:jupyterlab",
            True,
            f"/api/status answered (started {status.get('started', '?')}), /lab serves JupyterLab",
        )
    return Check.of("notebook:jupyterlab", False, str(result.get("error") or "no JupyterLab page"))
