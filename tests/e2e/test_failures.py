"""Failure behaviour against a real Docker engine: a failing cell does not stop the others,
a cluster that never forms fails in bounded time with logs, a node killed mid-test is
named, interrupts and `clean` leave nothing behind, and too little disk is refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.engine import Engine
from harness.labels import MANAGED as LABEL_MANAGED
from harness.labels import RUN as LABEL_RUN
from tests.conftest import ROOT
from tests.e2e.cli import harness

pytestmark = pytest.mark.e2e
CELL = "ray2.60.0-py3.11.2-cpu"
CPU_ONLY = ["--only", "ray=2.60.0,python=3.11.2,variant=cpu"]
WHEELHOUSE = {"HARNESS_WHEELHOUSE": str(ROOT / ".cache" / "wheelhouse")}


def harness_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


def run(
    *args: str, run_id: str, env: dict[str, str] | None = None, timeout: float = 1500
) -> subprocess.CompletedProcess[str]:
    return harness(*args, run_id=run_id, env=env, timeout=timeout)


def start(*args: str, run_id: str) -> subprocess.Popen[str]:
    """The harness in the background, its progress lines readable from stderr."""
    return subprocess.Popen(
        harness_cmd(*args),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HARNESS_RUN_ID": run_id},
    )


def new_run_id() -> str:
    return "fail" + uuid.uuid4().hex[:8]


def assert_nothing_left(run_id: str) -> None:
    engine = Engine()
    for kind in ("container", "network", "volume", "image"):
        assert engine.ids(kind, {LABEL_RUN: run_id}) == [], f"{kind}s of run {run_id} left"


def copy_project(dest: Path, prefix: str) -> Path:
    """matrix.yaml, locks/ and images/ under another tag prefix (nothing clobbers ours)."""
    for name in ("locks", "images"):
        shutil.copytree(ROOT / name, dest / name)
    text = (
        (ROOT / "matrix.yaml")
        .read_text()
        .replace("prefix: localhost/raycompat", f"prefix: {prefix}")
    )
    assert f"prefix: {prefix}" in text
    (dest / "matrix.yaml").write_text(text)
    return dest / "matrix.yaml"


def alias_images(prefix: str, suffix: str, roles: tuple[str, ...]) -> None:
    """The default project's built images, tagged again under a test prefix."""
    for role in roles:
        Engine().tag(f"localhost/raycompat/ray-{role}:{suffix}", f"{prefix}/ray-{role}:{suffix}")


def derive_image(tmp_path: Path, base: str, line: str, tag: str) -> None:
    """`tag`: `base` with one more Dockerfile line (a deliberately broken image)."""
    ctx = tmp_path / f"ctx-{uuid.uuid4().hex[:6]}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base}\n{line}\n")
    Engine().run(
        ["build", "--network", "none", "-t", tag, str(ctx)],
        env={"DOCKER_BUILDKIT": "1"},
        timeout=300,
    )


def remove_prefix(prefix: str) -> None:
    """Untag everything under `prefix` by name (removing by image id would also drop the
    real tags that share those images)."""
    engine = Engine()
    for name in tags_under(prefix):
        engine.untag(name)


def tags_under(prefix: str) -> list[str]:
    """Every tag in the engine under `prefix`."""
    found = Engine().client.api.images(filters={"reference": f"{prefix}/*"})
    return [tag for image in found for tag in image.get("RepoTags") or [] if tag.startswith(prefix)]


@pytest.fixture(scope="module")
def default_images() -> None:
    r = run("build", *CPU_ONLY, run_id=new_run_id())
    assert r.returncode == 0, r.stderr[-2000:]


def report(build_dir: Path) -> dict[str, dict[str, Any]]:
    doc = json.loads((build_dir / "report.json").read_text())
    return {c["id"]: c for c in doc["cells"]}


def checks(cell: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in cell["checks"]}


# --- 2. one cell's build fails, the others build and test -----------------------------------


