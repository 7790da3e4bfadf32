"""`diff OLD NEW`: what changed between two lock trees or two pushes (harness.diff)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness import diff


def run(args: argparse.Namespace, run_id: str) -> int:
    text, code = diff.run(Path(args.old), Path(args.new), args.patch)
    print(text, end="")
    return code
