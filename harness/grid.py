"""Compatibility grid: which notebook image can talk to which cluster, and why.

For every cluster cell (head + worker, started once) and every notebook image in the
selection, record Ray's own verdicts (Ray Client connect; the driver version check) with
Ray's exact messages, next to the harness's verdict under the matrix's policy: which
differences fail (default: Python micro, Ray version, Ray commit) and which warn
(default: libraries that cross the wire). M cluster starts for N x M pairs.

A cell's notebook against its own cluster is what `test` proves (Ray Client, driver and
Jobs API paths, parity with every node): where the build directory's last test of that
cell passed on the same images and backend, the pair is taken from it (`proven_by`), not
run again, and a cluster none of whose pairs is left to run is not started.
"""

from __future__ import annotations

import contextlib
import html
import json
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from harness import raylogs
from harness.backends import Backend, Cluster, ClusterStartFailed
from harness.files import write_atomic
from harness.matrix import Cell, GridPolicy, Matrix
from harness.probe_client import Probe
from harness.progress import log, step
from harness.results import PASSED, CellResult, Status, redact
from harness.timeouts import DEFAULT, Timeouts
from harness.verify import QUICK_REFUSAL, join_as_driver

COMPATIBLE, WARN, INCOMPATIBLE = "compatible", "warn", "incompatible"
_VERSION_REFUSAL = re.compile(r"mismatch|not compatible|incompatible", re.IGNORECASE)
# The harness could not decide (a cluster that never came up, a probe that crashed or timed
# out): not a result about the pair. Ray's own `error` verdicts, by contrast, are results.
UNDECIDED = "error"
EXIT_BLIND_SPOT, EXIT_UNDECIDED = 1, 3
OUTCOME = {
    COMPATIBLE: Status.PASSED,
    WARN: Status.WARNING,
    INCOMPATIBLE: Status.FAILED,
    "accepted": Status.PASSED,
    "warned": Status.WARNING,
    "rejected": Status.FAILED,
    "error": Status.FAILED,  # answered: Ray's own error is a result about the pair
}


@dataclass
class Verdict:
    """One verdict on a pair. The harness's: compatible, warn, incompatible, or error (it
    could not decide). Ray's, per client path: accepted, warned, rejected, or error (Ray
    failed with a message that names no version)."""

    verdict: str
    message: str = ""
    reasons: list[str] = field(default_factory=list)  # the harness's differences
    warnings: list[str] = field(default_factory=list)  # Ray's version warnings
    answered: bool = True  # False: the probe itself gave no answer
    stage: str = ""  # the driver path: `ray start` or `ray.init`

    @property
    def outcome(self) -> Status:
        """The verdict in the harness's one vocabulary of outcomes: no answer is `error`;
        a refusal by Ray, with or without a version message, is `failed`."""
        return OUTCOME[self.verdict] if self.answered else Status.ERROR


RELAX_NAME = "RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL"  # ray PR #57552
RELAX_ENV = {RELAX_NAME: "minor"}


@dataclass
class Relaxation:
    """With RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL=minor (how users dodge the micro check):
    whether the driver got in, and which round trips then worked. `safe` only when it got
    in and every round trip came back equal."""

    joined: bool
    message: str = ""
    roundtrips: dict[str, str] = field(default_factory=dict)  # name -> "ok" or Ray's error

    @property
    def safe(self) -> bool:
        return (
            self.joined
            and bool(self.roundtrips)
            and all(v == "ok" for v in self.roundtrips.values())
        )


def micro_only(client: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]]) -> bool:
    """Same Ray and Python minor, another Python micro: what the relaxation is about."""
    mine = str(client.get("python", ""))
    return bool(nodes) and all(
        n.get("ray") == client.get("ray")
        and str(n.get("python", "")).split(".")[:2] == mine.split(".")[:2]
        and n.get("python") != mine
        for n in nodes
    )