def test_a_failing_cell_does_not_stop_the_others(tmp_path: Path) -> None:
    """Its matrix also takes `kubeflow` out of the targets, so the healthy cell's notebook
    runs parity.ipynb in the cluster's notebook container (elsewhere: the Kubeflow one)."""
    prefix = "localhost/raycompat-e2efail"
    matrix = copy_project(tmp_path, prefix)
    text = matrix.read_text()
    assert "\n  kubeflow: all\n" in text
    matrix.write_text(text.replace("\n  kubeflow: all\n", "\n  kubeflow: none\n"))
    dockerfile = tmp_path / "images" / "Dockerfile"
    text = dockerfile.read_text()
    anchor = "FROM runtime AS runtime-gpu\n"
    assert anchor in text
    dockerfile.write_text(
        text.replace(anchor, anchor + 'RUN echo "deliberate failure" >&2; exit 3\n')
    )
    run_id = new_run_id()
    only = ["--matrix", str(matrix), "--only", "ray=2.60.0,python=3.11.2", "--jobs", "2"]
    try:
        built = run("build", *only, run_id=run_id, env=WHEELHOUSE)
        assert built.returncode == 1
        cells = report(tmp_path / "build")
        gpu = cells["ray2.60.0-py3.11.2-cu128"]
        assert gpu["status"] == "failed"
        failure = checks(gpu)["build:head"]
        assert failure["status"] == "failed"
        assert "deliberate failure" in failure["detail"] and "exit code: 3" in failure["detail"]
        assert (tmp_path / "build" / "logs" / gpu["id"] / "head.log").is_file()
        assert cells[CELL]["status"] == "built"

        # `nox -s build test` runs test after a failed build: the healthy cell is tested,
        # the broken one stays failed, the exit code says so.
        tested = run("test", *only, run_id=run_id, env=WHEELHOUSE)
        assert tested.returncode == 1, tested.stderr[-2000:]
        assert "not tested, its build failed" in tested.stderr
        cells = report(tmp_path / "build")
        assert cells[CELL]["status"] == "passed"
        found = checks(cells[CELL])
        assert "in the notebook container: PARITY_OK" in found["notebook:execute"]["detail"]
        assert found["kubeflow:contract"]["status"] == "skipped"
        assert cells["ray2.60.0-py3.11.2-cu128"]["status"] == "failed"  # still reported
        md = (tmp_path / "build" / "report.md").read_text()
        assert "deliberate failure" in md
    finally:
        assert_nothing_left(run_id)
        remove_prefix(prefix)


def test_build_exits_on_what_it_built_not_on_an_old_test(
    default_images: None, tmp_path: Path
) -> None:
    """A no-op build after a failed test: exit 0, and the line says built (last test: failed);
    the report keeps the test result, since the images are the ones tested."""
    args = ("build", *CPU_ONLY, "--build-dir", str(tmp_path))
    assert run(*args, run_id=new_run_id()).returncode == 0
    state = json.loads((tmp_path / "state.json").read_text())
    [cell] = state["cells"]
    cell["checks"].append(
        {"name": "workload:tasks", "status": "failed", "detail": "x", "stage": "test", "data": {}}
    )
    cell["tested_image_ids"] = {i["role"]: i["id"] for i in cell["images"]}
    (tmp_path / "state.json").write_text(json.dumps(state))
    r = run(*args, run_id=new_run_id())
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{CELL}: built (last test: failed)" in r.stderr
    assert report(tmp_path)[CELL]["status"] == "failed"


# --- 3. a cluster that never forms: bounded, with logs ---------------------------------------


@pytest.fixture
def broken_worker(tmp_path: Path, default_images: None) -> Iterator[Path]:
    """The default cell's images under another prefix, with a worker that never joins."""
    prefix = "localhost/raycompat-e2ebroken"
    matrix = copy_project(tmp_path, prefix)
    alias_images(prefix, "2.60.0-py3.11.2-cpu", ("head", "notebook"))
    derive_image(
        tmp_path,
        "localhost/raycompat/ray-worker:2.60.0-py3.11.2-cpu",
        'CMD ["sh", "-c", "echo worker refuses to join; exec sleep 3600"]',
        f"{prefix}/ray-worker:2.60.0-py3.11.2-cpu",
    )
    yield matrix
    remove_prefix(prefix)


def test_a_cluster_that_never_forms_fails_in_bounded_time_with_logs(
    broken_worker: Path,
) -> None:
    run_id = new_run_id()
    start = time.monotonic()
    r = run(
        "test",
        "--matrix",
        str(broken_worker),
        *CPU_ONLY,
        "--ready-timeout",
        "15",
        run_id=run_id,
        env=WHEELHOUSE,
    )
    elapsed = time.monotonic() - start
    assert r.returncode == 1
    cell = report(broken_worker.parent / "build")[CELL]
    ready = checks(cell)["cluster:ready:nodes"]  # the head answered; the worker never joined
    assert ready["status"] == "failed"
    assert ready["detail"] == "1 alive node(s), expected 2"
    logs = ready["data"]["logs"]
    assert "worker refuses to join" in logs["worker1"]
    assert logs.get("head")
    assert "client:connect" not in checks(cell)  # nothing else was attempted
    # Ray's own session logs of every node were saved before the containers went
    ray_logs = broken_worker.parent / "build" / "logs" / CELL / "ray"
    assert ready["data"]["ray_logs"] == str(ray_logs)
    assert (ray_logs / "head" / "gcs_server.out").is_file()
    assert (
        f"Ray's session logs of every node: `{ray_logs}`"
        in (broken_worker.parent / "build" / "report.md").read_text()
    )
    print(f"cluster that never forms: failed after {elapsed:.0f}s (ready timeout 15s)")
    assert elapsed < 15 + 120, "the failure must come from the bounded wait"
    assert_nothing_left(run_id)


