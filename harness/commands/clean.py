"""`clean`: remove what runs that are no longer alive left behind, and nothing else.

- Containers, networks, volumes and temporary images carry `io.raycompat.run=<run id>`,
  which only the harness sets when it creates them. Objects of a run whose process is gone
  (see `runs`) are removed; a live run's are kept.
- kind clusters named `raycompat-<run id>`: likewise, only those of dead runs.
- `--images`: images the harness built (role images and Debian bases), untagged by the
  very tags the harness gives them. A user's image built FROM ours inherits our labels but
  not our tags, so it stays, and so does any other tag on one of our images. Then the
  Debian bases no tag names any more (`base.replaced`).
- The build directory's staging areas (`context/`, `rootfs/`), unless a live run owns it.
"""

from __future__ import annotations

import argparse
import shutil
from collections import Counter
from collections.abc import Mapping

from harness import labels, runs
from harness.backends import kube
from harness.base import drop_replaced
from harness.engine import Engine
from harness.errors import HarnessError
from harness.paths import Paths


def harness_tags(tags: list[str], found: Mapping[str, str]) -> list[str]:
    """The tags of an image that are the names the harness gave it, judged from its labels:
    `<prefix>/ray-<role>:<version>` for role images, `<prefix>/base:debian-<suite>-py<micro>`
    for bases. A derived image's own names (`me/notebook:latest`) are not among them."""
    role, version = found.get(labels.ROLE), found.get(labels.OCI_VERSION)
    source, python = found.get(labels.BASE_SOURCE, ""), found.get(labels.PYTHON)
    wanted: list[str] = []
    if found.get(labels.MANAGED) == "image" and role and version:
        wanted.append(f"/ray-{role}:{version}")
    if found.get(labels.MANAGED) == "base" and source.startswith("debian:") and python:
        wanted.append(f"/base:debian-{source[len('debian:') :]}-py{python}")
    return [t for t in tags if any(t.endswith(w) for w in wanted)]


def dead_runs(engine: Engine) -> dict[str, Counter[str]]:
    """Run ids with objects in the engine whose run is over, and what each left (by kind)."""
    found: dict[str, Counter[str]] = {}
    for kind in ("container", "network", "volume", "image"):
        for run_id in engine.label_values(kind, labels.RUN).values():
            found.setdefault(run_id, Counter())[kind] += 1
    return {rid: kinds for rid, kinds in found.items() if not runs.alive(rid)}


def remove_images(engine: Engine) -> int:
    """Untag every image the harness built, by the tags it gave them; the count removed."""
    removed = 0
    for image_id in engine.ids("image", {labels.MANAGED: ""}):
        info = engine.inspect("image", image_id) or {}
        image_labels = (info.get("Config") or {}).get("Labels") or {}
        if image_labels.get(labels.RUN):
            continue  # a run's temporary image: removed with its run
        tags = harness_tags(list(info.get("RepoTags") or []), image_labels)
        if tags:
            removed += sum(engine.untag(tag) for tag in tags)
    return removed


def run(args: argparse.Namespace, run_id: str) -> int:
    paths = Paths.for_matrix(args.matrix, args.build_dir)
    engine = Engine()
    engine.ping()
    counts: Counter[str] = Counter()
    dead = dead_runs(engine)
    for run_id in dead:
        removed = engine.remove_labelled({labels.RUN: run_id}, images=True)
        counts.update({k: n for k, n in removed.items() if n})
    live = sorted({rid for rid in _run_ids(engine) if rid not in dead})
    kind_clusters = kube.delete_leftover_kind_clusters(keep=runs.alive)
    counts["kind cluster"] += len(kind_clusters)
    if args.images:
        counts["image tag"] += remove_images(engine)
        counts["untagged base image"] += drop_replaced(engine)
    print(
        f"removed leftovers of {len(dead)} finished run(s): "
        + (", ".join(f"{n} {k}(s)" for k, n in sorted(counts.items()) if n) or "nothing")
    )
    if live:
        print(f"kept the objects of {len(live)} live run(s): {', '.join(live)}")
    try:
        runs.own_build_dir(paths.build, "clean")
    except HarnessError as exc:
        print(f"kept {paths.build}'s staging areas: {exc}")
        return 0
    for sub in ("context", "rootfs", "repro"):
        shutil.rmtree(paths.build / sub, ignore_errors=True)
    return 0


def _run_ids(engine: Engine) -> set[str]:
    return {
        rid
        for kind in ("container", "network", "volume")
        for rid in engine.label_values(kind, labels.RUN).values()
    }
