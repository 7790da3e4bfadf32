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
