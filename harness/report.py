"""Run state shared by `build` and `test`, and the reports rendered from it.

`build/state.json` holds the latest result per cell; `build/report.json`, `report.md` and
`junit.xml` are re-rendered from it after every command, so they always agree.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from harness import pulls, vulns
from harness.errors import HarnessError
from harness.files import write_atomic
from harness.matrix import NATIVE_PLATFORM, Cell, Excluded
from harness.results import (
    ERROR,
    FAILED,
    PASSED,
    SKIPPED,
    WARNING,
    CellResult,
    CellStatus,
    Image,
)

SCHEMA = 2  # 2: checks carry image_id; statuses include error


@dataclass(frozen=True)
class Report:
    """One report.json, read back typed."""

    path: Path
    generated: str
    run_id: str
    cells: dict[str, CellResult]
    matrix: str = ""


def read(path: Path) -> Report:
    """The one reader of report.json (and state.json): HarnessError naming the file and
    the bad entry when it is missing or not what `write` produces."""
    if not path.is_file():
        raise HarnessError(f"{path}: no test report; run `nox -s build test` first")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or not isinstance(doc.get("cells"), list):
            raise ValueError("no list of cells")
        if doc.get("schema") != SCHEMA:
            raise ValueError(
                f"schema {doc.get('schema')!r}, this harness reads {SCHEMA}; test again"
            )
        cells = [CellResult.from_json(c) for c in doc["cells"]]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{path}: not a harness report ({exc})") from None
    return Report(
        path,
        str(doc.get("generated", "")),
        str(doc.get("run_id", "")),
        {c.id: c for c in cells},
        str(doc.get("matrix", "")),
    )


def load_state(path: Path) -> dict[str, CellResult]:
    """Last results per cell; an unreadable or older state starts afresh."""
    try:
        return read(path).cells if path.is_file() else {}
    except HarnessError:
        return {}


NOT_A_RESULT = (CellStatus.EXCLUDED, CellStatus.PENDING)


def merge(reports: Iterable[Report]) -> tuple[dict[str, CellResult], dict[str, str]]:
    """Cell results from several reports, e.g. one per CI shard: each shard lists the cells
    it did not run as `excluded`, which never hides another shard's result. Two real results
    for one cell must agree (status and tested image ids); otherwise the cell is a conflict,
    returned with the reason, and the gate refuses it."""
    results: dict[str, CellResult] = {}
    source: dict[str, Path] = {}
    conflicts: dict[str, str] = {}
    for rep in reports:
        for cid, r in rep.cells.items():
            old = results.get(cid)
            if old is None or (old.status in NOT_A_RESULT and r.status not in NOT_A_RESULT):
                results[cid], source[cid] = r, rep.path
            elif r.status not in NOT_A_RESULT and (
                (r.status, r.tested_image_ids) != (old.status, old.tested_image_ids)
            ):
                conflicts[cid] = (
                    f"conflicting results: {source[cid]} says {old.status}, {rep.path} says "
                    f"{r.status}" + ("" if r.status != old.status else " for other image ids")
                )
    return results, conflicts


def fresh(cell: Cell) -> CellResult:
    return CellResult(
        id=cell.id, ray=cell.ray, python=cell.python, variant=cell.variant, platform=cell.platform
    )


def excluded(items: Iterable[Excluded]) -> list[CellResult]:
    out = []
    for item in items:
        r = fresh(item.cell)
        r.status, r.detail = CellStatus.EXCLUDED, item.reason
        out.append(r)
    return out


def summary(cells: Iterable[CellResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in cells:
        counts[c.status] = counts.get(c.status, 0) + 1
    return counts


def write(
    build: Path,
    results: dict[str, CellResult],
    matrix: str,
    run_id: str,
    extra: Iterable[CellResult] = (),
) -> dict[str, Any]:
    """Persist state and render report.json, report.md and junit.xml."""
    build.mkdir(parents=True, exist_ok=True)
    cells = [*results.values(), *[e for e in extra if e.id not in results]]
    as_json = [c.to_json() for c in cells]  # the results' first, as state.json holds them
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "matrix": matrix,
        "run_id": run_id,
        "summary": summary(cells),
        "cells": as_json,
    }
    text = json.dumps(doc, indent=1)  # ~50 ms for 12 cells: encoded once where it can be
    if len(as_json) > len(results):
        state = json.dumps({**doc, "cells": as_json[: len(results)]}, indent=1)
    else:
        state = text
    write_atomic(build / "state.json", state)
    write_atomic(build / "report.json", text)
    write_atomic(build / "report.md", _markdown(build, cells, doc))
    write_atomic(
        build / "junit.xml", ET.tostring(junit(cells), encoding="utf-8", xml_declaration=True)
    )
    return doc


ICON = {
    PASSED: "✅",
    FAILED: "❌",
    SKIPPED: "⏭️",
    ERROR: "⛔",
    WARNING: "⚠️",
    CellStatus.EXCLUDED: "➖",
    CellStatus.BUILT: "🔨",
    CellStatus.NOT_VERIFIED: "❔",
    CellStatus.PENDING: "…",
}


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


def rerender(build: Path) -> None:
    """report.md again from report.json, with the pull sizes recorded since (`push`);
    HarnessError when report.json is not the harness's."""
    rep = read(build / "report.json")
    cells = list(rep.cells.values())
    doc = {
        "matrix": rep.matrix,
        "run_id": rep.run_id,
        "generated": rep.generated,
        "summary": summary(cells),
    }
    write_atomic(build / "report.md", _markdown(build, cells, doc))


