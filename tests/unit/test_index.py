"""Package-index validation: unknown Ray versions and missing wheels are refused by name."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import index, matrix
from harness.errors import HarnessError, MatrixError

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


def test_known_cells_pass_and_the_same_cells_without_their_wheel_do_not(
    write_matrix: Callable[[str], Path],
) -> None:
    """The index proves each cell: the same matrix passes with every cell's wheel listed
    and is refused, naming the cell, once one wheel is gone (a check that accepted
    anything would pass the first half only)."""
    m = matrix.load(write_matrix('ray: ["2.60.0", "2.51.2"]\npython: ["3.11.2"]\n'))
    index.check(m, m.cells, index.parse_files(FILES))  # raises on a cell it cannot prove
    for gone in (
        "ray-2.60.0-cp311-cp311-manylinux2014_x86_64.whl",
        "ray-2.51.2-cp311-cp311-manylinux2014_x86_64.whl",
    ):
        wheels = index.parse_files([f for f in FILES if f != gone])
        with pytest.raises(MatrixError) as info:
            index.check(m, m.cells, wheels)
        ray = gone.split("-")[1]
        assert f"cell ray{ray}-py3.11.2-cpu: Ray {ray} publishes no cp311 wheel" in str(info.value)


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


@pytest.fixture
def index_url() -> Iterator[str]:
    """A real HTTP index that lists FILES for Ray (PEP 691 JSON)."""
    body = json.dumps({"files": [{"filename": f} for f in FILES]}).encode()

    class Index(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/ray/" else 404)
            self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.mark.parametrize("cut", ["", '{"2.60.0": ["cp3', '["2.60.0"]', '{"2.60.0": "cp311"}'])
def test_a_cache_that_is_not_one_is_asked_again(tmp_path: Path, index_url: str, cut: str) -> None:
    """A cached listing cut short (an interrupted run, a full disk) was a JSONDecodeError
    traceback on every command for a day; it is now asked again and written whole."""
    (tmp_path / "ray-wheels.json").write_text(cut)
    wheels = index.fetch(tmp_path, index_url)
    assert wheels == index.parse_files(FILES)
    assert index.fetch(tmp_path, "http://127.0.0.1:9") == wheels  # from the cache now
    assert [p.name for p in tmp_path.iterdir()] == ["ray-wheels.json"]


def test_a_broken_cache_and_no_index_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "ray-wheels.json").write_text('{"2.60.0": ["cp3')
    with pytest.raises(HarnessError) as raised:
        index.fetch(tmp_path, "http://127.0.0.1:9")
    assert "cannot ask http://127.0.0.1:9 which Ray versions exist" in str(raised.value)
