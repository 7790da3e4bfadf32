"""The image catalog's pages from an images lock, its SBOMs and its reports: every pushed
tag with its facts, the pairs that may talk, the lines to copy; values from the files are
escaped (a hand-edited lock cannot inject markup)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness import catalog, matrix, sbom
from harness.registry import ImagesLock, Pushed
from harness.results import PASSED, CellResult, CellStatus, Check

REG = "localhost:5000/raycompat"


def pushed(cell: str, role: str, python: str, ray: str, digest: str) -> Pushed:
    return Pushed(
        cell=cell, ray=ray, python=python, variant="cpu", role=role,
        tag=f"{REG}/ray-{role}:{cell}", digest=digest, ref=f"{REG}/ray-{role}@{digest}",
        image_id="sha256:" + "1" * 64, pushed_at="2026-12-06T08:00:00Z",
    )  # fmt: skip


def lock() -> ImagesLock:
    images = []
    for n, (cell, python, ray) in enumerate(
        [
            ("ray2.60.0-py3.11.2-cpu", "3.11.2", "2.60.0"),
            ("ray2.60.0-py3.13.5-cpu", "3.13.5", "2.60.0"),
        ]
    ):
        for k, role in enumerate(("head", "worker", "notebook")):
            images.append(pushed(cell, role, python, ray, "sha256:" + f"{n}{k}" * 32))
    return ImagesLock(REG, "2026-12-06T08:00:00Z", tuple(images))


def test_pages_list_every_tag_the_pairs_and_the_lines_to_copy(tmp_path: Path) -> None:
    lk = lock()
    head = lk.images[0]
    facts = {
        "python": "3.11.2",
        "dpkg": {"libssl3": "3.0.15-1~deb12u1"},
        "dpkg_arch": {"libssl3": "amd64"},
        "pip_freeze": ["ray==2.60.0", "numpy==2.3.1"],
    }
    cell = matrix.Cell(
        "2.60.0", "3.11.2", matrix.Variant.CPU, matrix.BaseSpec("debian", "bookworm")
    )
    path = sbom.pushed_path(tmp_path, head.digest)
    path.parent.mkdir(parents=True)
    path.write_text(sbom.document(cell, "head", head.digest, head.tag, facts, 0))
    result = CellResult(head.cell, "2.60.0", "3.11.2", "cpu", status=CellStatus.PASSED)
    result.test_checks = [Check("client:parity", PASSED), Check("jobs:submit", PASSED)]
    result.build_checks = [Check("image:head:python", PASSED), Check("image:worker:python", PASSED)]
    rows = catalog.rows(lk, tmp_path, {head.cell: (result, "2026-12-06T07:59:00Z")})
    assert [r.image.tag for r in rows] == [e.tag for e in lk.images]  # cell, then role
    first = next(r for r in rows if r.image == head)
    assert first.packages == {
        "ray": "2.60.0",
        "numpy": "2.3.1",
        "cpython": "3.11.2",
        "libssl3": "3.0.15-1~deb12u1",
    }
    assert first.passed == ["image:head:python", "client:parity", "jobs:submit"]
    html_path, md_path = catalog.write(tmp_path / "catalog", lk, rows)
    page, md = html_path.read_text(), md_path.read_text()
    for e in lk.images:
        assert f'data-tag="{e.tag}"' in page and f"`{e.tag}`" in md and e.digest in md
    # the grid: each notebook may talk to its own micro's cluster only
    notebooks, clusters, ok = catalog.grid(lk)
    assert ok == {(a, b): a == b for a in notebooks for b in clusters}
    assert md.count("✅") == 2 + 1 and md.count("❌") == 2 + 1  # legend line has one of each
    assert f"RayCluster headGroupSpec image: {head.ref}" in md
    assert f"Kubeflow notebook image: {lk.images[2].ref}" in page


def test_hostile_values_are_escaped(tmp_path: Path) -> None:
    lk = lock()
    evil = pushed(
        'x"><script>alert(1)</script>', "head", "3.11.2|x", "2.60.0", "sha256:" + "e" * 64
    )
    lk = ImagesLock('r"<b>', lk.updated, (evil,))
    page = catalog.page(lk, catalog.rows(lk, tmp_path, {}))
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert page.count("<script>") == 1  # the page's own filter only
    md = catalog.markdown(lk, catalog.rows(lk, tmp_path, {}))
    assert "3.11.2\\|x" in md


def test_the_pushed_sbom_feeds_the_key_packages_only_when_kept(tmp_path: Path) -> None:
    lk = lock()
    rows = catalog.rows(lk, tmp_path, {})
    assert all(r.packages == {} and r.passed == [] and r.tested == "" for r in rows)
    md = catalog.markdown(lk, rows)
    row = next(line for line in md.splitlines() if lk.images[0].tag in line)
    assert row.count("| – |") == 2  # no key packages, not tested: said, not left blank


def test_zstd_layers_are_named_with_who_can_pull_them(tmp_path: Path) -> None:
    gzip = lock()
    assert catalog.ZSTD_NOTE not in catalog.markdown(gzip, catalog.rows(gzip, tmp_path, {}))
    images = tuple(
        dataclasses.replace(e, layers="zstd" if e.cell.startswith("ray2.60.0-py3.13") else "gzip")
        for e in gzip.images
    )
    mixed = ImagesLock(REG, gzip.updated, images)
    rows = catalog.rows(mixed, tmp_path, {})
    md, page = catalog.markdown(mixed, rows), catalog.page(mixed, rows)
    assert catalog.ZSTD_NOTE in md and catalog.ZSTD_NOTE in page
    by_tag = {e.tag: line for e in images for line in md.splitlines() if f"`{e.tag}`" in line}
    for e in images:
        assert f"linux/amd64; {e.layers} layers" in by_tag[e.tag]
