"""The benchmarks' results file, and the benchmarks page (docs/benchmarks.md) made from it.

Every benchmark run appends one record to `benchmarks/results.json` (commit it): which
benchmark, the commit it measured (and whether the tree had uncommitted changes), when,
the machine's speed at the start and the end (`common.cpu_speed`), every round's exit
code and seconds, and its figures by key. The page's tables are generated from the newest
record of each benchmark, and one plot per figure over every recorded run (SVG, made with
matplotlib, in docs/img/bench/):

    python benchmarks/results.py            # rewrite the page's generated section and plots
    python benchmarks/results.py --check    # exit 1 when the page differs from the file

tests/unit/test_bench_results.py runs the check, so a figure typed into the page by hand,
or a results file committed without regenerating, fails the tests. (The check compares the
page and that each plot it shows exists, not the SVG bytes, which depend on matplotlib's
version.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.json"
PAGE = ROOT / "docs" / "benchmarks.md"
PLOTS = ROOT / "docs" / "img" / "bench"
BEGIN = (
    "<!-- benchmarks: generated from benchmarks/results.json by "
    "`python benchmarks/results.py`; do not edit -->"
)
END = "<!-- /benchmarks -->"

Figure = float | int | str | None
# What each benchmark reports, in the order of its table: (key, what it is, unit, goal)
FIGURES: dict[str, list[tuple[str, str, str, str]]] = {
    "cell": [
        ("cold_build_s", "cold build: base + 3 images + structure checks", "s", ""),
        ("noop_build_s", "no-op build, all cached", "s", "≤ 1 s"),
        ("test_median_s", "end-to-end test, CLI wall time, median", "s", "≤ 20 s"),
        ("test_worst_s", "end-to-end test, CLI wall time, worst", "s", "≤ 28 s"),
        ("inside_median_s", "cluster up to last check, inside the harness, median", "s", ""),
        ("runs", "test runs", "", ""),
        ("not_passed", "runs that did not pass (flakes)", "", "0"),
        ("size_head_mb", "head image size", "MB", ""),
        ("size_notebook_mb", "notebook image size", "MB", ""),
        ("pull_head_mb", "head pull size, gzip layers", "MB", ""),
        ("pull_worker_mb", "worker pull size, gzip layers", "MB", ""),
        ("pull_notebook_mb", "notebook pull size, gzip layers", "MB", "≤ 160 MB"),
        ("pull_notebook_zstd_mb", "notebook pull size, zstd layers (opt-in)", "MB", "≤ 160 MB"),
    ],
    "matrix": [
        ("cells", "cells", "", ""),
        ("cold_build_s", "cold build: bases + images + checks", "s", ""),
        ("warm_build_s", "warm build, all cached", "s", ""),
        ("noop_build_s", "no-op build", "s", "≤ 1 s"),
        ("test_round_median_s", "test of every cell, wall per round, median", "s", ""),
        ("warm_build_and_test_s", "warm build + test (first round)", "s", "≤ 4 min"),
        ("cell_median_s", "one cell end to end, over all cells and rounds, median", "s", ""),
        ("cell_worst_s", "one cell end to end, worst", "s", ""),
        ("grid_s", "compatibility grid", "s", "≤ 150 s"),
        ("cell_runs", "cell runs", "", ""),
        ("not_passed", "cell runs that did not pass (flakes)", "", "0"),
        ("pull_notebook_max_mb", "largest notebook pull, gzip layers", "MB", "≤ 160 MB"),
        (
            "pull_notebook_zstd_max_mb",
            "largest notebook pull, zstd layers (opt-in)",
            "MB",
            "≤ 160 MB",
        ),
    ],
    "fresh": [
        ("cells", "cells", "", ""),
        ("build_s", "fresh clone: nox -s build, downloads included", "s", ""),
        ("test_s", "fresh clone: nox -s test", "s", ""),
        ("total_s", "fresh clone: build + test", "s", "≤ 9 min"),
        ("noop_build_s", "then a no-op build of the whole matrix", "s", "≤ 2 s"),
        ("not_passed", "cells that did not pass", "", "0"),
    ],
    "push": [
        ("push_s", "push of one cell to a local registry, unsigned", "s", ""),
        ("push_signed_s", "the same, signed and attested, verified", "s", ""),
        ("signing_added_s", "what signing and attesting add", "s", "≤ 15 s"),
        ("push_zstd_s", "push of one cell, unsigned, zstd layers (opt-in)", "s", ""),
    ],
}
TITLES = {
    "cell": "One cell (`nox -s bench`)",
    "matrix": "The default matrix (`nox -s bench -- matrix`)",
    "fresh": "A new user's first run (`nox -s bench -- fresh`)",
    "push": "Push of one cell, signed or not (`nox -s bench -- push`)",
}


def _git(*args: str) -> str:
    r = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else ""


def _dirty() -> str:
    """Uncommitted changes to tracked files, the results file aside (an earlier bench's
    record not yet committed is not a change to what is measured)."""
    results = RESULTS.relative_to(ROOT).as_posix()
    return _git("status", "--porcelain", "--untracked-files=no", "--", ".", f":!{results}")


def load(path: Path = RESULTS) -> list[dict[str, Any]]:
    """Every recorded run, oldest first; [] when there is no file yet."""
    if not path.is_file():
        return []
    doc = json.loads(path.read_text(encoding="utf-8"))
    runs: list[dict[str, Any]] = doc["runs"]
    return runs


def record(
    bench: str,
    figures: Mapping[str, Figure],
    rounds: Sequence[Mapping[str, Any]],
    speed: tuple[float, float],
    details: Mapping[str, Any] | None = None,
    path: Path = RESULTS,
    measured: str = "",
) -> dict[str, Any]:
    """Append one run to the results file (written whole: beside it, then renamed)."""
    unknown = set(figures) - {key for key, *_ in FIGURES[bench]}
    if unknown:
        raise ValueError(f"{bench}: figures not in FIGURES: {sorted(unknown)}")
    # `measured`: the commit a bench measured in a clone of its own (never dirty); else
    # this checkout's HEAD and whether its tree had changes
    run = {
        "bench": bench,
        "commit": measured or _git("rev-parse", "--short=12", "HEAD"),
        "dirty": False if measured else bool(_dirty()),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cores": os.cpu_count(),
            "loop_s_start": round(speed[0], 3),
            "loop_s_end": round(speed[1], 3),
        },
        "rounds": [dict(r) for r in rounds],
        "figures": dict(figures),
        "details": dict(details or {}),
    }
    runs = [*load(path), run]
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps({"schema": 1, "runs": runs}, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    print(f"bench: recorded in {path} ({bench}, commit {run['commit']})")
    return run


def _value(value: Figure, unit: str) -> str:
    if value is None:
        return "–"
    return f"{value} {unit}".strip()  # rounded when recorded


def _series(runs: Sequence[Mapping[str, Any]], bench: str, key: str) -> dict[str, list[Any]]:
    """A figure's recorded values over time, one series per measured cell (or one)."""
    out: dict[str, list[Any]] = {}
    for r in runs:
        value = r["figures"].get(key)
        if r["bench"] == bench and isinstance(value, (int, float)) and not isinstance(value, bool):
            label = str(r["details"].get("cell") or bench)
            out.setdefault(label, []).append((r["finished"], value, r["commit"][:7]))
    return out


