"""File-by-file comparison of two image filesystems."""

from __future__ import annotations

import io
import tarfile

from harness.reproduce import _entries, compare


def tar(files: dict[str, bytes], mtime: int) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            t.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_timestamps_are_ignored_content_is_not() -> None:
    a = dict(_entries(tar({"etc/a": b"1", "etc/b": b"2"}, mtime=1)))
    b = dict(_entries(tar({"etc/a": b"1", "etc/b": b"2"}, mtime=999)))
    assert compare(a, b) == []
    c = dict(_entries(tar({"etc/a": b"1", "etc/b": b"X", "etc/c": b""}, mtime=1)))
    assert compare(a, c) == ["~ /etc/b: content", "+ /etc/c (only in the rebuild)"]
    assert compare(c, a) == ["~ /etc/b: content", "- /etc/c (missing from the rebuild)"]


def test_mode_and_owner_changes_are_named() -> None:
    a = {"/x": ("file", "0o644", "0:0", "1", "h")}
    b = {"/x": ("file", "0o755", "1000:1000", "1", "h")}
    assert compare(a, b) == ["~ /x: mode 0o644->0o755, owner 0:0->1000:1000"]