def _markdown(build: Path, cells: list[CellResult], doc: dict[str, Any]) -> str:
    """report.md: the cells, with what push recorded beside them (pull sizes, and the
    vulnerability gate's findings on these very images)."""
    ids = {i.id for c in cells for i in c.images}
    return markdown(cells, doc, pulls.load(build)) + "".join(
        line + "\n" for line in vulns.markdown(build, ids)
    )


def _pull_line(cell: CellResult, known: dict[str, list[pulls.Layer]]) -> str:
    """The cell's pull sizes and shared layers, or why there are none."""
    if all(i.id in known for i in cell.images):
        by_role = {i.role: known[i.id] for i in cell.images}
        return f"What a node pulls (compressed layers, as pushed): {pulls.summary(by_role)}."
    return "Pull sizes: not measured; `push` measures them (compressed layers, as uploaded)."


def markdown(
    cells: list[CellResult],
    doc: dict[str, Any],
    known: dict[str, list[pulls.Layer]] | None = None,
) -> str:
    """The report as Markdown; `known`: compressed layers per image id (harness.pulls)."""
    known = known or {}

    def size(i: Image) -> str:
        pull = known.get(i.id)
        return _mb(i.size_bytes) + (f", pull {_mb(sum(s for _, s in pull))}" if pull else "")

    lines = [
        "# Ray image compatibility report",
        "",
        f"Matrix `{doc['matrix']}`, run `{doc['run_id']}`, generated {doc['generated']}.",
        "Summary: " + ", ".join(f"{v} {k}" for k, v in sorted(doc["summary"].items())),
        "",
        "| Cell | Ray | Python | Variant | Platform | Status | Checks | Images |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        checks = c.checks
        passed = sum(1 for k in checks if k.status == PASSED)
        skipped = sum(1 for k in checks if k.status == SKIPPED)
        images = "<br>".join(f"`{i.tag}` {size(i)}" for i in c.images) or "–"
        status = f"{ICON.get(c.status, '')} {c.status}"
        if c.status == CellStatus.EXCLUDED:
            status += f": {c.detail}"
        lines.append(
            f"| {c.id} | {c.ray} | {c.python} | {c.variant} | {platform_note(c.platform)} | "
            f"{status} | "
            f"{passed}/{len(checks)}{f' ({skipped} skipped)' if skipped else ''} | {images} |"
        )
    for c in cells:
        if not c.checks and not c.detail:
            continue
        lines += ["", f"## {c.id}", ""]
        if c.detail and c.status != CellStatus.EXCLUDED:
            lines += ["```", c.detail[-2000:], "```", ""]
        if c.status == CellStatus.NOT_VERIFIED:
            lines += [
                f"Not verified: what the cell is for was not proven ({', '.join(c.unproven())});"
                " a cell passes only when every required check passed.",
                "",
            ]
        if c.images:
            lines += [_pull_line(c, known), ""]
        ray_logs = sorted({str(k.data["ray_logs"]) for k in c.checks if k.data.get("ray_logs")})
        if ray_logs:
            lines += [f"Ray's session logs of every node: `{', '.join(ray_logs)}`", ""]
        aborted = {r: why for k in c.checks for r, why in k.data.get("ray_aborted", {}).items()}
        if aborted:
            lines += ["What Ray's logs say stopped a node:", ""]
            lines += [f"- {role}: {why}" for role, why in aborted.items()] + [""]
        if c.checks:
            lines += ["| Check | Status | Detail |", "|---|---|---|"]
            for k in c.checks:
                detail = brief(k.detail, 300).replace("|", "\\|")
                lines.append(f"| {k.name} | {ICON.get(k.status, '')} {k.status} | {detail} |")
    return "\n".join(lines) + "\n"


def brief(detail: str, limit: int) -> str:
    """`detail` on one line of at most `limit` characters. A longer one keeps its start
    (where a check puts its reason) and its last line, where a Python traceback or a log
    tail says what was raised, e.g. "deploy job FAILED: ... … AttributeError: ..."."""
    flat = " ".join(detail.split())
    if len(flat) <= limit:
        return flat
    lines = detail.strip().splitlines()
    last = " ".join(lines[-1].split()) if len(lines) > 1 else ""
    if not last:
        return flat[: limit - 1] + "…"
    if len(last) > limit // 2:
        last = last[: limit // 2 - 1] + "…"
    return f"{flat[: limit - len(last) - 3]} … {last}"


def platform_note(platform: str) -> str:
    """`linux/amd64 (native)`, `linux/arm64 (emulated)`: where the checks ran."""
    return f"{platform} ({'native' if platform == NATIVE_PLATFORM else 'emulated'})"


def junit(cells: list[CellResult]) -> ET.Element:
    root = ET.Element("testsuites", name="ray-image-harness")
    for c in cells:
        suite = ET.SubElement(root, "testsuite", name=c.id)
        checks = c.checks
        if c.status in (CellStatus.EXCLUDED, CellStatus.SKIPPED) or (c.detail and not checks):
            case = ET.SubElement(suite, "testcase", classname=c.id, name="cell")
            if c.status == CellStatus.FAILED:
                ET.SubElement(case, "failure", message=c.detail[:200]).text = c.detail
            else:
                ET.SubElement(case, "skipped", message=c.detail or c.status)
        if c.status == CellStatus.NOT_VERIFIED:
            case = ET.SubElement(suite, "testcase", classname=c.id, name="cell:verified")
            why = f"not verified: {', '.join(c.unproven())}"
            ET.SubElement(case, "failure", message=why).text = why
        for k in checks:
            case = ET.SubElement(suite, "testcase", classname=c.id, name=k.name)
            if k.status in (FAILED, ERROR):
                logs = k.data.get("logs")
                body = k.detail + ("\n\n" + json.dumps(logs, indent=1) if logs else "")
                ET.SubElement(case, "failure", message=brief(k.detail, 200)).text = body
            elif k.status == SKIPPED:
                ET.SubElement(case, "skipped", message=k.detail)
        suite.set("tests", str(len(suite)))
        suite.set("failures", str(sum(1 for e in suite if e.find("failure") is not None)))
        suite.set("skipped", str(sum(1 for e in suite if e.find("skipped") is not None)))
    return root
