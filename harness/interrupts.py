"""SIGINT and SIGTERM, as the CLI handles them: `Interrupted` is raised in the main thread,
wherever it is, and main removes what the run made, found by the run's label
(harness.cli). Calls that make an engine object (a network, a container, a volume) run
inside `making()`: once the run stops, none starts, and the cleanup first waits for those
in flight (`settle`). Without that, the engine made an object after the cleanup had
looked for it (measured: a cell's network, made by the cell's worker thread while main
cleaned up, left in 7 of 40 runs interrupted in the first seconds of `test`). In the main
thread an interrupt also waits for the call around it to end; a second one stops at once."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from types import FrameType

from harness import children
from harness.errors import EngineError


class Interrupted(BaseException):
    """SIGINT or SIGTERM. A BaseException, as KeyboardInterrupt is: `except Exception`
    (ours, the Docker SDK's, which would report an interrupt while it asks the engine's API
    version as "engine not reachable") lets it through to main's cleanup instead of
    swallowing it or turning it into an error."""

    def __init__(self, code: int) -> None:
        super().__init__(f"interrupted (exit {code})")
        self.code = code


_pending: list[int] = []  # a signal the main thread received inside making()
_depth = 0  # how many making() blocks the main thread is in
_in_flight = 0  # making() blocks running, in every thread
_settled = threading.Condition()


def handle(signum: int, frame: FrameType | None) -> None:
    """The handler `harness.cli.main` sets for SIGINT and SIGTERM."""
    if _depth and not _pending:
        _pending.append(signum)
        return
    raise Interrupted(128 + signum)


@contextlib.contextmanager
def making(what: str) -> Iterator[None]:
    """Around a call that makes an engine object: EngineError once the run is stopping;
    `settle` waits for it; in the main thread, an interrupt is raised when it ends (in
    place of whatever it raised)."""
    global _depth, _in_flight
    with _settled:
        if children.stopping():
            raise EngineError(f"{what} not started: the run is stopping")
        _in_flight += 1
    main = threading.current_thread() is threading.main_thread()
    _depth += main
    try:
        yield
    finally:
        _depth -= main
        with _settled:
            _in_flight -= 1
            _settled.notify_all()
        if main and not _depth and _pending:
            raise Interrupted(128 + _pending.pop())


def settle(timeout: float) -> bool:
    """Wait until no `making()` call runs (call it once `children.stop_all` has refused new
    ones); False when some still ran after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    with _settled:
        while _in_flight:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            _settled.wait(left)
    return True