def plotted(runs: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(bench, key, what, file name) of every figure with at least one recorded number."""
    return [
        (bench, key, what, f"{bench}-{key}.svg")
        for bench in TITLES
        for key, what, _, _ in FIGURES[bench]
        if _series(runs, bench, key)
    ]


def plot(runs: Sequence[Mapping[str, Any]], out: Path = PLOTS) -> list[Path]:
    """One SVG per plotted figure: its value at each recorded run, per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "raycompat-bench"  # stable ids: the same data, same file
    plt.rcParams["svg.fonttype"] = "none"  # text as text: small files, readable diffs
    out.mkdir(parents=True, exist_ok=True)
    written = []
    units = {key: unit for figs in FIGURES.values() for key, _, unit, _ in figs}
    for bench, key, what, name in plotted(runs):
        fig, ax = plt.subplots(figsize=(6, 2.6))
        for label, points in sorted(_series(runs, bench, key).items()):
            xs = [p[0][:16].replace("T", " ") for p in points]
            ax.plot(xs, [p[1] for p in points], marker="o", label=label)
            for x, (_, y, commit) in zip(xs, points, strict=True):
                ax.annotate(commit, (x, y), fontsize=6, xytext=(2, 3), textcoords="offset points")
        ax.set_title(what, fontsize=9)
        ax.set_ylabel(units.get(key) or "count", fontsize=8)
        ax.tick_params(axis="x", labelrotation=30, labelsize=6)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_ylim(bottom=0)
        if len(_series(runs, bench, key)) > 1:
            ax.legend(fontsize=6)
        fig.tight_layout()
        path = out / name
        fig.savefig(path, format="svg", metadata={"Date": None})
        plt.close(fig)
        written.append(path)
    return written


def render(runs: Sequence[Mapping[str, Any]]) -> str:
    """The page's generated section: the newest run of each benchmark as a table, and each
    figure's plot over every recorded run."""
    lines = [BEGIN, ""]
    shown = plotted(runs)
    for bench, title in TITLES.items():
        mine = [r for r in runs if r["bench"] == bench]
        lines += [f"## {title}", ""]
        if not mine:
            lines += ["Not recorded yet.", ""]
            continue
        # the newest run of each measured cell (one cell's bench names it), and of the runs
        # that only built (`matrix --rounds 0`) beside those that tested
        groups: dict[str, list[Mapping[str, Any]]] = {}
        for r in mine:
            label = str(r["details"].get("cell") or ("" if r["rounds"] else "builds only"))
            groups.setdefault(label, []).append(r)
        for group in groups.values():
            lines += _table(bench, group[-1], group[:-1])
        plots = [(what, name) for b, _, what, name in shown if b == bench]
        if plots:
            lines += [f"### Over time ({len(mine)} recorded runs)", ""]
            lines += [f"![{what}](img/bench/{name})" for what, name in plots] + [""]
    return "\n".join([*lines, END])


def _table(
    bench: str, run: Mapping[str, Any], earlier: Sequence[Mapping[str, Any]] = ()
) -> list[str]:
    """`run`'s figures; a figure it did not measure (a skipped step) is taken from the
    newest of the `earlier` runs of its group that did, named with its commit and date."""
    lines = [f"Cell `{run['details']['cell']}`.", ""] if run["details"].get("cell") else []
    if not run["rounds"]:
        lines += ["Builds only, no test round (`--rounds 0`).", ""]
    m = run["machine"]
    dirty = " with uncommitted changes" if run["dirty"] else ""
    lines += [
        f"Commit `{run['commit']}`{dirty}, finished {run['finished']}; the machine's loop "
        f"(lower is faster): {m['loop_s_start']} s at the start, {m['loop_s_end']} s at "
        f"the end, {m['cores']} cores. Rounds' exit codes: "
        + (", ".join(str(r["exit"]) for r in run["rounds"]) or "none")
        + ".",
        "",
        "| figure | measured | goal |",
        "|---|---|---|",
    ]
    for key, what, unit, goal in FIGURES[bench]:
        value = run["figures"].get(key)
        if value is not None:
            lines.append(f"| {what} | {_value(value, unit)} | {goal} |")
            continue
        older = next((r for r in reversed(earlier) if r["figures"].get(key) is not None), None)
        if older is not None:
            then = f"not measured in this run; commit `{older['commit']}`, {older['finished']}"
            lines.append(f"| {what} | {_value(older['figures'][key], unit)} ({then}) | {goal} |")
        elif key in run["figures"]:
            lines.append(f"| {what} | {_value(None, unit)} | {goal} |")
    lines.append("")
    if run["details"].get("grid_pairs"):
        lines += [
            f"The grid's {run['details']['grid_pairs']} pairs: "
            f"{run['details'].get('grid_pairs_from_test', 0)} taken from the test round "
            "(same images), the others run.",
            "",
        ]
    warned = run["details"].get("warnings")
    if warned:  # a list (one cell's bench) or by cell
        items = warned.items() if isinstance(warned, dict) else [("", warned)]
        lines += [
            "Build checks that warned (not counted as flakes: what the Debian mirror or the "
            "vulnerability data said of the inputs that day):",
            "",
            *[f"- {f'{cell}: ' if cell else ''}{'; '.join(why)}" for cell, why in items],
            "",
        ]
    cells = run["details"].get("cells")
    tested = bool(run["rounds"])  # a builds-only run has no test time (recorded as 0 before)
    if cells:
        lines += [
            "| cell | status | test s | head MB | notebook MB | pull head MB | pull notebook MB "
            "| zstd: pull notebook MB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in cells:
            lines.append(
                f"| {c['id']} | {c['status']} | "
                f"{_value(c.get('test_s') if tested else None, '')} | "
                f"{_value(c.get('size_head_mb'), '')} | "
                f"{_value(c.get('size_notebook_mb'), '')} | "
                f"{_value(c.get('pull_head_mb'), '')} | "
                f"{_value(c.get('pull_notebook_mb'), '')} | "
                f"{_value(c.get('pull_notebook_zstd_mb'), '')} |"
            )
        lines.append("")
    profile = run["details"].get("profile")
    if profile:
        lines += _profile(profile)
    return lines


def _profile(p: Mapping[str, Any]) -> list[str]:
    """The profiled run (benchmarks/cpu_profile.py) as two tables: steps, process kinds."""
    capacity = (p.get("cores") or 1) * p["wall_s"]
    busy = round(100 * p["host_cpu_s"] / capacity) if capacity else 0
    lines = [
        "Where a run's time went (one more run after the timed ones, profiled by "
        "`benchmarks/cpu_profile.py`): "
        f"{p['wall_s']} s wall; the host was busy {p['host_cpu_s']} CPU-s of "
        f"{p.get('cores')} cores x {p['wall_s']} s ({busy} %); the processes seen account "
        f"for {p['processes_cpu_s']} CPU-s. Steps that overlap share the host: their CPU "
        "is not additive.",
        "",
        "| step | starts at s | wall s | host CPU-s during it |",
        "|---|---|---|---|",
        *[
            f"| {s['step']} | {s['start_s']} | {s['wall_s']} | {s['host_cpu_s']} |"
            for s in p["steps"]
        ],
        "",
        "| process kind | serves | processes | CPU-s | share |",
        "|---|---|---|---|---|",
    ]
    total = p["processes_cpu_s"] or 1
    for k in p["by_kind"]:
        share = round(100 * k["cpu_s"] / total)
        lines.append(
            f"| {k['kind']} | {k['serves']} | {k['processes']} | {k['cpu_s']} | {share} % |"
        )
    return [*lines, ""]


def section(page: str) -> str:
    """The generated section of the page's text (markers included)."""
    start, end = page.find(BEGIN), page.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{PAGE.name}: no generated benchmarks section ({BEGIN} ... {END})")
    return page[start : end + len(END)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page differs")
    opts = parser.parse_args(argv)
    text = PAGE.read_text(encoding="utf-8")
    runs = load()
    want = render(runs)
    have = section(text)
    if opts.check:
        missing = [name for *_, name in plotted(runs) if not (PLOTS / name).is_file()]
        if have != want or missing:
            print(f"{PAGE.name}: the benchmark tables or plots differ from {RESULTS.name}; "
                  "run `python benchmarks/results.py`", file=sys.stderr)  # fmt: skip
            return 1
        return 0
    PAGE.write_text(text.replace(have, want), encoding="utf-8")
    for path in plot(runs):
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
