"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def write_matrix(tmp_path: Path) -> Callable[[str], Path]:
    """Write a matrix file into a temporary directory and return its path."""

    def write(text: str) -> Path:
        path = tmp_path / "matrix.yaml"
        path.write_text(text)
        return path

    return write
