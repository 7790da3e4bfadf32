"""Child processes (docker build, mmdebstrap, kubectl, kind, uv, pip, credential helpers)
that an interrupt can stop all at once: every child process of the host side starts here.

`run()` is subprocess.run with a timeout and registration, so that `stop_all()` (called
on SIGINT/SIGTERM) can terminate every child still running and give it a moment to clean
up (mmdebstrap unmounts its chroot on SIGTERM).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence

from harness.errors import HarnessError

_LIVE: set[subprocess.Popen[str]] = set()
_LIVE_LOCK = threading.Lock()
_STOPPING = threading.Event()


class Stopped(Exception):
    """The run is stopping (interrupted): no new child processes."""


def stopping() -> bool:
    return _STOPPING.is_set()


def run(
    cmd: Sequence[str],
    *,
    timeout: float,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
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
    try:
        try:
            out, err = proc.communicate(input, timeout=timeout)
            return proc.returncode, out, err
        except subprocess.TimeoutExpired:
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


def bounded(
    cmd: Sequence[str],
    *,
    timeout: float,
    what: str,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[int, str, str]:
    """`run`, with a timeout or an interrupt said as a HarnessError naming `what` (exit 2
    for the user, no traceback); OSError (no such program) is left to the caller."""
    try:
        return run(cmd, timeout=timeout, input=input, env=env)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"{what}: `{cmd[0]}` did not finish in {timeout:g} s") from None
    except Stopped as exc:
        raise HarnessError(f"{what}: {exc}") from None


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
