"""Child processes (docker, mmdebstrap) that an interrupt can stop all at once.

`run()` is subprocess.run with a timeout, an optional cancel event, and registration, so
that `stop_all()` (called on SIGINT/SIGTERM) can terminate every child still running and
give it a moment to clean up (mmdebstrap unmounts its chroot on SIGTERM).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence

_LIVE: set[subprocess.Popen[str]] = set()
_LIVE_LOCK = threading.Lock()
_STOPPING = threading.Event()


class Stopped(Exception):
    """The run is stopping (interrupted): no new child processes."""


class Cancelled(Exception):
    """The caller's cancel event was set while the child ran."""


def stopping() -> bool:
    return _STOPPING.is_set()


def run(
    cmd: Sequence[str],
    *,
    timeout: float,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    cancel: threading.Event | None = None,
    during_stop: bool = False,
) -> tuple[int, str, str]:
    """(returncode, stdout, stderr); subprocess.TimeoutExpired after `timeout` seconds."""
    if _STOPPING.is_set() and not during_stop:
        raise Stopped(f"not starting {cmd[0]}: the run is stopping")
    proc = subprocess.Popen(
        list(cmd),
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    with _LIVE_LOCK:
        _LIVE.add(proc)
    deadline = time.monotonic() + timeout
    try:
        feed = input
        while True:
            try:
                out, err = proc.communicate(feed, timeout=0.5 if cancel else timeout)
                return proc.returncode, out, err
            except subprocess.TimeoutExpired:
                feed = None  # communicate() already sent the input
                if cancel is not None and cancel.is_set():
                    proc.kill()
                    proc.communicate()
                    raise Cancelled(f"{cmd[0]} cancelled") from None
                if time.monotonic() > deadline:
                    proc.kill()
                    proc.communicate()
                    raise
    except BaseException:
        if proc.poll() is None:  # interrupted while waiting: let the child clean up
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        raise
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(proc)


def stop_all(grace: float = 30) -> None:
    """Refuse new children (except `during_stop` ones), SIGTERM the running ones and wait
    up to `grace` seconds for them, then SIGKILL what is left."""
    _STOPPING.set()
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in procs:
        proc.terminate()
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
