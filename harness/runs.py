"""Which harness runs are alive, and who owns a build directory.

Every run holds a shared `flock` on `<runs dir>/<run id>.lock` for as long as its process
lives; the kernel drops it when the process ends, however it ends (SIGKILL included). So
`clean` can tell a crashed run's leftovers (nobody holds the lock) from a live run's
objects (somebody does) without guessing from timestamps or PIDs. The runs dir is
$HARNESS_RUNS_DIR, default /tmp/raycompat-runs: runs on this host that share one Docker
engine see each other's locks. (A run on another host against the same engine is not
visible here; `clean` on a shared remote engine would treat its objects as leftovers.)

A build directory is owned by one run at a time (an exclusive lock on `<build>/.lock`):
a second run that would write into it exits 2 and names the first.
"""

from __future__ import annotations

import fcntl
import os
import sys
import tempfile
from pathlib import Path
from typing import IO

from harness.errors import HarnessError

RUNS_ENV = "HARNESS_RUNS_DIR"
_HELD: list[IO[str]] = []  # open lock files: closing one would drop its lock


def runs_dir() -> Path:
    return Path(os.environ.get(RUNS_ENV) or Path(tempfile.gettempdir()) / "raycompat-runs")


def _open(path: Path) -> IO[str]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. --build-dir names a file
        why = "it is a file" if path.parent.is_file() else exc.strerror
        raise HarnessError(
            f"{path.parent} cannot be used as a directory ({why}): name a directory, or "
            "a path where one can be made"
        ) from None
    try:
        return path.open("a+")
    except OSError as exc:
        raise HarnessError(f"cannot open the lock file {path}: {exc.strerror}") from None


def hold_run(run_id: str) -> None:
    """Mark `run_id` alive until this process ends."""
    f = _open(runs_dir() / f"{run_id}.lock")
    fcntl.flock(f, fcntl.LOCK_SH)
    _HELD.append(f)


def alive(run_id: str) -> bool:
    """True while some process holds `run_id`'s lock."""
    if "/" in run_id or run_id in ("", ".", ".."):
        return False
    path = runs_dir() / f"{run_id}.lock"
    if not path.is_file():
        return False
    with path.open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        path.unlink(missing_ok=True)  # nobody holds it: the run is over
        return False


def own_build_dir(build: Path, command: str) -> None:
    """Take `build` for this process, or exit 2 naming the run that has it."""
    f = _open(build / ".lock")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another harness run"
        f.close()
        raise HarnessError(
            f"{build} is in use by {holder}; wait for it to finish, or give this run its own "
            "--build-dir"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} (`{command}`, {' '.join(sys.argv[1:])[:200]})\n")
    f.flush()
    _HELD.append(f)
