"""`matrix`: the selected cells as data (with --github, a GitHub Actions job matrix)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from harness.commands import context
from harness.errors import HarnessError


def run(args: argparse.Namespace, run_id: str) -> int:
    """The selected cells as data: a GitHub Actions job matrix with --github."""
    cells = context(args, run_id, check_index=False).cells
    multi_arch = any(not c.native for c in cells)  # then a selector names the platform too
    include = [
        {
            "cell": c.id,
            "only": f"ray={c.ray},python={c.python},variant={c.variant}"
            + (f",platform={c.platform}" if multi_arch else ""),
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
