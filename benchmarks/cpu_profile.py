"""Where one cell's test spends its time: wall per step and CPU per process kind.

While `harness test` runs, a thread reads /proc every 0.2 s: the host's busy time
(/proc/stat) and every process's CPU time and command line (containers' processes are the
host's too). A process is named by what it last was: the command it exec'd (the worker
image's wait loop becomes `ray start`), or the title Ray gave it (`ray::ServeReplica...`,
`ray::IDLE`). Steps come from the harness's own progress lines (`X ...`
then `X: done in N s`), timed as they arrive. A process that lives less than one sample
is not seen (the total says how much of the host's busy time the kinds account for).

Why not a profiler of the field: py-spy and perf see one process or need symbols of
every binary; what is asked here is which of ~60 short-lived processes in four
containers costs the cell's CPU, which /proc answers directly.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

HZ = os.sysconf("SC_CLK_TCK")
SAMPLE_S = 0.2
# (kind, pattern on the command line, the check it serves); first match wins
KINDS: list[tuple[str, str, str]] = [
    (
        "Serve: controller, proxies, replicas",
        r"^ray::(ServeController|ProxyActor|ServeReplica)",
        "serve",
    ),
    ("Jobs API: job supervisors", r"^ray::JobSupervisor", "jobs, serve"),
    ("Ray workers (tasks, actors, idle)", r"^ray::|default_worker\.py|setup_worker\.py /", "all"),
    ("Ray Client servers (one per client)", r"ray\.util\.client\.server", "client, notebook, auth"),
    ("`ray start --address` (the notebook joining)", r"ray start --address", "driver, auth"),
    ("`ray start --block --address` (the worker node)", r"ray start --block --address", "cluster"),
    ("`ray start --head`", r"ray start --head", "cluster"),
    ("raylet", r"/raylet( |$)", "cluster"),
    ("GCS server", r"gcs_server", "cluster"),
    ("dashboard and its modules", r"dashboard/dashboard\.py|^ray-dashboard-", "cluster"),
    ("dashboard agent", r"dashboard/agent\.py", "cluster"),
    ("runtime env agent", r"runtime_env/agent|runtime_env_agent", "cluster"),
    ("log monitor", r"log_monitor\.py", "cluster"),
    ("probe: cluster (ready, client, driver)", r"python - cluster", "ready, client, driver"),
    ("probe: auth attempts", r"python - auth", "auth"),
    ("probe: jobs", r"python - jobs", "jobs"),
    ("probe: serve", r"python - serve", "serve"),
    ("probe: notebook (nbclient)", r"python - notebook", "notebook"),
    ("probe: other", r"python - ", "various"),
    ("Jupyter kernel", r"ipykernel", "notebook"),
    ("JupyterLab / Jupyter server", r"jupyter", "notebook, kubeflow"),
    ("job drivers (rcjob.py, rcserve.py)", r"rcserve\.py|rcjob\.py", "jobs, serve"),
    ("the harness CLI", r"-m harness", "harness"),
    ("Docker engine (dockerd, containerd, runc)", r"dockerd|containerd|runc|docker-init", "engine"),
]
STARTUP = "containers started, the head's Ray up"
TEARDOWN = "teardown: logs saved, containers and network removed"
_STARTING = re.compile(r": starting rh-\S+: head")
_REMOVED = re.compile(r": removed \d+ containers")
_COMPILED = [(k, re.compile(p), s) for k, p, s in KINDS]
_STEP = re.compile(
    r"^(?:\[\d\d:\d\d:\d\d\] )?(?:[\w.\-]+: )?(?P<what>.+?)(?P<end>: done in [\d.]+s| \.\.\.)$"
)


def kind(cmdline: str) -> tuple[str, str]:
    """The kind of a process by its command line, and the check(s) it serves."""
    for name, pattern, serves in _COMPILED:
        if pattern.search(cmdline):
            return name, serves
    return ("other processes", "")


def _busy() -> int:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4]  # all but idle and iowait


@dataclass
class _Proc:
    cmdline: str
    cpu: float
    base: float  # CPU it had before the profile started (0 for a process started during it)


@dataclass
class Profiler:
    """`with Profiler() as p:` samples until exit; `p.line(text)` records a progress line."""

    procs: dict[int, _Proc] = field(default_factory=dict)
    busy: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, busy jiffies)
    lines: list[tuple[float, str]] = field(default_factory=list)
    start: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Profiler:
        self.start = time.monotonic()
        self._sample(first=True)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    def line(self, text: str) -> None:
        self.lines.append((time.monotonic(), text.rstrip("\n")))

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._sample()

    def _sample(self, first: bool = False) -> None:
        self.busy.append((time.monotonic(), _busy()))
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                with open(f"/proc/{pid}/stat") as f:
                    stat = f.read()
                rest = stat[stat.rindex(")") + 2 :].split()
                cpu = (int(rest[11]) + int(rest[12])) / HZ
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except (OSError, ValueError, IndexError):
                continue  # gone between listing and reading
            seen = self.procs.get(pid)
            if seen is None:
                self.procs[pid] = _Proc(cmd, cpu, cpu if first else 0.0)
            else:
                seen.cpu = max(seen.cpu, cpu)
                if cmd:  # what it became: an exec'd command, or the title Ray gave a worker
                    seen.cmdline = cmd

    def _busy_between(self, t0: float, t1: float) -> float:
        """Host CPU-seconds used between two monotonic times (from the samples)."""
        inside = [(t, b) for t, b in self.busy if t0 <= t <= t1]
        before = [b for t, b in self.busy if t < t0]
        after = [b for t, b in self.busy if t > t1]
        lo = before[-1] if before else (inside[0][1] if inside else 0)
        hi = after[0] if after else (inside[-1][1] if inside else lo)
        return (hi - lo) / HZ

    def result(self) -> dict[str, Any]:
        """Steps (start, wall, host CPU during), CPU by process kind, and the totals."""
        end = self.busy[-1][0] if self.busy else self.start
        host = self._busy_between(self.start, end)
        by_kind: dict[str, list[Any]] = {}
        for p in self.procs.values():
            used = p.cpu - p.base
            if used <= 0 or "benchmarks/" in p.cmdline or not p.cmdline:
                continue  # the profiler itself; kernel threads have no command line
            name, serves = kind(p.cmdline)
            row = by_kind.setdefault(name, [serves, 0, 0.0])
            row[1] += 1
            row[2] += used
        kinds = [
            {"kind": k, "serves": s, "processes": n, "cpu_s": round(c, 1)}
            for k, (s, n, c) in sorted(by_kind.items(), key=lambda kv: -kv[1][2])
        ]
        return {
            "wall_s": round(end - self.start, 1),
            "host_cpu_s": round(host, 1),
            "cores": os.cpu_count(),
            "processes_cpu_s": round(sum(k["cpu_s"] for k in kinds), 1),
            "steps": steps(self.lines, self.start, self._busy_between),
            "by_kind": kinds,
        }


def steps(lines: Sequence[tuple[float, str]], start: float, cpu: Any) -> list[dict[str, Any]]:
    """Each step the harness logged (`X ...` then `X: done in N s`): when it started after
    `start`, its wall seconds, and the host's CPU-seconds while it ran (steps that overlap
    share the host: their CPU is not additive)."""
    opened: dict[str, float] = {}
    out: list[dict[str, Any]] = []

    def close(what: str, t0: float, t: float) -> None:
        out.append(
            {
                "step": what,
                "start_s": round(t0 - start, 1),
                "wall_s": round(t - t0, 1),
                "host_cpu_s": round(cpu(t0, t), 1),
            }
        )

    last_done = start
    for t, text in lines:
        # the containers' start and the teardown log no "done": each ends at the next line
        if _STARTING.search(text):
            opened[STARTUP] = t
        elif _REMOVED.search(text):
            close(TEARDOWN, last_done, t)
        m = _STEP.match(text)
        if not m:
            continue
        what = m.group("what")
        if STARTUP in opened:
            close(STARTUP, opened.pop(STARTUP), t)
        if m.group("end") == " ...":
            opened[what] = t
        elif what in opened:
            close(what, opened.pop(what), t)
            last_done = t
    return sorted(out, key=lambda s: s["start_s"])
