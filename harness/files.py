"""Files the harness writes and reads back: written whole or not at all.

A file is written beside its final name and renamed over it, so an interrupted run, a full
disk or a crash leaves the previous file (or none), never a truncated one that the next
run would read back as a lock, a report or a cache.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace `path` with `data` (text is written as UTF-8) in one rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.partial")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
