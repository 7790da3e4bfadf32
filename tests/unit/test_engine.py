"""The engine layer's pure parts: stream framing, archives in and out, the reaper choice."""

from __future__ import annotations

import io
import struct
import tarfile
from typing import Any

import pytest
from testcontainers.core.config import testcontainers_config

from harness import engine as engine_module
from harness.backends.containers import use_reaper
from harness.engine import ChunkReader, Engine, _safe_members, demux, tar_of
from harness.errors import EngineError


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def test_demux_splits_stdout_and_stderr_in_order() -> None:
    raw = frame(1, b"a") + frame(2, b"E1") + frame(1, b"bc") + frame(2, b"\n")
    assert demux(raw) == ("abc", "E1\n")
    assert demux(raw + b"\x01\x00") == ("abc", "E1\n")  # a cut-off header is dropped


def test_tar_of_makes_shared_directories_writable_for_any_user() -> None:
    data = tar_of({".raycompat/probe.py": "print(1)", ".raycompat/x": b"\x00"})
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members[".raycompat"].isdir() and members[".raycompat"].mode == 0o1777
        f = tar.extractfile(members[".raycompat/probe.py"])
        assert f is not None and f.read() == b"print(1)"


def test_chunk_reader_reads_across_chunks() -> None:
    reader = io.BufferedReader(ChunkReader(iter([b"ab", b"", b"cde", b"f"])))
    assert reader.read(4) == b"abcd" and reader.read() == b"ef" and reader.read() == b""


def test_copies_out_keep_only_plain_files_below_the_top() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("logs/ok.txt", "logs/../../etc/passwd", "/abs", "other/x"):
            info = tarfile.TarInfo(name)
            tar.addfile(info, io.BytesIO(b""))
        link = tarfile.TarInfo("logs/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tar.addfile(link)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        assert [m.name for m in _safe_members(tar, "logs")] == ["logs/ok.txt"]


class Images:
    def __init__(self, present: bool) -> None:
        self.present = present

    def inspect(self, kind: str, ref: str) -> dict[str, Any] | None:
        return {"Id": "sha256:x"} if self.present and kind == "image" else None


@pytest.mark.parametrize(("present", "disabled"), [(True, False), (False, True)])
def test_reaper_only_where_its_image_is(
    monkeypatch: pytest.MonkeyPatch, present: bool, disabled: bool
) -> None:
    monkeypatch.delenv("TESTCONTAINERS_RYUK_DISABLED", raising=False)
    monkeypatch.setattr(testcontainers_config, "_ryuk_disabled", None)
    fake: Any = Images(present)
    use_reaper(fake)
    assert testcontainers_config.ryuk_disabled is disabled


def test_the_engine_connects_only_when_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """Constructing an Engine touches nothing: commands refuse bad input before Docker."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    engine = Engine(cli="/bin/true")
    with pytest.raises(Exception, match="Docker engine not reachable"):
        engine.ping()


def _fake_cli(tmp_path: Any, name: str, version: str, buildx: bool) -> tuple[str, Any]:
    """An executable answering `version` and `buildx version` like a docker CLI would,
    writing each call it gets to a log."""
    calls = tmp_path / f"{name}.calls"
    cli = tmp_path / name
    cli.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        f'if [ "$1" = version ]; then echo {version}; exit 0; fi\n'
        f'if [ "$1" = buildx ]; then exit {0 if buildx else 1}; fi\n'
        "exit 2\n"
    )
    cli.chmod(0o755)
    return str(cli), calls


@pytest.mark.parametrize(
    ("version", "buildx", "expected", "calls"),
    [
        ("20.10.24+dfsg1", False, True, 1),  # Debian's docker.io: its own BuildKit builder
        ("28.2.2", True, True, 2),  # a current CLI with the buildx plugin
        ("28.2.2", False, False, 2),  # a current CLI without it: cannot build
        ("17.06.0", False, False, 2),  # before BuildKit
    ],
)
def test_buildkit_is_found_with_one_call_where_the_version_says_so(
    tmp_path: Any, version: str, buildx: bool, expected: bool, calls: int
) -> None:
    from harness.engine import _has_buildkit

    cli, log = _fake_cli(tmp_path, "docker", version, buildx)
    assert _has_buildkit(cli) is expected
    assert len(log.read_text().splitlines()) == calls


def test_the_cli_is_looked_for_in_the_background_and_its_error_comes_on_use(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`look_for_cli` returns at once; `cli` then gives the CLI found, or the EngineError
    find_cli raised (a CLI that cannot build with BuildKit)."""
    monkeypatch.delenv("HARNESS_DOCKER", raising=False)
    good, _ = _fake_cli(tmp_path, "docker", "20.10.24+dfsg1", buildx=False)
    monkeypatch.setattr(engine_module, "find_cli", lambda: good)
    engine = Engine()
    engine.look_for_cli()
    assert engine.cli == good

    def none() -> str:
        raise EngineError("the docker CLI at x cannot build with BuildKit")

    monkeypatch.setattr(engine_module, "find_cli", none)
    engine = Engine()
    engine.look_for_cli()
    with pytest.raises(EngineError, match="cannot build with BuildKit"):
        _ = engine.cli


def test_a_forced_cli_is_checked_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_DOCKER", "/nonexistent/docker")
    with pytest.raises(EngineError, match="HARNESS_DOCKER=/nonexistent/docker"):
        Engine().look_for_cli()
