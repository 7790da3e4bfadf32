"""Which harness runs are alive, and who owns a build directory.

Every run holds a shared `flock` on `<runs dir>/<run id>.lock` for as long as its process
lives; the kernel drops it when the process ends, however it ends (SIGKILL included). So
`clean` can tell a crashed run's leftovers (nobody holds the lock) from a live run's
objects (somebody does) without guessing from timestamps or PIDs.

The runs dir is $HARNESS_RUNS_DIR, default `<tmp>/raycompat-runs-<uid>`: private to the
user (created 0700, and refused unless it is a real directory of theirs that nobody else
can write), because CI runs the harness as root and a predictable shared path in /tmp is
one another user could plant a symlink in. Lock files are opened without following
symlinks. `alive` also looks in the other users' runs dirs on this host (and the shared
`raycompat-runs` of harness versions before this one): a run whose lock is in a dir this
user cannot read counts as alive, so a user's `clean` never removes another user's live
run (root reads them all). A run on another host against the same engine is not visible
here; `clean` on a shared remote engine would treat its objects as leftovers.

A build directory is owned by one run at a time (an exclusive lock on `<build>/.lock`):
a second run that would write into it exits 2 and names the first.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import IO

from harness.errors import HarnessError

RUNS_ENV = "HARNESS_RUNS_DIR"
_HELD: list[IO[str]] = []  # open lock files: closing one would drop its lock


def runs_dir() -> Path:
    default = Path(tempfile.gettempdir()) / f"{_PREFIX}-{os.getuid()}"
    return Path(os.environ.get(RUNS_ENV) or default)


_PREFIX = "raycompat-runs"


def _private(folder: Path) -> Path:
    """`folder`, made owner-only if missing; HarnessError unless it is a real directory
    (not a symlink) of this user that no one else can write into or read."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(folder)
    except OSError as exc:
        raise HarnessError(
            f"the runs directory {folder} cannot be made ({exc.strerror}); set "
            f"{RUNS_ENV} to a directory of your own"
        ) from None
    problem = (
        "is not a directory (a symlink or a file)"
        if not stat.S_ISDIR(st.st_mode)
        else f"belongs to uid {st.st_uid}, not to you ({os.getuid()})"
        if st.st_uid != os.getuid()
        else f"is open to others (mode {stat.S_IMODE(st.st_mode):o}); it must be 700"
        if st.st_mode & 0o077
        else ""
    )
    if problem:
        raise HarnessError(
            f"the runs directory {folder} {problem}: remove it, or set {RUNS_ENV} to a "
            "private directory of your own"
        )
    return folder


def _open(path: Path, private: bool = False) -> IO[str]:
    """A lock file, created 0600 if missing, never through a symlink."""
    try:
        if private:
            _private(path.parent)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. --build-dir names a file
        why = "it is a file" if path.parent.is_file() else exc.strerror
        raise HarnessError(
            f"{path.parent} cannot be used as a directory ({why}): name a directory, or "
            "a path where one can be made"
        ) from None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        why = "it is a symlink" if exc.errno == errno.ELOOP else exc.strerror
        raise HarnessError(f"cannot open the lock file {path}: {why}") from None
    return os.fdopen(fd, "a+")


def hold_run(run_id: str) -> None:
    """Mark `run_id` alive until this process ends."""
    f = _open(runs_dir() / f"{run_id}.lock", private=True)
    fcntl.flock(f, fcntl.LOCK_SH)
    _HELD.append(f)


def _others() -> list[Path]:
    """The runs dirs of other users on this host, and the shared one of older versions."""
    if os.environ.get(RUNS_ENV):
        return []  # an explicit runs dir: the caller chose where runs meet
    mine = runs_dir()
    return sorted(p for p in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*") if p != mine)


def _held(path: Path) -> bool | None:
    """Whether someone holds the lock at `path`; None when there is none (a stale one is
    removed where this user may); True when it cannot be read (assume a live run)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except PermissionError:
        return True
    except OSError:  # a symlink or another odd file: not a lock of ours
        return None
    with os.fdopen(fd) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        with contextlib.suppress(OSError):
            path.unlink()  # nobody holds it: the run is over
        return False


def alive(run_id: str) -> bool:
    """True while some process holds `run_id`'s lock, in this user's runs dir or another's;
    also True when another user's runs dir cannot be read (it may hold that run)."""
    if "/" in run_id or run_id in ("", ".", ".."):
        return False
    for folder in [runs_dir(), *_others()]:
        try:
            found = _held(folder / f"{run_id}.lock")
        except PermissionError:
            return True
        if found is not None:
            return found
        if folder != runs_dir() and not os.access(folder, os.R_OK | os.X_OK):
            return True  # another user's private runs dir: it may hold this run
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
