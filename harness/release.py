"""Commands after the test: the push gate, operator manifests and the CI job matrix."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from harness import k8s, matrix, registry
from harness.engine import Engine
from harness.errors import HarnessError
from harness.matrix import ROLES
from harness.paths import Paths
from harness.progress import log


def cmd_push(args: argparse.Namespace) -> int:
    m = matrix.load(args.matrix)
    cells, _ = matrix.select(m, args.only)
    paths = Paths.for_matrix(args.matrix, args.build_dir)
    target = registry.target(m)
    reports = args.report or [paths.build / "report.json"]
    results, conflicts = registry.load_reports(reports)
    engine = Engine()
    engine.ping()
    approved, refused = registry.gate(engine, m, cells, results, conflicts)
    for r in refused:
        log(f"push: refused {r}")
    cells_ok = sorted({a.cell.id for a in approved})
    log(f"push: {len(cells_ok)} cell(s) pass the gate, {len({r.cell for r in refused})} refused")
    for cid, note in sorted({(a.cell.id, a.note) for a in approved if a.note}):
        log(f"push: WARNING {cid}: {note} (gpu_e2e: optional in {m.path})")
    if args.dry_run:
        for a in approved:
            log(f"push: would push {a.local_tag} ({a.image_id[:19]}) to {target}")
        return 1 if refused else 0
    pushed, failures = registry.push(engine, target, approved, paths.build / "push")
    lock_path = paths.build / "images.lock.json"
    if pushed:
        registry.write_lock(lock_path, target, pushed)
        log(f"push: {len(pushed)} image(s) recorded in {lock_path}")
    if failures:
        raise HarnessError("; ".join(failures))
    if refused:
        print("push refused for: " + "; ".join(str(r) for r in refused), file=sys.stderr)
        return 1
    return 0


def _dump(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)


def cmd_manifests(args: argparse.Namespace) -> int:
    """Render, pinned by digest, a RayCluster per pushed cell and Vertex AI image refs.
    Everything is validated first: when anything is invalid, nothing is written."""
    m = matrix.load(args.matrix)
    paths = Paths.for_matrix(args.matrix, args.build_dir)
    lock = registry.read_lock(args.images_lock or paths.build / "images.lock.json")
    gpu_notes = {e.cell: e.gpu_e2e for e in lock.images if e.gpu_e2e and e.gpu_e2e != "passed"}
    out = paths.build / "deploy"
    problems: list[str] = []
    files: dict[Path, str] = {}
    by_id = {c.id: c for c in m.cells}
    for cell_id, images in sorted(lock.refs().items()):
        cell = by_id.get(cell_id)
        if cell is None:
            log(f"manifests: {cell_id} is in the images lock but not in {m.path}; skipped")
            continue
        missing = [r for r in ROLES if r not in images]
        if missing:
            problems.append(f"{cell_id}: no pushed {', '.join(missing)} image")
            continue
        note = gpu_notes.get(cell_id, "")
        rc = k8s.raycluster(cell, images, namespace=args.namespace, gpu_e2e=note)
        problems += k8s.validate(rc)
        d = out / cell_id
        files[d / "raycluster.yaml"] = (
            f"# {cell_id}: images pinned by digest from {lock.registry}\n"
            + (f"# WARNING: {note}\n" if note else "")
            + _dump([rc])
        )
        files[d / "vertex.json"] = json.dumps(k8s.vertex(cell, images, note), indent=1) + "\n"
    if problems:
        for p in problems:
            log(f"manifests: invalid: {p}")
        log("manifests: nothing written")
        return 1
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    log(f"manifests: {len(files) // 2} cell(s) rendered and validated in {out}")
    return 0


def cmd_matrix(args: argparse.Namespace) -> int:
    """The selected cells as data: a GitHub Actions job matrix with --github."""
    m = matrix.load(args.matrix)
    cells, _ = matrix.select(m, args.only)
    include = [
        {
            "cell": c.id,
            "only": f"ray={c.ray},python={c.python},variant={c.variant}",
            "variant": c.variant,
        }
        for c in cells
    ]
    if args.github:
        line = "cells=" + json.dumps({"include": include}, separators=(",", ":"))
        out = os.environ.get("GITHUB_OUTPUT")
        if out:
            try:
                with Path(out).open("a") as f:
                    f.write(line + "\n")
            except OSError as exc:
                raise HarnessError(
                    f"GITHUB_OUTPUT={out}: cannot append to it ({exc.strerror}); unset it "
                    "outside GitHub Actions"
                ) from None
        print(line)
    else:
        print(json.dumps(include, indent=1))
    if not include:
        raise HarnessError("no cell selected")
    return 0
