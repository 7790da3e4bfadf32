"""Scanner reports for the push gate's e2e tests: Trivy's JSON format (tests/data/scans),
made for the very images a report says were tested. No scanner database is reachable
here; the workflow runs the real Trivy before its push."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "scans"


def write_scans(report: Path, template: str = "clean-trivy.json", into: Path | None = None) -> Path:
    """A report per tested image of `report` (scans/ beside it unless `into`), from
    `template` with the image id put in; returns the directory."""
    into = into or report.parent / "scans"
    into.mkdir(parents=True, exist_ok=True)
    text = (DATA / template).read_text()
    for cell in json.loads(report.read_text())["cells"]:
        for role, image_id in (cell.get("tested_image_ids") or {}).items():
            ref = f"{cell['id']}/{role}"
            (into / f"{cell['id']}-{role}.json").write_text(
                text.replace("IMAGE_ID", image_id).replace("IMAGE_REF", ref)
            )
    return into
