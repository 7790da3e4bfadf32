"""The engine layer against the real engine: exec bounded inside and cancellable from the
host, input and environment handed over, copies and throwaway containers."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import ExecWaitStrategy

from harness import labels, matrix
from harness.backends.containers import use_reaper
from harness.base import _load_rootfs, config_created
from harness.base import ensure as ensure_base
from harness.engine import Engine
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> str:
    m = matrix.load(ROOT / "matrix.yaml")
    cell = next(c for c in m.cells if c.python == "3.11.2")
    return ensure_base(Engine(), m, cell, tmp_path_factory.mktemp("rootfs")).ref


@pytest.fixture
def box(base: str) -> Iterator[str]:
    """An idle container of the base image, removed afterwards (label sweep as the net)."""
    run_id = "eng" + uuid.uuid4().hex[:8]
    engine = Engine()
    use_reaper(engine)
    container = DockerContainer(
        base,
        command="sleep infinity",
        labels={labels.MANAGED: "test", labels.RUN: run_id},
        network_mode="none",
    ).waiting_for(ExecWaitStrategy(["true"]).with_startup_timeout(30))
    with container:
        yield str(container.get_wrapped_container().name)
    engine.remove_labelled({labels.RUN: run_id})
    assert engine.ids("container", {labels.RUN: run_id}) == []


def test_exec_feeds_input_and_environment(box: str) -> None:
    r = Engine().exec(
        box,
        ["sh", "-c", 'read line; echo "$line $GREETING"; echo oops >&2; exit 3'],
        input="hello\n",
        env={"GREETING": "world"},
        timeout=30,
    )
    assert (r.returncode, r.stdout, r.stderr) == (3, "hello world\n", "oops\n")


def test_exec_is_bounded_inside_the_container(box: str) -> None:
    """The SDK's exec has no timeout: `timeout` inside ends the process itself."""
    engine = Engine()
    r = engine.exec(box, ["sleep", "300"], timeout=2)
    assert r.returncode == 124
    left = engine.exec(box, ["sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"], timeout=10)
    assert "sleep 300" not in left.stdout, left.stdout


def test_exec_is_cancelled_from_the_host(box: str) -> None:
    """The watchdog's cancel ends the wait at once, long before the timeout."""
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    started = time.monotonic()
    r = Engine().exec(box, ["sleep", "300"], timeout=300, cancel=cancel)
    waited = time.monotonic() - started
    assert r.returncode == 124 and "cancelled" in r.stderr
    print(f"cancelled after {waited:.1f}s")
    assert waited < 300


def test_copy_out_a_directory(box: str, tmp_path: Path) -> None:
    engine = Engine()
    engine.exec(box, ["sh", "-c", "mkdir -p /tmp/d/sub && echo x > /tmp/d/sub/f"], timeout=10)
    assert engine.copy_out(box, "/tmp/d", tmp_path / "copy")
    assert (tmp_path / "copy" / "sub" / "f").read_text() == "x\n"
    assert not engine.copy_out(box, "/tmp/not-there", tmp_path / "none")
    assert not (tmp_path / "none").exists()


def test_run_once_hands_over_files_and_is_bounded(base: str) -> None:
    engine = Engine()
    r = engine.run_once(base, ["cat", "/tmp/.raycompat/note"], files={"note": "hi"}, timeout=30)
    assert (r.returncode, r.stdout) == (0, "hi")
    slow = engine.run_once(base, ["sleep", "300"], timeout=3)
    assert slow.returncode == 124
    assert engine.ids("container", {labels.MANAGED: "scratch"}) == []  # both removed


def test_a_rootfs_loads_as_the_same_image_every_time(tmp_path: Path) -> None:
    """A Debian base is `docker load`ed with a config dated SOURCE_DATE_EPOCH: the same
    rootfs is the same image id, made twice (`docker import` dated it now, so a rebuilt
    base was a new image and every image on it was rebuilt), and its one layer is the
    tarball unchanged."""
    m = matrix.load(ROOT / "matrix.yaml")
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        data = b"a rootfs\n"
        info = tarfile.TarInfo("etc/raycompat-e2e")
        info.size, info.mtime = len(data), m.source_date_epoch
        tar.addfile(info, io.BytesIO(data))
    digest = hashlib.sha256(rootfs.read_bytes()).hexdigest()
    engine = Engine()
    refs = [f"localhost/raycompat-e2eload/base:{n}-{uuid.uuid4().hex[:8]}" for n in (1, 2)]
    try:
        for ref in refs:
            _load_rootfs(engine, rootfs, digest, ref, "amd64", {labels.MANAGED: "base"}, m)
        first, second = (engine.inspect("image", ref) or {} for ref in refs)
        assert first["Id"] == second["Id"]
        assert first["RootFS"]["Layers"] == [f"sha256:{digest}"]
        assert first["Created"].startswith(config_created(m).rstrip("Z"))
        assert first["Architecture"] == "amd64"
    finally:
        for ref in refs:
            engine.untag(ref, force=True)


@pytest.fixture
def user_image(base: str) -> Iterator[str]:
    """The base as an image whose USER is 1000:100 (like the notebook image), removed after."""
    engine = Engine()
    tag = f"localhost/raycompat-test/user-{uuid.uuid4().hex[:8]}:t"
    repo, version = tag.rsplit(":", 1)
    cid = engine.create(base, ["true"], labels_={labels.RUN: "eng-secrets"})
    try:
        engine.client.api.commit(cid, repository=repo, tag=version, changes=["USER 1000:100"])
    finally:
        engine.remove("container", cid)
    yield tag
    engine.client.api.remove_image(tag, force=True)


def test_a_secret_is_readable_by_the_images_user_only(user_image: str) -> None:
    """probe --image's Ray token: a file 0400 in a 0700 directory, both the image user's,
    never in the environment or the world-writable staging directory."""
    from harness.engine import SECRETS

    script = (
        f"stat -c '%a %u:%g' {SECRETS} {SECRETS}/auth_token; cat {SECRETS}/auth_token; "
        "echo; env | grep -c s3cr3t || true; ls /tmp/.raycompat 2>/dev/null | wc -l"
    )
    r = Engine().run_once(
        user_image, ["sh", "-c", script], secrets={"auth_token": "s3cr3t-value"}, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:3] == ["700 1000:100", "400 1000:100", "s3cr3t-value"]
    assert r.stdout.split()[-2:] == ["0", "0"]  # not in env, nothing staged world-readable


def test_a_secret_for_an_image_with_a_named_user_is_refused(base: str) -> None:
    from harness.engine import owner_of
    from harness.errors import EngineError

    assert owner_of("") == (0, 0) and owner_of("1000:100") == (1000, 100)
    assert owner_of("1000") == (1000, 1000) and owner_of("jovyan") is None
    engine = Engine()
    cid = engine.create(base, ["true"], labels_={labels.RUN: "eng-secrets"})
    tag = f"localhost/raycompat-test/named-{uuid.uuid4().hex[:8]}"
    try:
        engine.client.api.commit(cid, repository=tag, tag="t", changes=["USER nobody"])
    finally:
        engine.remove("container", cid)
    try:
        with pytest.raises(EngineError, match="a numeric USER"):
            engine.run_once(f"{tag}:t", ["true"], secrets={"t": "x"}, timeout=30)
    finally:
        engine.client.api.remove_image(f"{tag}:t", force=True)
