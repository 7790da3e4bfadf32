"""Package-index validation: unknown Ray versions and missing wheels are refused by name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness import index, matrix
from harness.errors import MatrixError

FILES = [
    "ray-2.60.0-cp310-cp310-manylinux2014_x86_64.whl",
    "ray-2.60.0-cp311-cp311-manylinux2014_x86_64.whl",
    "ray-2.60.0-cp311-cp311-macosx_12_0_arm64.whl",
    "ray-2.60.0-cp311-cp311-manylinux2014_aarch64.whl",
    "ray-2.51.2-cp39-cp39-manylinux2014_x86_64.whl",
    "ray-2.51.2-cp311-cp311-manylinux2014_x86_64.whl",
    "ray-2.60.0.tar.gz",
]


def test_parse_keeps_linux_x86_64_cpython_wheels_only() -> None:
    assert index.parse_files(FILES) == {"2.60.0": {"cp310", "cp311"}, "2.51.2": {"cp39", "cp311"}}


def test_known_cells_pass(write_matrix: Callable[[str], Path]) -> None:
    m = matrix.load(write_matrix('ray: ["2.60.0", "2.51.2"]\npython: ["3.11.2"]\n'))
    index.check(m, m.cells, index.parse_files(FILES))


def test_unknown_ray_version_names_the_key_and_line(write_matrix: Callable[[str], Path]) -> None:
    m = matrix.load(write_matrix('python: ["3.11.2"]\nray:\n  - "2.60.0"\n  - "2.99.0"\n'))
    with pytest.raises(MatrixError) as info:
        index.check(m, m.cells, index.parse_files(FILES))
    assert info.value.key == "ray.1" and info.value.line == 4
    assert "Ray 2.99.0 is not on the package index" in str(info.value)


def test_missing_wheel_says_how_to_exclude(write_matrix: Callable[[str], Path]) -> None:
    m = matrix.load(write_matrix('ray: ["2.60.0"]\npython: ["3.9.2"]\n'))
    with pytest.raises(MatrixError) as info:
        index.check(m, m.cells, index.parse_files(FILES))
    message = str(info.value)
    assert "cell ray2.60.0-py3.9.2-cpu: Ray 2.60.0 publishes no cp39 wheel" in message
    assert 'exclude: [{ray: "2.60.0", python: "3.9.*"' in message
