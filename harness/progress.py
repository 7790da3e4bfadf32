"""Progress: rich on a terminal (a live bar over cells, log lines above it); plain
timestamped lines otherwise (CI logs, pipes). Safe to call from worker threads."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from harness.errors import HarnessError

_lock = threading.Lock()
_console: Any = None
_checked = False


def _rich_console() -> Any:
    """A rich Console for stderr when it is an interactive terminal, else None."""
    global _console, _checked
    if not _checked:
        _checked = True
        if sys.stderr.isatty() and not os.environ.get("CI") and os.environ.get("TERM") != "dumb":
            try:
                from rich.console import Console

                _console = Console(stderr=True, highlight=False)
            except ImportError:
                _console = None
    return _console


def log(message: str) -> None:
    console = _rich_console()
    if console is not None:
        console.log(message, _stack_offset=2)
        return
    stamp = time.strftime("%H:%M:%S")
    with _lock:
        print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


@contextmanager
def step(message: str) -> Iterator[dict[str, float]]:
    """Log the start and the duration of a step; yields a dict that receives `seconds`."""
    log(f"{message} ...")
    timing: dict[str, float] = {}
    start = time.monotonic()
    try:
        yield timing
    except BaseException as exc:
        timing["seconds"] = time.monotonic() - start
        # a harness error says what to do: say it here too, not only in the report
        why = f": {str(exc)[:400]}" if isinstance(exc, HarnessError) else ""
        log(f"{message}: failed after {timing['seconds']:.1f}s{why}")
        raise
    timing["seconds"] = time.monotonic() - start
    log(f"{message}: done in {timing['seconds']:.1f}s")


@contextmanager
def bar(description: str, total: int) -> Iterator[Callable[[], None]]:
    """A live progress bar over `total` units on a terminal; yields `advance()`.

    Without a terminal it yields a no-op: the per-unit log lines already say it."""
    console = _rich_console()
    if console is None:
        yield lambda: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda: progress.advance(task)
