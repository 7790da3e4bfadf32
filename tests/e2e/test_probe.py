"""`python -m harness probe` against a cluster the harness did not start for itself.

A trixie (Python 3.13.5) cluster is started by the test; the probe runs from the matching
notebook image and from forky's (3.13.15), over Ray Client, Ray's driver check and the
Jobs API.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.backends.containers import ContainerCluster
from harness.engine import Engine
from harness.labels import RUN as LABEL_RUN
from harness.verify import TOKENLESS_NODE, join_as_driver, ray_processes_left
from tests.conftest import ROOT
from tests.e2e.cli import harness

pytestmark = pytest.mark.e2e
PREFIX = "localhost/raycompat"
OLD = "2.60.0-py3.13.5-cpu"
NEW = "2.60.0-py3.13.15-cpu"
RAY_OLD = "2.51.2-py3.13.5-cpu"  # built with the others: python=3.13.* below
WHEELHOUSE = ROOT / ".cache" / "wheelhouse"


def notebook(tag: str) -> str:
    return f"{PREFIX}/ray-notebook:{tag}"


def head_of_a_ready_cluster(
    name: str, auth_token: str | None = None
) -> Iterator[tuple[str, ContainerCluster]]:
    """A head and a worker of OLD, ready; yields the head's IP and the cluster, then checks
    it is all gone."""
    engine = Engine()
    run_id = name + uuid.uuid4().hex[:8]
    images = {role: f"{PREFIX}/ray-{role}:{OLD}" for role in ("head", "worker")}
    with ContainerCluster(engine, run_id, name, images, auth_token=auth_token) as cluster:
        ready = cluster.probe(
            cluster.head, ["cluster", "auto", "--expect-nodes", "2", "--timeout", "120"], 180
        )
        assert ready.get("connect", {}).get("ok"), ready
        networks = (engine.inspect("container", cluster.head) or {})["NetworkSettings"]["Networks"]
        [ip] = [n["IPAddress"] for n in networks.values()]
        yield ip, cluster
    assert engine.ids("container", {LABEL_RUN: run_id}) == []


@pytest.fixture(scope="module")
def head_ip() -> Iterator[str]:
    built = harness("build", "--only", "ray=2.60.0,python=3.13.*,variant=cpu")
    assert built.returncode == 0, built.stderr[-3000:]
    for ip, _ in head_of_a_ready_cluster("probe-target"):
        yield ip


def test_matching_image_passes_over_ray_client(head_ip: str) -> None:
    r = harness("probe", "--address", f"ray://{head_ip}:10001", "--image", notebook(OLD))
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert "Ray Client" in r.stdout and "accepted" in r.stdout
    assert "harness: compatible over 2 node(s)" in r.stdout


def test_micro_mismatch_over_ray_client_only_warns_in_ray_but_fails_here(head_ip: str) -> None:
    r = harness("probe", "--address", f"ray://{head_ip}:10001", "--image", notebook(NEW))
    assert r.returncode == 1, r.stdout + r.stderr[-2000:]
    assert "warned" in r.stdout
    assert "harness: incompatible" in r.stdout
    assert "python: notebook 3.13.15 vs cluster 3.13.5" in r.stdout


def test_a_client_of_another_ray_is_told_what_ray_answered_not_unreachable(head_ip: str) -> None:
    """A Ray 2.51.2 Ray Client against Ray 2.60.0: the server takes the connection and
    fails it (its proxier reads a JobConfig field the older client does not send). That is
    Ray's answer, given after Ray's own ~30 s: exit 1 with the raised error, not exit 2
    "cannot reach" (what the probe said before, after retrying until its deadline)."""
    r = harness("probe", "--address", f"ray://{head_ip}:10001", "--image", notebook(RAY_OLD))
    assert r.returncode == 1, r.stdout + r.stderr[-2000:]
    assert "cannot reach" not in r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("Ray Client"))
    assert ": error: ConnectionAbortedError: Initialization failure from server" in line
    assert line.endswith("object has no attribute '_disable_job_level_lineage_reconstruction'")
    assert "harness: undecided: no node was probed" in r.stdout
    assert f"probe --address {head_ip}:6379" in r.stdout


@pytest.mark.parametrize(("image", "rc", "verdict"), [(OLD, 0, "accepted"), (NEW, 1, "rejected")])
def test_driver_check_is_rays_own(head_ip: str, image: str, rc: int, verdict: str) -> None:
    r = harness("probe", "--address", f"{head_ip}:6379", "--image", notebook(image))
    assert r.returncode == rc, r.stdout + r.stderr[-2000:]
    assert f"Ray's driver check against {head_ip}:6379: {verdict}" in r.stdout
    if verdict == "rejected":
        assert "Version mismatch" in r.stdout


@pytest.mark.parametrize("image", [OLD, NEW])
def test_jobs_api_path_is_safe_across_a_micro_mismatch(head_ip: str, image: str) -> None:
    """The job's driver runs on the cluster's interpreter: a notebook on another Python
    micro submits fine, which the grid's Jobs path says too (test_grid)."""
    r = harness("probe", "--address", f"http://{head_ip}:8265", "--image", notebook(image))
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert f"Jobs API http://{head_ip}:8265: accepted" in r.stdout
    assert "harness (Jobs path): compatible" in r.stdout
    assert "the job's driver ran on Python 3.13.5, Ray 2.60.0" in r.stdout