def relaxation(cluster: Cluster, client: str, timeouts: Timeouts = DEFAULT) -> Relaxation:
    """Force the driver path past Ray's micro check and try the round trips."""
    env = {**RELAX_ENV, **QUICK_REFUSAL}
    refused, r = join_as_driver(cluster, client, timeouts, env=env, roundtrip=True)
    if refused is not None:
        return Relaxation(False, _mismatch_lines(refused))
    conn = r.get("connect") or {}
    if not conn.get("ok"):
        return Relaxation(False, str(conn.get("error") or r.get("error") or "no answer")[:2000])
    trips = {
        name: "ok" if t.get("ok") else str(t.get("detail"))[:600]
        for name, t in (r.get("roundtrips") or {}).items()
    }
    if r.get("error"):
        trips["(probe)"] = str(r["error"])[:600]
    note = str(r.get("array") or "")
    return Relaxation(True, "joined and connected" + (f"; {note}" if note else ""), trips)


@dataclass
class Pair:
    notebook: str  # cell id of the notebook image
    cluster: str  # cell id of the head/worker images
    ray_client: Verdict = field(default_factory=lambda: Verdict(UNDECIDED, answered=False))
    ray_driver: Verdict = field(default_factory=lambda: Verdict(UNDECIDED, answered=False))
    harness: Verdict = field(default_factory=lambda: Verdict(UNDECIDED, answered=False))
    ray_jobs: Verdict = field(default_factory=lambda: Verdict(UNDECIDED, answered=False))
    # The harness's verdict for the Jobs path alone: the job's driver runs on the cluster's
    # interpreter, so only what the submitting client itself must share with the cluster
    # (its Ray version, the REST API it speaks) decides it.
    harness_jobs: Verdict = field(default_factory=lambda: Verdict(UNDECIDED, answered=False))
    # Only for a Python micro-only mismatch: what forcing Ray past its check does.
    relaxed: Relaxation | None = None
    # Where the pair's verdicts come from when not from this grid run: `test`'s checks of
    # the cell (same images, same backend), named here
    proven_by: str = ""

    @property
    def ray_objects(self) -> bool:
        """Ray refuses on either path: a version message, or an error that names none."""
        return any(v.verdict in ("rejected", "error") for v in (self.ray_client, self.ray_driver))

    @property
    def safe_paths(self) -> list[str]:
        """The client paths a user of this pair can rely on, by the harness's verdicts."""
        safe = []
        if self.harness.verdict in (COMPATIBLE, WARN):
            safe += ["Ray Client", "driver"]
        if self.harness_jobs.verdict in (COMPATIBLE, WARN):
            safe.append("Jobs API")
        return safe

    @property
    def undecided(self) -> list[str]:
        """Where the harness got no answer for this pair (empty when every verdict is one)."""
        out = []
        if not self.harness.answered:
            out.append("harness: " + "; ".join(self.harness.reasons))
        paths = (("Ray Client", self.ray_client), ("driver", self.ray_driver))
        for path, verdict in (*paths, ("Jobs API", self.ray_jobs)):
            if not verdict.answered:
                out.append(f"{path}: {verdict.message}")
        return out

    @property
    def blind_spot(self) -> bool:
        """Ray refuses, or only warns about a Python micro mismatch, and we said compatible."""
        warned = self.ray_client.verdict == "warned"
        return (self.ray_objects or warned) and self.harness.verdict == COMPATIBLE


def _value(facts: Mapping[str, Any], key: str) -> Any:
    if key in ("python", "ray", "commit"):
        return facts.get(key)
    return (facts.get("libs") or {}).get(key)


def judge(
    client: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]], policy: GridPolicy
) -> Verdict:
    """The harness's verdict: every node compared with the client, key by key."""
    reasons: list[str] = []
    level = COMPATIBLE
    if not nodes:
        return Verdict(
            UNDECIDED, reasons=["no node facts: the cluster never answered"], answered=False
        )
    if not client.get("python") or not client.get("ray"):
        why = client.get("error") or "no facts"
        return Verdict(
            UNDECIDED, reasons=[f"the notebook image gave no facts: {why}"], answered=False
        )
    for severity, keys in ((INCOMPATIBLE, policy.fail), (WARN, policy.warn)):
        for key in keys:
            mine = _shown(_value(client, key))
            theirs = sorted({_shown(_value(n, key)) for n in nodes})
            if theirs != [mine]:  # a `warn` key says so: it is not why a pair is incompatible
                tail = "" if severity == INCOMPATIBLE else " (warn)"
                reasons.append(f"{key}: notebook {mine} vs cluster {', '.join(theirs)}{tail}")
                if level != INCOMPATIBLE:
                    level = severity
    return Verdict(level, reasons=reasons)