def test_grid_without_a_cluster_has_no_verdict_and_says_so(broken_worker: Path) -> None:
    """A cluster that never comes up gives the grid no verdict: exit 3, not incompatible."""
    run_id = new_run_id()
    r = run(
        "grid",
        "--matrix",
        str(broken_worker),
        *CPU_ONLY,
        "--ready-timeout",
        "10",
        run_id=run_id,
        env=WHEELHOUSE,
    )
    assert r.returncode == 3, r.stderr[-2000:]
    assert f"no verdict for {CELL} -> {CELL}" in r.stderr
    doc = json.loads((broken_worker.parent / "build" / "grid.json").read_text())
    [pair] = doc["pairs"]
    assert pair["harness"]["verdict"] == "error"
    assert "cluster" in pair["harness"]["reasons"][0]
    assert_nothing_left(run_id)


def test_a_cell_whose_containers_cannot_start_fails_alone(
    default_images: None, tmp_path: Path
) -> None:
    """The gpu cell's head cannot start (the engine refuses: its user does not exist): that
    cell is an error with the engine's message; the cpu cell is still tested and reported."""
    prefix = "localhost/raycompat-e2estart"
    matrix = copy_project(tmp_path, prefix)
    for flavour in ("cpu", "cu128"):
        alias_images(prefix, f"2.60.0-py3.11.2-{flavour}", ("head", "worker", "notebook"))
    derive_image(
        tmp_path,
        "localhost/raycompat/ray-head:2.60.0-py3.11.2-cu128",
        "USER nosuchuser",
        f"{prefix}/ray-head:2.60.0-py3.11.2-cu128",
    )
    run_id = new_run_id()
    try:
        only = ["--only", "ray=2.60.0,python=3.11.2", "--jobs", "1"]
        r = run("test", "--matrix", str(matrix), *only, run_id=run_id, env=WHEELHOUSE)
        assert r.returncode == 1, r.stderr[-3000:]
        assert "Traceback" not in r.stderr
        cells = report(tmp_path / "build")
        broken = checks(cells["ray2.60.0-py3.11.2-cu128"])
        assert broken["cluster:start"]["status"] == "error"
        assert "unable to find user nosuchuser" in broken["cluster:start"]["detail"]
        assert cells["ray2.60.0-py3.11.2-cu128"]["status"] == "failed"
        assert cells[CELL]["status"] == "passed", checks(cells[CELL])
    finally:
        assert_nothing_left(run_id)
        remove_prefix(prefix)


# A worker whose dashboard agent takes 25 s to start: what a node starved of CPU does (its
# agent still importing when Ray's raylet gives up), made certain by a .pth file that delays
# that one process. Nothing else in the image changes.
SLOW_AGENT = (
    "USER 0:0\n"
    'RUN echo \'import time; time.sleep(25) if b"dashboard/agent.py" in '
    'open("/proc/self/cmdline", "rb").read() else None\' '
    "> /opt/ray/lib/python3.11/site-packages/zz_slow_agent.pth\n"
    "USER 1000:1000"
)


