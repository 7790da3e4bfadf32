"""Running `python -m harness` from the end-to-end tests, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from tests.conftest import ROOT


def harness(
    *args: str,
    run_id: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 2400,
) -> subprocess.CompletedProcess[str]:
    """Run the CLI with its own run id (or the given one); echo its log tail to stderr."""
    r = subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={
            **os.environ,
            "HARNESS_RUN_ID": run_id or "e2e" + uuid.uuid4().hex[:8],
            **(env or {}),
        },
    )
    sys.stderr.write(r.stderr[-6000:])
    return r