def test_unreachable_address_is_a_clear_error() -> None:
    r = harness("probe", "--address", "ray://127.0.0.1:9", "--image", notebook(OLD))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "cannot reach ray://127.0.0.1:9" in r.stderr
    assert "check the address and port" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_silent_address_gives_up_within_its_timeout() -> None:
    """A port that accepts connections and never answers: bounded by --timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        start = time.monotonic()
        r = harness(
            "probe",
            "--address",
            f"ray://127.0.0.1:{port}",
            "--image",
            notebook(OLD),
            "--timeout",
            "5",
        )
        elapsed = time.monotonic() - start
    print(f"silent address: gave up after {elapsed:.1f}s (--timeout 5)")
    assert r.returncode == 2, r.stdout + r.stderr
    [line] = r.stderr.strip().splitlines()[-1:]
    assert f"cannot reach ray://127.0.0.1:{port} within 5s" in line
    assert elapsed < 5 + 30  # the container and Ray's import around the bounded wait


TOKEN = "probe-e2e-" + uuid.uuid4().hex  # this module's token cluster only


@pytest.fixture(scope="module")
def token_cluster(head_ip: str) -> Iterator[tuple[str, ContainerCluster]]:
    """A cluster of the same images with Ray's token authentication on (as `test` runs
    Ray 2.60.0 cells)."""
    yield from head_of_a_ready_cluster("probe-token", auth_token=TOKEN)


@pytest.fixture(scope="module")
def token_head_ip(token_cluster: tuple[str, ContainerCluster]) -> str:
    return token_cluster[0]


@pytest.mark.parametrize("form", ["ray://{}:10001", "http://{}:8265", "{}:6379"])
def test_a_token_cluster_asks_for_the_token_by_name(token_head_ip: str, form: str) -> None:
    """Without a token every path is refused: exit 2 naming what to set, not "cannot
    reach" (Ray Client's refusal looks like an unavailable server) nor "incompatible"."""
    address = form.format(token_head_ip)
    r = harness("probe", "--address", address, "--image", notebook(OLD))
    assert r.returncode == 2, r.stdout + r.stderr[-2000:]
    assert f"error: {address} wants Ray's token" in r.stderr
    assert "set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN" in r.stderr
    assert "cannot reach" not in r.stderr and "Traceback" not in r.stderr


