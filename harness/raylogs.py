"""What Ray's own session logs say stopped a node (read from the copies `save_ray_logs` made).

Ray's C++ processes (raylet, GCS) log a fatal error as a line of level `C`, then abort;
what the user sees is only `ray start`'s "The current node timed out during startup" or a
node gone from the cluster. The one such stop a healthy image meets is a node too slow to
start: the raylet waits a fixed 15 s (not a setting, ray-project/ray#65983) for its agents
to write their port files, and aborts when an agent is still importing. Whether the agent
was still starting or had failed, its own `.err` file says; both are reported.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.files import write_atomic
from harness.results import ERROR, FAILED, REDACTED, Check

# `[2026-12-01 10:14:32,734 C 307 307] (raylet) node_manager.cc:3588:  An unexpected ...`
FATAL = re.compile(
    r"^\[[^\]]* C \d+ \d+\] \((?P<process>[\w.-]+)\) (?P<where>\S+:\d+):\s*(?P<msg>.*)"
)
BOILERPLATE = re.compile(r"An unexpected system state has occurred\..*?fix it\.\s*")
CHECK = re.compile(r"Check failed: \S+\s*")  # the failed expression (statussetor3588.has_value())
PORT_WAIT = re.compile(r"Timed out waiting for file \S*?(?P<port>[a-z_]+_port)_[0-9a-f]+\b")
WAITED = re.compile(r"\bafter (?P<ms>\d+) ?ms\b")  # newer Rays say how long they waited
AGENT_OF_PORT = {  # which of the raylet's child processes writes each port file
    "metrics_agent_port": "dashboard_agent",
    "metrics_export_port": "dashboard_agent",
    "dashboard_agent_listen_port": "dashboard_agent",
    "runtime_env_agent_port": "runtime_env_agent",
}
SCANNED = ("raylet.out", "raylet.err", "gcs_server.out", "gcs_server.err")
STILL_STARTING = "the agent was still starting"  # its .err empty when the raylet gave up


def fatal_causes(ray_dir: Path, roles: list[str]) -> dict[str, str]:
    """{role: why} for each of `roles` (just copied to ray_dir/<role>/) whose raylet or GCS
    aborted: the first fatal line, without Ray's bug-report boilerplate, explained when it
    is the start-up wait for an agent."""
    causes: dict[str, str] = {}
    for role_dir in (ray_dir / role for role in roles):
        for name in SCANNED:
            line = _first_fatal(role_dir / name)
            if line is not None:
                causes[role_dir.name] = _explain(line, role_dir)
                break
    return causes


def _first_fatal(path: Path) -> re.Match[str] | None:
    try:
        with path.open(errors="replace") as f:
            for line in f:
                found = FATAL.match(line)
                if found:
                    return found
    except OSError:
        return None
    return None


def _explain(fatal: re.Match[str], role_dir: Path) -> str:
    msg = CHECK.sub("", BOILERPLATE.sub("", fatal["msg"])).strip()
    said = f"{fatal['process']} aborted ({fatal['where']}): {msg[:300]}"
    wait = PORT_WAIT.search(msg)
    if wait is None:
        return said
    agent = AGENT_OF_PORT.get(wait["port"], "agent")
    err = _last_line(role_dir / f"{agent}.err")
    state = (
        f"{agent}.err ends: {err[:200]}"
        if err
        else f"{agent}.err is empty: {STILL_STARTING}, the node too slow for the limit"
    )
    waited = WAITED.search(msg)
    limit = f"{int(waited['ms']) / 1000:g} s" if waited else "fixed 15 s"
    return (
        f"{fatal['process']} gave up waiting for {wait['port']} after Ray's {limit} for its "
        f"{agent} to start (ray-project/ray#65983); {state}"
    )


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def starved(causes: dict[str, str]) -> bool:
    """True when every abort is a raylet giving up on an agent that was still starting: the
    node was too slow (or the agent hung), nothing the image reported; the harness cannot
    tell whether the image works."""
    return bool(causes) and all(STILL_STARTING in why for why in causes.values())


def judge(checks: list[Check], causes: dict[str, str]) -> None:
    """Attach `causes` to the checks that did not pass. When the node was only starved
    (`starved`), the checks that a node's start decides (cluster:*, driver:*) are `error`,
    not `failed`: they say nothing about the image, and still block a push."""
    undecided = starved(causes)
    for c in checks:
        if undecided and c.status == FAILED and c.name.split(":")[0] in ("cluster", "driver"):
            c.status = ERROR
            c.detail = f"undecided, a node too slow for Ray's start-up limit; {c.detail}"
        if c.status in (FAILED, ERROR):
            c.data["ray_aborted"] = causes


def summary(causes: dict[str, str]) -> str:
    """One line for a log or a check's detail: `worker: raylet gave up ...; head: ...`."""
    return "; ".join(f"{role}: {why}" for role, why in causes.items())


def redact_tree(root: Path, secret: str) -> list[Path]:
    """Mask `secret` in every file under `root` (saved container output and Ray's logs:
    what the harness writes must not carry the cluster's token); the files changed."""
    if not secret or not root.is_dir():
        return []
    needle, mask = secret.encode(), REDACTED.encode()
    changed = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        data = path.read_bytes()
        if needle in data:
            write_atomic(path, data.replace(needle, mask))
            changed.append(path)
    return changed
