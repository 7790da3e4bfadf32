"""Benchmark a push of one tested cell to a local registry (Debian's docker-registry on
127.0.0.1, started here), unsigned and then signed with a cosign key (signature, SBOM,
provenance and test report attestations, verified before the tags move), and unsigned with
`layer_compression: zstd`, each to a fresh repository so each uploads every blob. Prints
figures; asserts nothing. The local references the pushes pulled back are removed after.

    nox -s bench -- push
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import results
from common import ROOT, cpu_speed, harness, table

from harness.engine import Engine

REGISTRY = "/usr/bin/docker-registry"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _clean_scans(report: Path) -> None:
    """The matrix gates the push on a scanner report per image: an empty one, in Trivy's
    JSON, for each tested image (no scanner database is reachable here)."""
    scans = report.parent / "scans"
    scans.mkdir(exist_ok=True)
    for cell in json.loads(report.read_text())["cells"]:
        for role, image_id in (cell.get("tested_image_ids") or {}).items():
            doc = {"SchemaVersion": 2, "ArtifactName": f"{cell['id']}/{role}",
                   "Metadata": {"ImageID": image_id}, "Results": []}  # fmt: skip
            (scans / f"{cell['id']}-{role}.json").write_text(json.dumps(doc))


def main() -> None:
    speed = cpu_speed()
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="ray=2.60.0,python=3.11.2,variant=cpu")
    opts = parser.parse_args()
    only = ["--only", opts.only]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for command in ("build", "test"):
            _, rc = harness([command, *only], work / "build")
            if rc != 0:
                raise SystemExit(f"bench: {command} failed (exit {rc})")
        _clean_scans(work / "build" / "report.json")
        port = _free_port()
        (work / "registry.yml").write_text(
            f"version: 0.1\nstorage: {{filesystem: {{rootdirectory: {work}/data}}}}\n"
            f"http: {{addr: 127.0.0.1:{port}}}\nlog: {{level: warn}}\n"
        )
        registry = subprocess.Popen(
            [REGISTRY, "serve", str(work / "registry.yml")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            subprocess.run(
                ["cosign", "generate-key-pair"], cwd=work, check=True, capture_output=True,
                env={**os.environ, "COSIGN_PASSWORD": ""},
            )  # fmt: skip
            report = ["--report", str(work / "build" / "report.json")]
            os.environ["RAYCOMPAT_REGISTRY"] = f"127.0.0.1:{port}/unsigned"
            unsigned, rc_u = harness(["push", *only, *report], work / "push-unsigned")
            os.environ["RAYCOMPAT_REGISTRY"] = f"127.0.0.1:{port}/signed"
            os.environ["RAYCOMPAT_COSIGN_KEY"] = str(work / "cosign.key")
            os.environ["COSIGN_PASSWORD"] = ""
            signed, rc_s = harness(["push", *only, *report], work / "push-signed")
            del os.environ["RAYCOMPAT_COSIGN_KEY"]
            os.environ["RAYCOMPAT_REGISTRY"] = f"127.0.0.1:{port}/zstd"
            matrix = work / "zstd" / "matrix.yaml"
            matrix.parent.mkdir()
            matrix.write_text((ROOT / "matrix.yaml").read_text() + "\nlayer_compression: zstd\n")
            shutil.copy(ROOT / "vulnerability-exceptions.yaml", matrix.parent)
            zstd, rc_z = harness(
                ["push", "--matrix", str(matrix), *only, *report], work / "push-zstd"
            )
        finally:
            registry.terminate()
            registry.wait(timeout=30)
            Engine().untag_prefix(f"127.0.0.1:{port}/")  # what the pushes pulled back
    end = table(
        [
            ("push of one cell, unsigned (s)", f"{unsigned:.1f} (exit {rc_u})"),
            ("push of one cell, signed and attested (s)", f"{signed:.1f} (exit {rc_s})"),
            ("what signing adds (s)", f"{signed - unsigned:.1f}"),
            ("push of one cell, unsigned, zstd layers (s)", f"{zstd:.1f} (exit {rc_z})"),
        ],
        speed,
    )
    figures = {
        "push_s": round(unsigned, 1),
        "push_signed_s": round(signed, 1),
        "signing_added_s": round(signed - unsigned, 1),
        "push_zstd_s": round(zstd, 1),
    }
    rounds = [
        {"exit": rc_u, "seconds": round(unsigned, 1), "step": "push"},
        {"exit": rc_s, "seconds": round(signed, 1), "step": "push, signed"},
        {"exit": rc_z, "seconds": round(zstd, 1), "step": "push, zstd layers"},
    ]
    results.record("push", figures, rounds, (speed, end), {"only": opts.only})


if __name__ == "__main__":
    main()