def test_a_token_cluster_with_a_wrong_token_says_so(token_head_ip: str) -> None:
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "wrong-" + uuid.uuid4().hex}
    address = f"{token_head_ip}:6379"
    r = harness("probe", "--address", address, "--image", notebook(OLD), env=env)
    assert r.returncode == 2, r.stdout + r.stderr[-2000:]
    assert f"error: {address} refused this client's token" in r.stderr


def test_a_token_cluster_with_its_token_is_probed(token_head_ip: str) -> None:
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN}
    address = f"ray://{token_head_ip}:10001"
    r = harness("probe", "--address", address, "--image", notebook(OLD), env=env)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert "harness: compatible over 2 node(s)" in r.stdout
    assert TOKEN not in r.stdout + r.stderr


def test_a_refused_join_is_stopped_only_where_ray_left_a_process(
    token_cluster: tuple[str, ContainerCluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node without the token is refused at its first GCS call, before `ray start`
    starts anything: `ray stop --force` (2.5 CPU-s) runs after a refusal only where a Ray
    process is left, and `ray_processes_left` sees Ray's processes and no others."""
    _, cluster = token_cluster
    client = cluster.add_client(notebook(OLD), "refused")
    assert ray_processes_left(cluster, cluster.head)  # raylet, gcs_server, agents
    assert not ray_processes_left(cluster, client)  # JupyterLab only
    ran: list[list[str]] = []
    exec_ = cluster.exec

    def recorded(container: str, command: list[str], **kw: Any) -> tuple[int, str, str]:
        ran.append(command)
        return exec_(container, command, **kw)

    monkeypatch.setattr(cluster, "exec", recorded)

    refused, result = join_as_driver(cluster, client, env=TOKENLESS_NODE)
    assert refused is not None and "InvalidAuthToken" in refused, refused
    assert result == {}
    assert not ray_processes_left(cluster, client)
    assert ["ray", "stop", "--force"] not in ran

    # A worker left behind (Ray's workers retitle themselves `ray::...`) is seen and stopped.
    exec_(client, ["bash", "-c", "(exec -a ray::IDLE sleep 300 >/dev/null 2>&1 &)"])
    assert ray_processes_left(cluster, client)
    refused, _ = join_as_driver(cluster, client, env=TOKENLESS_NODE)
    assert refused is not None
    assert ["ray", "stop", "--force"] in ran


@pytest.fixture(scope="module")
def minimal_ray(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An interpreter outside the images with `pip install ray` and no extras, beside the
    harness's own packages: a user's laptop or CI."""
    venv = tmp_path_factory.mktemp("minimal-ray") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    wheels = ["--find-links", str(WHEELHOUSE)]  # what the index would give, if already here
    installed = subprocess.run(
        [python, "-m", "pip", "install", "-q", *wheels, "ray==" + OLD.split("-")[0]],
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = [p for p in sys.path if p.endswith("site-packages")]
    (Path(site) / "raycompat-harness.pth").write_text("\n".join([str(ROOT), *ours]) + "\n")
    return python


@pytest.mark.parametrize(
    ("form", "extra"), [("ray://{}:10001", "client"), ("http://{}:8265", "default")]
)
def test_a_client_without_the_extra_a_path_needs_is_told_which(
    head_ip: str, minimal_ray: str, form: str, extra: str
) -> None:
    """Plain `pip install ray` has neither Ray Client (`ray[client]`) nor the Jobs SDK
    (`ray[default]`): that is this client's installation, not the cluster's answer, so
    neither "incompatible" nor "cannot reach" (the Ray Client path waited out --timeout)."""
    address = form.format(head_ip)
    r = subprocess.run(
        [minimal_ray, "-m", "harness", "probe", "--address", address],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2, r.stdout + r.stderr[-2000:]
    assert f"lacks its `{extra}` extra" in r.stderr, r.stderr[-2000:]
    assert f"install 'ray[{extra}]==2.60.0'" in r.stderr
    assert "incompatible" not in r.stdout and "cannot reach" not in r.stderr