def _shown(value: object) -> str:
    """A compared value as a reason shows it: a library that is not there says so."""
    return "not installed" if value is None else str(value)


def _no_answer(result: Mapping[str, Any], stage: str = "") -> Verdict | None:
    """The probe itself gave no answer (crashed, timed out): the harness could not decide."""
    if "connect" in result:
        return None
    message = str(result.get("error") or "the probe gave no answer")[:2000]
    return Verdict(UNDECIDED, message, answered=False, stage=stage)


def ray_client_verdict(result: Mapping[str, Any]) -> Verdict:
    missing = _no_answer(result)
    if missing:
        return missing
    conn = result.get("connect") or {}
    warnings = [w for w in conn.get("warnings") or [] if "mismatch" in w.lower()]
    if conn.get("ok"):
        if warnings:
            return Verdict("warned", warnings[0], warnings=warnings)
        return Verdict("accepted", "connected")
    message = str(conn.get("error") or result.get("error") or "no answer")
    verdict = "rejected" if "mismatch" in message.lower() else "error"
    return Verdict(verdict, message[:2000], warnings=warnings)


def _mismatch_lines(text: str) -> str:
    """Ray's own words: the version-mismatch exception, else the output's tail."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if "version mismatch" in line.lower():
            return " ".join(lines[i : i + 6])[:2000]
    return " ".join(lines[-8:])[:2000]


def driver_verdict(cluster: Cluster, client: str, timeouts: Timeouts = DEFAULT) -> Verdict:
    """Ray's verdict on the client as a driver/joining node: Ray refuses a mismatch at
    `ray start --address` with "Version mismatch"; a client that joins runs a real driver.
    Ray gets two attempts where it would retry for a head still starting (QUICK_REFUSAL):
    the cluster is proven up before any pair."""
    refused, r = join_as_driver(cluster, client, timeouts, env=QUICK_REFUSAL)
    if refused is not None:
        verdict = "rejected" if "mismatch" in refused.lower() else "error"
        return Verdict(verdict, _mismatch_lines(refused), stage="ray start")
    missing = _no_answer(r, stage="ray.init")
    if missing:
        return missing
    conn = r.get("connect") or {}
    if conn.get("ok"):
        return Verdict("accepted", "joined and connected", stage="ray.init")
    message = str(conn.get("error") or r.get("error") or "no answer")
    verdict = "rejected" if "mismatch" in message.lower() else "error"
    return Verdict(verdict, message[:2000], stage="ray.init")


def jobs_verdicts(result: Mapping[str, Any], cluster: Mapping[str, Any]) -> tuple[Verdict, Verdict]:
    """Ray's verdict on the Jobs path (what JobSubmissionClient from the notebook got from
    the cluster's dashboard) and the harness's verdict for that path. The job's driver and
    tasks run on the cluster, so the notebook's Python micro does not enter; the client's
    Ray version does (JobSubmissionClient and the dashboard's REST API are one release)."""
    job = result.get("job") or {}
    if not result.get("ok") and not job:
        message = str(result.get("error") or "the probe gave no answer")[:2000]
        if "probe deadline" in message or not result.get("client"):
            return (
                Verdict(UNDECIDED, message, answered=False),
                Verdict(UNDECIDED, reasons=[message[:300]], answered=False),
            )
        verdict = "rejected" if _VERSION_REFUSAL.search(message) else "error"
        return Verdict(verdict, message), Verdict(INCOMPATIBLE, reasons=[message[:300]])
    status = str(job.get("status"))
    tail = " ".join(str(job.get("log_tail") or "").split())[-600:]
    if status != "SUCCEEDED":
        why = f"job {status}: {tail}"
        return Verdict("error", why[:2000]), Verdict(INCOMPATIBLE, reasons=[why[:300]])
    client = result.get("client") or {}
    ours, theirs = client.get("ray"), cluster.get("ray")
    ray_msg = f"job SUCCEEDED on the cluster's interpreter (Ray {theirs})"
    if ours != theirs:
        reason = f"ray: notebook {ours} vs cluster {theirs} (JobSubmissionClient of another Ray)"
        return Verdict("accepted", ray_msg), Verdict(WARN, reasons=[reason])
    return Verdict("accepted", ray_msg), Verdict(COMPATIBLE)


# What `test` must have passed for a cell's notebook-to-own-cluster pair to be taken from it:
# the same three paths the grid asks, and parity with every node.
PROVING_CHECKS = (
    "client:connect",
    "client:parity",
    "driver:connect",
    "driver:parity",
    "jobs:submit",
)


def from_test(
    result: CellResult | None, image_ids: Mapping[str, str], backend: str, policy: GridPolicy
) -> tuple[Pair | None, str]:
    """The pair (cell's notebook, cell's cluster) as `test` proved it, or None and why not:
    the last test must have run on `backend`, on exactly `image_ids` (role -> image id), and
    passed every check of PROVING_CHECKS with the facts the harness judges on recorded."""
    if result is None or not result.tested_image_ids:
        return None, "not tested in this build directory"
    if result.tested_image_ids != dict(image_ids):
        return None, "its last test was of other images"
    if not result.tested_on:
        return None, "its last test's report predates the recorded backend"
    if result.tested_on != backend:
        return None, f"its last test ran on {result.tested_on}, not {backend}"
    by_name = {c.name: c for c in result.test_checks}
    unproven = [n for n in PROVING_CHECKS if n not in by_name or by_name[n].status != PASSED]
    if unproven:
        return None, f"its last test did not pass {', '.join(unproven)}"
    if by_name["client:connect"].data.get("warnings"):
        return None, "Ray warned at its last test's Ray Client connect"
    parity = by_name["client:parity"].data
    client, nodes = parity.get("client"), parity.get("nodes")
    if not isinstance(client, dict) or not isinstance(nodes, list) or len(nodes) < 2:
        return None, "its last test recorded no node facts"
    if "libs" not in client or not all(isinstance(n, dict) and "libs" in n for n in nodes):
        return None, "its last test predates the recorded wire libraries"
    ray = str(client.get("ray"))
    by = f"test (same image ids, {backend} backend)"
    pair = Pair(
        notebook=result.id,
        cluster=result.id,
        ray_client=Verdict("accepted", "connected (client:connect)"),
        ray_driver=Verdict("accepted", "joined and connected (driver:connect)", stage="ray.init"),
        harness=judge(client, nodes, policy),
        ray_jobs=Verdict("accepted", f"job SUCCEEDED on the cluster's interpreter (Ray {ray})"),
        harness_jobs=Verdict(COMPATIBLE),
        proven_by=by,
    )
    return pair, by


def run(
    backend: Backend,
    matrix: Matrix,
    cells: Sequence[Cell],
    log_dir: Path,
    timeouts: Timeouts = DEFAULT,
    proven: Mapping[tuple[str, str], Pair] | None = None,
) -> list[Pair]:
    """Start each cluster once (head and worker, from the backend); connect every notebook
    image of the selection to it as a client of its own. The pairs in `proven` ((notebook,
    cluster) -> pair) are taken as they are; a cluster with no other pair is not started."""
    pairs: list[Pair] = []
    proven = proven or {}

    def undecided(cluster_cell: Cell, why: str) -> None:
        """No pair of a cluster that never came up can be decided."""
        for nb_cell in cells:
            no = Verdict(UNDECIDED, why, answered=False)
            harness = Verdict(UNDECIDED, reasons=[f"cluster: {why}"], answered=False)
            pairs.append(Pair(nb_cell.id, cluster_cell.id, no, no, harness, no, harness))
        log(f"grid: cluster {cluster_cell.id} never came up ({why}); its pairs undecided")

    for cluster_cell in cells:
        to_run = [nb for nb in cells if (nb.id, cluster_cell.id) not in proven]
        if not to_run:
            for nb_cell in cells:
                pairs.append(proven[(nb_cell.id, cluster_cell.id)])
                log(f"grid: {nb_cell.id} -> {cluster_cell.id}: from {pairs[-1].proven_by}")
            continue
        images = backend.images_for(cluster_cell, cluster_cell.tags(matrix.prefix))
        with contextlib.ExitStack() as stack:
            try:
                cluster = backend.cluster(
                    cluster_cell,
                    images,
                    log_dir / cluster_cell.id,
                    timeouts,
                    name=f"grid-{cluster_cell.id}",
                    client=False,
                )
                stack.enter_context(cluster)
            except ClusterStartFailed as exc:
                undecided(cluster_cell, str(exc)[:500])
                continue
            if cluster.auth_token:  # in no pair's text and no saved log of this cluster
                token = cluster.auth_token

                def mask(first: int = len(pairs), token: str = token) -> None:
                    pairs[first:] = [_redacted(p, token) for p in pairs[first:]]

                stack.callback(raylogs.redact_tree, log_dir / cluster_cell.id, token)
                stack.callback(mask)
            with step(f"grid: cluster {cluster_cell.id} up"):
                ready = Probe(cluster, cluster.head).cluster(
                    "auto", nodes=2, timeout=timeouts.ready
                )
            nodes = [n.get("facts") or {} for n in ready.get("nodes", [])]
            if len(nodes) < 2:
                undecided(
                    cluster_cell,
                    str(ready.get("error") or f"{len(nodes)} of 2 nodes answered")[:500],
                )
                continue
            for i, nb_cell in enumerate(cells):
                if (nb_cell.id, cluster_cell.id) in proven:
                    pairs.append(proven[(nb_cell.id, cluster_cell.id)])
                    log(f"grid: {nb_cell.id} -> {cluster_cell.id}: from {pairs[-1].proven_by}")
                    continue
                pair = Pair(notebook=nb_cell.id, cluster=cluster_cell.id)
                with step(f"grid: notebook {nb_cell.id} -> cluster {cluster_cell.id}"):
                    client = cluster.add_client(nb_cell.tag(matrix.prefix, "notebook"), str(i))
                    try:
                        probe = Probe(cluster, client)
                        # The Ray Client and Jobs paths side by side (one waits on Ray
                        # Client's handshake, the other on a job), both before the driver
                        # path, which changes membership.
                        dashboard = f"http://{cluster.head_host}:8265"
                        with ThreadPoolExecutor(max_workers=1) as pool:
                            asked = pool.submit(probe.jobs, dashboard, timeouts.jobs)
                            r = probe.cluster(
                                f"ray://{cluster.head_host}:10001",
                                nodes=2,
                                timeout=timeouts.connect,
                                once=True,  # the head's probe above proved it up
                            )
                            jobs = asked.result()
                        pair.ray_client = ray_client_verdict(r)
                        pair.ray_jobs, pair.harness_jobs = jobs_verdicts(jobs, nodes[0])
                        # the client's own facts come with the Ray Client probe's answer
                        facts = r.get("client") or probe.facts(timeouts.facts)
                        pair.ray_driver = driver_verdict(cluster, client, timeouts)
                        pair.harness = judge(facts, nodes, matrix.grid)
                        if micro_only(facts, nodes):
                            pair.relaxed = relaxation(cluster, client, timeouts)
                    finally:
                        cluster.remove(client)
                log(
                    f"grid: {nb_cell.id} -> {cluster_cell.id}: harness {pair.harness.verdict}"
                    f" (Jobs path {pair.harness_jobs.verdict}), Ray Client "
                    f"{pair.ray_client.verdict}, driver {pair.ray_driver.verdict}, Jobs API "
                    f"{pair.ray_jobs.verdict}"
                )
                pairs.append(pair)
    return pairs


# --- outputs ------------------------------------------------------------------------------

SYMBOL = {COMPATIBLE: "✅", WARN: "⚠️", INCOMPATIBLE: "❌", UNDECIDED: "⛔"}
COLOUR = {COMPATIBLE: "#2e7d32", WARN: "#f9a825", INCOMPATIBLE: "#c62828", UNDECIDED: "#616161"}


def _redacted(pair: Pair, secret: str) -> Pair:
    """`pair` with `secret` masked in every text Ray or the harness gave it."""

    def verdict(v: Verdict) -> Verdict:
        return replace(
            v,
            message=redact(v.message, secret),
            reasons=redact(v.reasons, secret),
            warnings=redact(v.warnings, secret),
        )

    relaxed = pair.relaxed
    if relaxed is not None:
        relaxed = replace(
            relaxed,
            message=redact(relaxed.message, secret),
            roundtrips=redact(relaxed.roundtrips, secret),
        )
    return replace(
        pair,
        ray_client=verdict(pair.ray_client),
        ray_driver=verdict(pair.ray_driver),
        harness=verdict(pair.harness),
        ray_jobs=verdict(pair.ray_jobs),
        harness_jobs=verdict(pair.harness_jobs),
        relaxed=relaxed,
    )


def write(build: Path, pairs: Sequence[Pair], policy: GridPolicy) -> None:
    build.mkdir(parents=True, exist_ok=True)
    doc = {"policy": asdict(policy), "pairs": [asdict(p) for p in pairs]}
    write_atomic(build / "grid.json", json.dumps(doc, indent=1))
    write_atomic(build / "grid.md", markdown(pairs, policy))
    write_atomic(build / "grid.html", page(pairs, policy))


def _axes(pairs: Sequence[Pair]) -> tuple[list[str], list[str]]:
    return list(dict.fromkeys(p.notebook for p in pairs)), list(
        dict.fromkeys(p.cluster for p in pairs)
    )


def markdown(pairs: Sequence[Pair], policy: GridPolicy) -> str:
    notebooks, clusters = _axes(pairs)
    by = {(p.notebook, p.cluster): p for p in pairs}
    lines = [
        "# Compatibility grid: notebook (rows) x cluster (columns)",
        "",
        f"Harness policy: fail on {', '.join(policy.fail)}; warn on {', '.join(policy.warn)}.",
        "Each cell: the harness's verdict for Ray Client and driver (parity of the notebook"
        " with every node) and for the Jobs API (`JobSubmissionClient`: the job runs on the"
        " cluster's interpreter, so only the client's Ray version counts); then Ray's own"
        " verdict on each path: Ray Client (`ray://head:10001`), the driver (the client joins"
        ' as a 0-CPU node, then `ray.init(address="head:6379")`) and a job submitted to'
        " `http://head:8265`. `safe:` lists the paths a user of the pair can rely on.",
        "Clusters of a Ray with token authentication run with a token, and every notebook is"
        " given its cluster's token, as `test` does.",
        "Ray's verdicts: accepted; warned (connected, logged a version mismatch); rejected"
        ' (Ray\'s "Version mismatch" error); error (Ray failed with a message that names no'
        " version, e.g. a protocol error between Ray versions).",
        "",
        "| notebook \\ cluster | " + " | ".join(clusters) + " |",
        "|---|" + "---|" * len(clusters),
    ]
    for nb in notebooks:
        row = []
        for cl in clusters:
            p = by[(nb, cl)]
            row.append(
                f"{SYMBOL[p.harness.verdict]} {p.harness.verdict}, jobs "
                f"{SYMBOL[p.harness_jobs.verdict]} {p.harness_jobs.verdict} / "
                f"client {p.ray_client.verdict} / driver {p.ray_driver.verdict} / "
                f"jobs {p.ray_jobs.verdict} / safe: {', '.join(p.safe_paths) or 'none'}"
                + (" / from `test`" if p.proven_by else "")
            )
        lines.append(f"| {nb} | " + " | ".join(row) + " |")
    reused = [p for p in pairs if p.proven_by]
    if reused:
        lines += ["", "## Taken from `test`", ""]
        lines.append(
            "Not run again: `test` proved these pairs on the same images (a cell's notebook"
            " against its own cluster: Ray Client, driver and Jobs API paths, parity with"
            " every node). `grid --no-reuse` runs them too."
        )
        lines += [f"- {p.notebook} -> {p.cluster}: {p.proven_by}" for p in reused]
    lines += ["", "## Why", ""]
    for p in pairs:
        quiet = p.harness.verdict == COMPATIBLE and p.harness_jobs.verdict == COMPATIBLE
        if quiet and not p.ray_objects:
            continue
        lines.append(f"- **{p.notebook} -> {p.cluster}**: {'; '.join(p.harness.reasons)}")
        lines.append(f"  - Ray Client ({p.ray_client.verdict}): {p.ray_client.message[:300]}")
        lines.append(f"  - Ray driver ({p.ray_driver.verdict}): {str(p.ray_driver.message)[:300]}")
        if p.relaxed is not None:
            lines += relaxation_lines(p.relaxed)
        jobs_why = "; ".join(p.harness_jobs.reasons) or "same Ray"
        lines.append(
            f"  - Jobs API ({p.ray_jobs.verdict}; harness {p.harness_jobs.verdict}: "
            f"{jobs_why}): {p.ray_jobs.message[:300]}"
        )
    return "\n".join(lines) + "\n"


def relaxation_lines(r: Relaxation) -> list[str]:
    """What forcing the pair past Ray's micro check did, as markdown list lines."""
    verdict = "safe" if r.safe else "NOT safe"
    if r.joined:
        trips = ", ".join(f"{k} {'ok' if v == 'ok' else 'FAILED'}" for k, v in r.roundtrips.items())
        what = f"the driver joins; round trips: {trips or 'none ran'}"
    else:
        what = f"still refused: {r.message[:200]}"
    lines = [f"  - forced past the micro check with {RELAX_NAME}=minor ({verdict}): {what}"]
    lines += [f"    - {k}: {v[:300]}" for k, v in r.roundtrips.items() if v != "ok"]
    return lines


def page(pairs: Sequence[Pair], policy: GridPolicy) -> str:
    """A self-contained HTML heatmap: green compatible, amber warn, red incompatible."""
    notebooks, clusters = _axes(pairs)
    by = {(p.notebook, p.cluster): p for p in pairs}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in clusters)
    rows = []
    for nb in notebooks:
        cells = []
        for cl in clusters:
            p = by[(nb, cl)]
            verdict = p.harness.verdict
            tip = "\n".join(
                [
                    *p.harness.reasons,
                    f"Ray Client: {p.ray_client.message}",
                    f"Ray driver: {p.ray_driver.message}",
                    f"Jobs API: {p.ray_jobs.message}",
                    *(f"Jobs path: {r}" for r in p.harness_jobs.reasons),
                    *(relaxation_lines(p.relaxed) if p.relaxed else []),
                ]
            )
            cells.append(
                f'<td style="background:{COLOUR[verdict]}" title="{html.escape(tip)}">'
                f"<b>{verdict}</b><br>client: {html.escape(str(p.ray_client.verdict))}"
                f"<br>driver: {html.escape(str(p.ray_driver.verdict))}"
                f"<br>jobs: {html.escape(str(p.ray_jobs.verdict))} "
                f"({html.escape(str(p.harness_jobs.verdict))})"
                f"<br>safe: {html.escape(', '.join(p.safe_paths) or 'none')}"
                + (f"<br><i>from {html.escape(p.proven_by)}</i>" if p.proven_by else "")
                + "</td>"
            )
        rows.append(f"<tr><th>{html.escape(nb)}</th>{''.join(cells)}</tr>")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Ray compatibility grid</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #999; padding: .6em; text-align: center; }}
td {{ color: white; min-width: 12em; }}
th {{ background: #eee; }}
</style></head><body>
<h1>Ray compatibility grid</h1>
<p>Rows: notebook image. Columns: cluster (head + worker). Colour: the harness verdict
(fail on {html.escape(", ".join(policy.fail))}; warn on {html.escape(", ".join(policy.warn))}).
Hover a cell for the reasons and Ray's exact messages.</p>
<table><tr><th>notebook \\ cluster</th>{head}</tr>
{"".join(rows)}
</table></body></html>
"""
