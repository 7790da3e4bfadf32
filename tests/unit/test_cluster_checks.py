"""Probe results -> checks (pure logic)."""

from __future__ import annotations

from typing import Any

from harness import cluster_checks as checks

CLIENT = {"python": "3.11.2", "ray": "2.60.0", "commit": "abc"}


def node(host: str, **facts: str) -> dict[str, Any]:
    return {"hostname": host, "node_id": host + "-id", "facts": {**CLIENT, **facts}}


def test_parity_passes_when_everything_matches() -> None:
    c = checks.parity(
        "p", CLIENT, [node("head"), node("worker")], {"python": "3.11.2", "ray": "2.60.0"}
    )
    assert c.status == "passed"
    assert "2 node(s)" in c.detail


def test_parity_names_the_node_and_the_difference() -> None:
    c = checks.parity("p", CLIENT, [node("head"), node("worker", python="3.11.7")])
    assert c.status == "failed"
    assert "worker: python 3.11.7 != client 3.11.2" in c.detail


def test_parity_fails_when_client_is_not_the_cell() -> None:
    c = checks.parity("p", CLIENT, [node("head")], {"python": "3.11.9", "ray": "2.60.0"})
    assert c.status == "failed" and "client python 3.11.2 != cell 3.11.9" in c.detail


def test_parity_fails_on_silent_or_missing_nodes() -> None:
    assert checks.parity("p", CLIENT, []).status == "failed"
    c = checks.parity("p", CLIENT, [{"hostname": "w", "error": "timeout"}])
    assert c.status == "failed" and "w: no answer (timeout)" in c.detail


def test_connect_failure_keeps_rays_message() -> None:
    r = {"address": "h:6379", "connect": {"ok": False, "error": "RuntimeError: Version mismatch"}}
    [c] = checks.connect("driver:connect", r, expect_nodes=2)
    assert c.status == "failed" and "Version mismatch" in c.detail


def test_connect_counts_nodes_and_reports_warnings() -> None:
    r = {
        "address": "ray://h:10001",
        "alive_nodes": 1,
        "connect": {"ok": True, "warnings": ["Python patch version mismatch"]},
    }
    conn, nodes = checks.connect("client:connect", r, expect_nodes=2)
    assert conn.status == "passed" and "patch version mismatch" in conn.detail
    assert nodes.status == "failed" and nodes.detail == "1 alive node(s), expected 2"


def test_workload_requires_tasks_on_every_node() -> None:
    r = {
        "workload": {
            "ok": True,
            "tasks": {"count": 24, "sum_ok": True, "nodes": ["a"]},
            "actor": {"ok": True, "values": [1, 3, 6]},
            "object": {"ok": True, "bytes": 4, "writer": "a", "reader": "b"},
        }
    }
    tasks, actor, obj = checks.workload(r, ["a", "b"])
    assert tasks.status == "failed" and "1 of 2 nodes" in tasks.detail
    assert actor.status == "passed" and obj.status == "passed"
    assert checks.workload({}, ["a"])[0].status == "failed"


def test_notebook_needs_the_marker_and_strips_colour() -> None:
    ok = checks.notebook({"ok": True, "stdout": 'PARITY_OK {"nodes": 2}\n'})
    assert ok.status == "passed"
    bad = checks.notebook({"ok": False, "error": "\x1b[31mAssertionError\x1b[0m: parity broken"})
    assert bad.status == "failed" and bad.detail == "AssertionError: parity broken"
    assert checks.notebook({"ok": True, "stdout": "nothing"}).status == "failed"


def test_jupyterlab() -> None:
    assert checks.jupyterlab({"ok": True, "lab_page": True, "status": {}}).status == "passed"
    assert checks.jupyterlab({"ok": False, "error": "refused"}).status == "failed"