@pytest.mark.parametrize("slow", ["worker", "head"])
def test_a_node_too_slow_for_ray_is_an_error_with_ray_s_own_reason(
    slow: str, default_images: None, tmp_path: Path
) -> None:
    """The slow node's raylet aborts after Ray's fixed 15 s wait for its agent; `ray start`
    says only "timed out during startup". The report names the raylet's reason, and what the
    node's start decides is `error` (the image is not judged), never `failed`: for a worker
    the cluster:* checks, for the head the cluster's start."""
    prefix = "localhost/raycompat-e2eslow"
    matrix = copy_project(tmp_path, prefix)
    roles = {"head", "worker", "notebook"}
    alias_images(prefix, "2.60.0-py3.11.2-cpu", tuple(sorted(roles - {slow})))
    derive_image(
        tmp_path,
        f"localhost/raycompat/ray-{slow}:2.60.0-py3.11.2-cpu",
        SLOW_AGENT,
        f"{prefix}/ray-{slow}:2.60.0-py3.11.2-cpu",
    )
    node = "worker1" if slow == "worker" else "head"
    run_id = new_run_id()
    try:
        r = run(
            "test", "--matrix", str(matrix), *CPU_ONLY, "--ready-timeout", "90",
            run_id=run_id, env=WHEELHOUSE,
        )  # fmt: skip
        assert r.returncode == 1, r.stderr[-3000:]
        assert "Traceback" not in r.stderr
        assert f"Ray's logs: {node}: raylet gave up waiting for" in r.stderr
        found = checks(report(tmp_path / "build")[CELL])
        undecided = [c for c in found.values() if c["status"] == "error"]
        assert undecided, found
        assert all(c["name"].startswith("cluster:") for c in undecided)
        assert not [c for c in found.values() if c["status"] == "failed"], found
        if slow == "head":  # the cluster never started: its one check says why, Ray first
            [start] = undecided
            assert start["name"] == "cluster:start"
            why = start["detail"].split(f"Ray's logs: {node}: ", 1)[1]
        else:
            why = undecided[0]["data"]["ray_aborted"][node]
            md = (tmp_path / "build" / "report.md").read_text()
            assert f"- {node}: {why}" in md
        assert "after Ray's fixed 15 s for its dashboard_agent to start" in why
        assert "the agent was still starting" in why
    finally:
        assert_nothing_left(run_id)
        remove_prefix(prefix)


# --- 5. a worker killed mid-test is named -----------------------------------------------------


def test_a_worker_killed_mid_test_is_named(default_images: None, tmp_path: Path) -> None:
    run_id = new_run_id()
    build_dir = tmp_path / "build"
    proc = start("test", *CPU_ONLY, "--build-dir", str(build_dir), run_id=run_id)
    assert proc.stderr is not None
    killed_at = None
    noticed_at = None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if killed_at is None and "waiting for head + worker: done" in line:
            engine = Engine()
            names = [
                str((engine.inspect("container", c) or {}).get("Name", "")).lstrip("/")
                for c in engine.ids("container", {LABEL_RUN: run_id})
            ]
            [worker] = [n for n in names if n.endswith("-worker1")]
            engine.kill(worker)
            killed_at = time.monotonic()
        if killed_at is not None and noticed_at is None and "lost a node" in line:
            noticed_at = time.monotonic()
    rc = proc.wait(timeout=300)
    sys.stderr.write("".join(lines[-30:]))
    assert killed_at is not None, "the cluster never became ready"
    assert rc == 1
    cell = report(build_dir)[CELL]
    alive = checks(cell)["cluster:nodes-alive"]
    assert alive["status"] == "failed"
    assert "-worker1 exited with code 137" in alive["detail"]
    assert noticed_at is not None
    print(f"worker kill noticed after {noticed_at - killed_at:.1f}s")
    assert noticed_at - killed_at < 30
    assert_nothing_left(run_id)


# --- 4. interrupts and clean ------------------------------------------------------------------


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_interrupt_during_test_removes_everything(
    default_images: None, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    run_id = new_run_id()
    proc = start("test", *CPU_ONLY, "--build-dir", str(tmp_path), run_id=run_id)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "Ray Client connect, parity, workload ..." in line:
            break
    assert Engine().ids("container", {LABEL_RUN: run_id}), "cluster containers expected"
    proc.send_signal(sig)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == code, rest
    assert "removing what run" in rest
    assert_nothing_left(run_id)


def test_interrupt_during_build_exits_130(default_images: None, tmp_path: Path) -> None:
    run_id = new_run_id()
    proc = start("build", *CPU_ONLY, "--no-cache", "--build-dir", str(tmp_path), run_id=run_id)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "base debian:bookworm" in line:
            break
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130, rest
    assert "Traceback" not in rest
    assert_nothing_left(run_id)
    assert not list(tmp_path.glob("rootfs/*.partial.tar")), "half-built rootfs left behind"


def test_a_run_given_no_id_labels_its_throwaway_containers_for_cleanup(tmp_path: Path) -> None:
    """A user's run (no HARNESS_RUN_ID in its environment), interrupted while a structure
    check's throwaway container runs: the container carries the run's own label, so the
    interrupt's cleanup removes it (it used to carry an empty one and stay)."""
    prefix = "localhost/raycompat-e2escratch"
    matrix = copy_project(tmp_path, prefix)
    head = f"{prefix}/ray-head:2.60.0-py3.11.2-cpu"
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_RUN_ID"}
    proc = subprocess.Popen(
        harness_cmd("build", *CPU_ONLY, "--matrix", str(matrix)),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, **WHEELHOUSE},
    )
    api = Engine().client.api
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "structure checks head ..." in line:
                break
        deadline = time.monotonic() + 60
        while not (found := api.containers(all=True, filters={"ancestor": head})):
            assert time.monotonic() < deadline, "no structure-check container appeared"
            time.sleep(0.1)
        label = (found[0].get("Labels") or {}).get(LABEL_RUN)
        proc.send_signal(signal.SIGINT)
        rest = proc.stderr.read()
        assert proc.wait(timeout=120) == 130, rest
        assert f"removing what run {label} created" in rest, (label, rest)
        assert_nothing_left(str(label))
        assert api.containers(all=True, filters={"ancestor": head}) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for c in api.containers(all=True, filters={"ancestor": head}):
            api.remove_container(c["Id"], force=True)
        remove_prefix(prefix)


