"""Progress lines on stderr: timestamped, one line per step, readable in CI logs."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


@contextmanager
def step(message: str) -> Iterator[dict[str, float]]:
    """Log the start and the duration of a step; yields a dict that receives `seconds`."""
    log(f"{message} ...")
    timing: dict[str, float] = {}
    start = time.monotonic()
    try:
        yield timing
    except BaseException:
        timing["seconds"] = time.monotonic() - start
        log(f"{message}: failed after {timing['seconds']:.1f}s")
        raise
    timing["seconds"] = time.monotonic() - start
    log(f"{message}: done in {timing['seconds']:.1f}s")
