"""`manifests`: KubeRay RayCluster, RayJob and RayService and Vertex AI image refs per
pushed cell, by digest."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from harness import crds, k8s, policy, registry
from harness.commands import context
from harness.errors import HarnessError
from harness.files import write_atomic
from harness.matrix import ROLES
from harness.progress import log


def _dump(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)


def run(args: argparse.Namespace, run_id: str) -> int:
    """Render, pinned by digest, a RayCluster, a parity RayJob and a RayService (with its
    application's ConfigMap) per pushed cell, and Vertex AI image refs for the cells that
    target Vertex AI.
    Everything is validated first: when anything is invalid, nothing is written."""
    their_crds = crds.load(args.crd or [])  # bad files: exit 2 before anything is rendered
    ctx = context(args, run_id, check_index=False)
    m, paths = ctx.matrix, ctx.paths
    lock = registry.read_lock(args.images_lock or paths.build / "images.lock.json")
    gpu_notes = {e.cell: e.gpu_e2e for e in lock.images if e.gpu_e2e and e.gpu_e2e != "passed"}
    platforms = {
        e.cell: ", ".join(f"{p.platform} ({p.proven})" for p in e.platforms)
        for e in lock.images
        if e.platforms
    }
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
        job = k8s.rayjob(cell, images, namespace=args.namespace, gpu_e2e=note)
        service = k8s.rayservice(cell, images, namespace=args.namespace, gpu_e2e=note)
        problems += [p for obj in (rc, job, *service) for p in k8s.validate(obj)]
        problems += [
            p
            for obj in (rc, job, *service)
            if obj["kind"] in their_crds
            for p in crds.validate(obj, their_crds[obj["kind"]])
        ]
        d = out / cell_id
        header = (
            f"# {cell_id}: images pinned by digest from {lock.registry}\n"
            + (f"# platforms: {platforms[cell_id]}\n" if cell_id in platforms else "")
            + (f"# WARNING: {note}\n" if note else "")
        )
        files[d / "raycluster.yaml"] = header + _dump([rc])
        files[d / "rayjob.yaml"] = header + _dump([job])
        files[d / "rayservice.yaml"] = header + _dump(service)
        # Only for cells that target Vertex AI: the gate pushed them after their head and
        # worker passed `vertex:contract` (Vertex's documented list, harness/contracts.py).
        if "vertex" in cell.targets:
            files[d / "vertex.json"] = json.dumps(k8s.vertex(cell, images, note), indent=1) + "\n"
    if args.policy_key and args.policy_identity:
        raise HarnessError("--policy-key or --policy-identity: one of them")
    if args.policy_key or args.policy_identity:
        try:
            pem = args.policy_key.read_text(encoding="utf-8") if args.policy_key else ""
        except OSError as exc:
            raise HarnessError(f"--policy-key {args.policy_key}: {exc.strerror}") from None
        if args.policy_key and "BEGIN PUBLIC KEY" not in pem:
            raise HarnessError(f"--policy-key {args.policy_key}: not a PEM public key")
        cip = policy.cluster_image_policy(lock, pem, args.policy_identity or "")
        problems += [f"ClusterImagePolicy: {p}" for p in policy.problems(cip)]
        files[out / "policy" / "clusterimagepolicy.yaml"] = (
            f"# admits {lock.registry}'s ray-* images only signed, with a passed test report\n"
            + _dump([cip])
        )
    if problems:
        for p in problems:
            log(f"manifests: invalid: {p}")
        log("manifests: nothing written")
        return 1
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)
    cells = len({path.parent for path in files if path.parent.name != "policy"})
    log(f"manifests: {cells} cell(s) rendered and validated in {out}")
    if args.crd:
        checked = ", ".join(f"{k} ({c.path})" for k, c in sorted(their_crds.items()))
        log(f"manifests: checked against the CRDs given: {checked}")
        unchecked = sorted(set(k8s.SCHEMAS) - set(their_crds))
        if unchecked:
            log(f"manifests: no CRD given for {', '.join(unchecked)}: not checked against one")
    return 0
