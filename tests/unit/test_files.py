"""Files written whole or not at all (harness.files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.files import write_atomic


def test_a_file_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    write_atomic(path, "first\n")
    write_atomic(path, b"second\n")
    assert path.read_bytes() == b"second\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_write_that_fails_leaves_the_previous_file_and_no_partial_one(tmp_path: Path) -> None:
    """What an interrupt or a full disk does mid-write: here the text cannot be encoded
    after the file was opened, which a plain write_text would have left empty."""
    path = tmp_path / "runtime.txt"
    write_atomic(path, "ray==2.60.0\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(path, "ray==2.60.0\n\udc80")
    assert path.read_text() == "ray==2.60.0\n"
    assert [p.name for p in tmp_path.iterdir()] == ["runtime.txt"]


def test_the_bytes_and_the_rename_reach_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Power loss: the data is fsynced before the rename, the directory after it."""
    import os
    import stat

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(a: object, b: object) -> None:
        events.append("rename")
        real_replace(a, b)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_atomic(tmp_path / "state.json", "{}\n")
    assert events == ["fsync file", "rename", "fsync dir"]


def test_a_partial_file_planted_as_a_symlink_is_not_followed(tmp_path: Path) -> None:
    import os
    import threading

    target = tmp_path / "elsewhere"
    target.write_text("keep\n")
    path = tmp_path / "report.json"
    planted = tmp_path / f".report.json.{os.getpid()}-{threading.get_ident()}.partial"
    planted.symlink_to(target)
    with pytest.raises(OSError):
        write_atomic(path, "new\n")
    assert target.read_text() == "keep\n" and not path.exists()
