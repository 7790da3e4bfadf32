"""Files the harness writes and reads back: written whole or not at all.

A file is written beside its final name, flushed to disk (fsync), renamed over it, and the
directory's entry flushed too, so an interrupted run, a full disk, a crash or a power loss
leaves the previous file (or none), never a truncated or empty one that the next run would
read back as a lock, a report or a cache.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace `path` with `data` (text is written as UTF-8) in one rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.partial")
    raw = data if isinstance(data, bytes) else data.encode("utf-8")
    try:
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
        )
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())  # the bytes on disk before the name points at them
        os.replace(tmp, path)
        _sync_dir(path.parent)  # and the rename itself
    finally:
        tmp.unlink(missing_ok=True)


def _sync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return  # a directory that cannot be opened for reading still got the rename
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory (the rename stands)
    finally:
        os.close(fd)