def start_killable(*args: str, run_id: str, build_dir: Path) -> subprocess.Popen[str]:
    """The harness in its own process group, so SIGKILL takes its docker children too (as
    when a CI machine or a session dies)."""
    return subprocess.Popen(
        harness_cmd(*args, "--build-dir", str(build_dir)),
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "HARNESS_RUN_ID": run_id},
        start_new_session=True,
        text=True,
    )


def wait_for_objects(run_id: str, kind: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not Engine().ids(kind, {LABEL_RUN: run_id}):
        assert time.monotonic() < deadline, f"run {run_id} created no {kind} in {timeout}s"
        time.sleep(1)


def test_clean_after_sigkill_removes_dead_runs_only(default_images: None, tmp_path: Path) -> None:
    engine = Engine()
    image = "localhost/raycompat/base:debian-bookworm-py3.11.2"
    # killed mid-test: its cluster containers and network stay behind
    tested = new_run_id()
    proc = start_killable("test", *CPU_ONLY, run_id=tested, build_dir=tmp_path / "t")
    wait_for_objects(tested, "container")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # killed mid-rebuild: its temporary base image (and maybe containers) stay behind
    rebuilt = new_run_id()
    proc = start_killable("verify-reproducible", *CPU_ONLY, run_id=rebuilt, build_dir=tmp_path)
    wait_for_objects(rebuilt, "image")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert engine.ids("container", {LABEL_RUN: tested}), "the killed test left nothing to clean"
    # a live run (this process holds its lock) and a user's container from our image
    live = "live" + uuid.uuid4().hex[:6]
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from harness import runs; runs.hold_run({live!r}); "
            "print('held', flush=True); import time; time.sleep(600)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    labels = {LABEL_MANAGED: "cluster", LABEL_RUN: live}
    ours_live = engine.client.containers.run(image, "sleep 600", detach=True, labels=labels).id
    theirs = engine.client.containers.run(
        image, "sleep 600", detach=True, labels={"owner": "someone-else"}
    ).id
    assert ours_live and theirs
    try:
        r = subprocess.run(
            harness_cmd("clean", "--build-dir", str(tmp_path / "clean")),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
        print(r.stdout)
        assert_nothing_left(tested)
        assert_nothing_left(rebuilt)
        assert f"kept the objects of 1 live run(s): {live}" in r.stdout
        assert engine.inspect("container", ours_live) is not None  # a live run's: kept
        # started from our image, so it inherits our image labels: still not ours to remove
        assert engine.inspect("container", theirs) is not None
        assert engine.inspect("image", image) is not None  # images stay without --images
    finally:
        holder.kill()
        holder.wait()
        engine.remove("container", theirs)
        engine.remove("container", ours_live)


# --- 6. too little disk -----------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    assert os.geteuid() == 0, "this test mounts a 16 MiB tmpfs and needs root (CI is root)"
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_too_little_disk_is_refused_up_front(tiny_disk: Path, tmp_path: Path) -> None:
    prefix = "localhost/raycompat-e2edisk"
    matrix = copy_project(tmp_path / "project", prefix)
    run_id = new_run_id()
    r = run(
        "build",
        "--matrix",
        str(matrix),
        "--build-dir",
        str(tiny_disk / "build"),
        run_id=run_id,
        env={"HARNESS_WHEELHOUSE": str(tiny_disk / "wheelhouse")},
    )
    assert r.returncode == 2
    [line] = r.stderr.strip().splitlines()
    assert "not enough disk" in line and str(tiny_disk) in line and "GiB is free" in line
    assert not (tiny_disk / "wheelhouse").exists() or not any((tiny_disk / "wheelhouse").iterdir())
    assert tags_under(prefix) == []
    assert_nothing_left(run_id)
