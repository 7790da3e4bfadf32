"""The push gate against a real registry: Debian's docker-registry (CNCF distribution)
started on 127.0.0.1 by the test. Push, pull back by digest, digest check against the
registry's own manifest, and each of the gate's refusals."""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.version import Version

from harness import diff, k8s, lock, pulls, signing
from harness import registry as registry_mod
from harness.engine import Engine
from harness.labels import RUN as LABEL_RUN
from harness.matrix import ROLES
from harness.results import REQUIRED_CHECKS
from tests.conftest import ROOT
from tests.e2e.cli import harness
from tests.e2e.scans import write_scans

pytestmark = pytest.mark.e2e
CELL = "ray2.60.0-py3.11.2-cpu"
ONLY = "ray=2.60.0,python=3.11.2,variant=cpu"
REGISTRY_BIN = "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def registry_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the registry keeps its blobs (data/docker/registry/v2/blobs/...)."""
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="module")
def registry(registry_root: Path) -> Iterator[str]:
    assert os.access(REGISTRY_BIN, os.X_OK), (
        "docker-registry is missing: run scripts/setup-engine.sh (installs Debian's package)"
    )
    root = registry_root
    port = free_port()
    config = {
        "version": 0.1,
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
        "http": {"addr": f"127.0.0.1:{port}"},
        "log": {"level": "warn"},
    }
    (root / "config.yml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [REGISTRY_BIN, "serve", str(root / "config.yml")],
        stdout=subprocess.DEVNULL,
        stderr=(root / "registry.log").open("w"),
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError((root / "registry.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        yield f"127.0.0.1:{port}/raycompat"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        untag(f"127.0.0.1:{port}/")


def untag(prefix: str) -> None:
    """Drop the local references the push made (tags and digests); images stay."""
    Engine().untag_prefix(prefix)


@pytest.fixture(scope="module")
def tested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build dir whose report says the cell passed its test (a real test run)."""
    build = tmp_path_factory.mktemp("push-build")
    run_id = "push" + uuid.uuid4().hex[:8]
    env = {"HARNESS_RUN_ID": run_id}
    for command in ("build", "test"):
        r = harness(command, "--only", ONLY, "--build-dir", str(build), env=env)
        assert r.returncode == 0, r.stderr[-3000:]
    assert Engine().ids("container", {LABEL_RUN: run_id}) == []
    write_scans(build / "report.json")  # the matrix's `vulnerabilities:` wants a report each
    return build


def report_with(tested: Path, tmp: Path, **changes: Any) -> Path:
    doc = json.loads((tested / "report.json").read_text())
    for c in doc["cells"]:
        if c["id"] == CELL:
            c.update(changes)
    path = tmp / "report.json"
    path.write_text(json.dumps(doc))
    write_scans(tested / "report.json", into=tmp / "scans")
    return path


def push_report(report: Path, build: Path, registry: str) -> subprocess.CompletedProcess[str]:
    """`push` gated on `report`, writing into `build`."""
    args = ("--only", ONLY, "--build-dir", str(build), "--report", str(report))
    return harness("push", *args, env={"RAYCOMPAT_REGISTRY": registry})


def report_md_pulls(build: Path) -> int:
    """How many of CELL's images report.md shows with a pull size."""
    row = next(
        x for x in (build / "report.md").read_text().splitlines() if x.startswith(f"| {CELL} ")
    )
    return row.count(", pull ")


MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def _manifest_request(registry: str, repo: str, ref: str, media: str, method: str) -> Any:
    host, path = registry.split("/", 1)
    req = urllib.request.Request(
        f"http://{host}/v2/{path}/{repo}/manifests/{ref}", headers={"Accept": media}, method=method
    )
    return urllib.request.urlopen(req, timeout=30)


def manifest(registry: str, repo: str, ref: str, media: str = MANIFEST) -> dict[str, Any]:
    """The manifest (or, with MANIFEST_LIST, the index) the registry serves for `ref`."""
    with _manifest_request(registry, repo, ref, media, "GET") as resp:
        doc: dict[str, Any] = json.loads(resp.read())
        return doc


def manifest_digest(registry: str, repo: str, ref: str, media: str = MANIFEST) -> str:
    """The hex digest the registry names for `ref` (Docker-Content-Digest of a HEAD)."""
    with _manifest_request(registry, repo, ref, media, "HEAD") as resp:
        return str(resp.headers["Docker-Content-Digest"]).removeprefix("sha256:")


def test_push_pull_back_and_digest_contract(registry: str, tested: Path) -> None:
    r = harness(
        "push", "--only", ONLY, "--build-dir", str(tested), env={"RAYCOMPAT_REGISTRY": registry}
    )
    assert r.returncode == 0, r.stderr[-3000:]
    lock = json.loads((tested / "images.lock.json").read_text())
    assert lock["registry"] == registry
    entries = {e["role"]: e for e in lock["images"] if e["cell"] == CELL}
    assert set(entries) == {"head", "worker", "notebook"}
    report = json.loads((tested / "report.json").read_text())
    ids = next(c for c in report["cells"] if c["id"] == CELL)["tested_image_ids"]
    for role, e in entries.items():
        assert e["tag"] == f"{registry}/ray-{role}:2.60.0-py3.11.2-cpu"
        assert e["ref"] == f"{registry}/ray-{role}@{e['digest']}"
        assert e["layers"] == "gzip" and lock["schema"] == 5
        # the registry itself serves that digest, and its config is the tested image
        m = manifest(registry, f"ray-{role}", e["digest"])
        assert m["config"]["digest"] == ids[role] == e["image_id"]
        # the pull size the report shows is the registry's own layers
        layers = [(x["digest"], x["size"]) for x in m["layers"]]
        assert pulls.load(tested)[e["image_id"]] == layers
    assert report_md_pulls(tested) == 3

    # manifests for operators, pinned by digest, valid
    r = harness("manifests", "--build-dir", str(tested), "--namespace", "ray")
    assert r.returncode == 0, r.stderr[-2000:]
    rc = yaml.safe_load((tested / "deploy" / CELL / "raycluster.yaml").read_text())
    assert k8s.validate(rc) == []
    assert rc["spec"]["rayVersion"] == "2.60.0"
    head = rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    assert head == entries["head"]["ref"]
    job = yaml.safe_load((tested / "deploy" / CELL / "rayjob.yaml").read_text())
    assert k8s.validate(job) == []
    submitter = job["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["image"]
    assert (
        submitter
        == entries["head"]["ref"]
        == job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0][
            "image"
        ]
    )
    config_map, service = yaml.safe_load_all(
        (tested / "deploy" / CELL / "rayservice.yaml").read_text()
    )
    assert k8s.validate(config_map) == [] and k8s.validate(service) == []
    assert service["metadata"]["namespace"] == config_map["metadata"]["namespace"] == "ray"
    assert [c["image"] for _, t in k8s.pod_specs(service) for c in t["containers"]] == [
        entries["head"]["ref"],
        entries["worker"]["ref"],
    ]
    # the cell does not target Vertex AI (and would fail its contract): no vertex.json
    assert not (tested / "deploy" / CELL / "vertex.json").exists()


# --- zstd layers (`layer_compression: zstd`) ---------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ZSTD_LAYER = "application/vnd.oci.image.layer.v1.tar+zstd"
ZSTD_MAGIC = bytes.fromhex("28b52ffd")
# Docker's own containerd (dockerd starts it; Debian's docker.io depends on containerd)
CONTAINERD_SOCKETS = (
    "/var/run/docker/containerd/containerd.sock",
    "/run/containerd/containerd.sock",
)


def zstd_matrix(tmp: Path) -> Path:
    """The project's matrix with `layer_compression: zstd` (and its exceptions file)."""
    text = (ROOT / "matrix.yaml").read_text()
    assert "layer_compression" not in text
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "vulnerability-exceptions.yaml", tmp)
    (tmp / "matrix.yaml").write_text(text + "\nlayer_compression: zstd\n")
    return tmp / "matrix.yaml"


def push_zstd(
    tested: Path, build: Path, target: str, **env: str
) -> subprocess.CompletedProcess[str]:
    matrix = zstd_matrix(build.parent / "matrix")
    args = ["--matrix", str(matrix), "--only", ONLY, "--build-dir", str(build)]
    args += ["--report", str(tested / "report.json")]
    return harness("push", *args, env={"RAYCOMPAT_REGISTRY": target, **env})


def blob_head(registry: str, repo: str, digest: str) -> bytes:
    host, path = registry.split("/", 1)
    url = f"http://{host}/v2/{path}/{repo}/blobs/{digest}"
    with urllib.request.urlopen(urllib.request.Request(url), timeout=30) as resp:
        return bytes(resp.read(4))


def ctr(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """containerd's own client, on Docker's containerd: a real zstd-capable puller, the
    runtime KubeRay's nodes pull with."""
    sock = next((s for s in CONTAINERD_SOCKETS if os.path.exists(s)), None)
    assert shutil.which("ctr") and sock, "no containerd: scripts/setup-engine.sh installs docker.io"
    r = subprocess.run(["ctr", "-a", sock, *args], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 or not check, r.stderr[-2000:]
    return r


def test_zstd_layers_are_verified_and_a_real_containerd_pulls_them(
    registry: str, tested: Path, tmp_path: Path
) -> None:
    target = registry + "-zstd"
    key, pub = cosign_keys(tmp_path / "keys")
    r = push_zstd(
        tested, tmp_path / "push", target, RAYCOMPAT_COSIGN_KEY=str(key), COSIGN_PASSWORD=""
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert "image(s) uploaded (zstd layers)" in r.stderr
    if not registry_mod.pulls_zstd(Engine().ping()):  # this machine: Docker 20.10
        assert "read back by digest through the registry's API" in r.stderr
    lock = json.loads((tmp_path / "push" / "images.lock.json").read_text())
    entries = {e["role"]: e for e in lock["images"] if e["cell"] == CELL}
    ids = next(
        c for c in json.loads((tested / "report.json").read_text())["cells"] if c["id"] == CELL
    )["tested_image_ids"]
    for role, e in entries.items():
        m = manifest(target, f"ray-{role}", e["digest"], OCI_MANIFEST)
        assert m["mediaType"] == OCI_MANIFEST and e["layers"] == "zstd"
        assert m["config"]["digest"] == ids[role] == e["image_id"]  # the tested image
        assert {x["mediaType"] for x in m["layers"]} == {ZSTD_LAYER}
        assert blob_head(target, f"ray-{role}", m["layers"][-1]["digest"]) == ZSTD_MAGIC
        assert pulls.load(tmp_path / "push")[e["image_id"]] == [
            (x["digest"], x["size"]) for x in m["layers"]
        ]
    # signed and attested by digest as gzip images are, and verified as a consumer would
    lock_file = tmp_path / "push" / "images.lock.json"
    ok = harness("verify", "--images-lock", str(lock_file), "--key", str(pub))
    assert ok.returncode == 0, ok.stdout + ok.stderr[-2000:]
    assert ok.stdout.count("ok   ") == 3 and "every required one passed" in ok.stdout
    # containerd pulls the notebook by digest: it checks every blob's digest and unpacks
    # every layer against the config's diff ids, as a Kubernetes node does
    ns = f"raycompat-e2e-{uuid.uuid4().hex[:8]}"
    ref = entries["notebook"]["ref"]
    try:
        ctr("-n", ns, "images", "pull", "--plain-http", "--platform", "linux/amd64", ref)
        listed = ctr("-n", ns, "images", "ls", "-q").stdout.split()
        assert ref in listed
        ctr("-n", ns, "images", "check")
    finally:
        ctr("-n", ns, "images", "rm", "--sync", ref, check=False)
        ctr("namespaces", "rm", ns, check=False)
    assert ns not in ctr("namespaces", "ls", "-q").stdout.split()


def test_a_registry_serving_other_bytes_for_a_zstd_layer_stops_the_push(
    registry: str, registry_root: Path, tested: Path, tmp_path: Path
) -> None:
    """A blob that rotted or was swapped in the registry's storage: the digest it is
    served under no longer matches. The push must refuse before any tag moves."""
    target = registry + "-rot"
    first = push_zstd(tested, tmp_path / "first", target)
    assert first.returncode == 0, first.stderr[-3000:]
    e = next(
        e
        for e in json.loads((tmp_path / "first" / "images.lock.json").read_text())["images"]
        if e["role"] == "notebook"
    )
    layer = manifest(target, "ray-notebook", e["digest"], OCI_MANIFEST)["layers"][-1]["digest"]
    hexd = layer.removeprefix("sha256:")
    stored = registry_root / "data/docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    suffix = "2.60.0-py3.11.2-cpu"
    tags_before = {r: manifest_digest(target, f"ray-{r}", suffix, OCI_MANIFEST) for r in ROLES}
    assert tags_before["notebook"] == e["digest"].removeprefix("sha256:")
    # the blobs are "there", so the push uploads none and must read every one back
    again = push_zstd(tested, tmp_path / "again", target)
    assert again.returncode == 2, again.stderr[-3000:]
    assert "Traceback" not in again.stderr
    assert "no tag of ray2.60.0-py3.11.2-cpu was changed" in again.stderr
    if not registry_mod.pulls_zstd(Engine().ping()):
        assert f"({layer}): the registry served other bytes" in again.stderr
    assert {r: manifest_digest(target, f"ray-{r}", suffix, OCI_MANIFEST) for r in ROLES} == (
        tags_before
    )
    assert not (tmp_path / "again" / "images.lock.json").exists()


BROWSER = "chromium-headless-shell"  # Debian's headless Chromium (scripts/setup-engine.sh)


def browse(page: Path, fragment: str = "") -> tuple[str, list[str]]:
    """The page's DOM after its scripts ran, in a real headless browser, and every console
    message it logged (an uncaught error, a resource that failed to load)."""
    assert shutil.which(BROWSER), f"{BROWSER} is missing: scripts/setup-engine.sh installs it"
    r = subprocess.run(
        [BROWSER, "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
         "--dump-dom", page.resolve().as_uri() + fragment],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout, [line for line in r.stderr.splitlines() if ":CONSOLE" in line]


def test_the_catalog_shows_every_pushed_tag_in_a_browser(
    registry: str, tested: Path, tmp_path: Path
) -> None:
    r = harness(
        "push", "--only", ONLY, "--build-dir", str(tested), env={"RAYCOMPAT_REGISTRY": registry}
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "catalog"
    r = harness("catalog", "--images-lock", str(tested / "images.lock.json"), "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    lock = json.loads((tested / "images.lock.json").read_text())
    tags = [e["tag"] for e in lock["images"]]
    assert len(tags) >= 3
    dom, console = browse(out / "index.html")
    assert console == [], console
    shown = re.findall(r'<tr data-tag="([^"]+)">', dom)  # rows the filter left visible
    assert sorted(shown) == sorted(tags)
    # the pushed SBOM and the test report are read: key packages and passed checks
    assert "ray 2.60.0" in dom and "cpython" not in dom.split("<tbody>")[1].split("</tbody>")[0]
    for check in REQUIRED_CHECKS:
        assert f"<li>{check}</li>" in dom
    # its script runs: a filter in the link hides what it does not match
    dom, console = browse(out / "index.html", "#ray-notebook")
    assert console == [], console
    visible = re.findall(r'<tr data-tag="([^"]+)">', dom)
    assert visible and all("ray-notebook" in t for t in visible)
    assert len(re.findall(r'<tr data-tag="[^"]+" hidden="">', dom)) == len(tags) - len(visible)
    md = (out / "catalog.md").read_text()
    assert all(f"`{t}`" in md for t in tags) and "ray.init(" in md
    # the browser check can fail: a page whose script throws is caught
    broken = tmp_path / "broken.html"
    broken.write_text((out / "index.html").read_text().replace("apply();", "apply(); nosuch();"))
    assert any("nosuch" in line for line in browse(broken)[1])


@pytest.mark.parametrize(
    ("changes", "expect"),
    [
        ({"status": "failed"}, "status 'failed'"),
        ({"status": "built", "tested_image_ids": {}}, "built but not tested"),
        ({"tested_image_ids": {}}, "records no tested image (stale report)"),
        (
            {"tested_image_ids": {"head": "sha256:" + "0" * 64, "worker": "x", "notebook": "y"}},
            "changed after the test",
        ),
    ],
    ids=["failed-cell", "not-tested", "stale-report", "image-changed-after-test"],
)
def test_gate_refuses(
    registry: str, tested: Path, tmp_path: Path, changes: dict[str, Any], expect: str
) -> None:
    r = push_report(report_with(tested, tmp_path, **changes), tmp_path, registry)
    assert r.returncode == 1, r.stderr[-2000:]
    assert expect in r.stderr
    assert f"push refused for: {CELL}" in r.stderr
    assert not (tmp_path / "images.lock.json").exists()  # nothing of that cell went out


def test_retagged_image_is_refused(registry: str, tested: Path, tmp_path: Path) -> None:
    """A real change after the test: the head tag now names another image."""
    engine = Engine()
    tag = "localhost/raycompat/ray-head:2.60.0-py3.11.2-cpu"
    original = (engine.inspect("image", tag) or {})["Id"]
    other = engine.inspect("image", "localhost/raycompat/ray-worker:2.60.0-py3.11.2-cpu") or {}
    engine.tag(other["Id"], tag)
    try:
        r = harness(
            "push",
            "--only",
            ONLY,
            "--build-dir",
            str(tested),
            "--dry-run",
            env={"RAYCOMPAT_REGISTRY": registry},
        )
    finally:
        engine.tag(original, tag)
    assert r.returncode == 1
    assert f"{CELL}/head: {tag} changed after the test" in r.stderr


def test_unreachable_registry_is_a_clear_failure(tested: Path, tmp_path: Path) -> None:
    report = report_with(tested, tmp_path)
    r = push_report(report, tmp_path, f"127.0.0.1:{free_port()}/nowhere")
    assert r.returncode == 2, r.stderr[-2000:]
    assert "push to 127.0.0.1" in r.stderr and "failed" in r.stderr
    assert "no tag of ray2.60.0-py3.11.2-cpu was changed" in r.stderr
    assert "Traceback" not in r.stderr
    listed = [t for i in Engine().client.api.images() for t in i.get("RepoTags") or []]
    assert not [ref for ref in listed if "/nowhere/" in ref]  # no stray tag left


# --- CI shards: separate build directories, one cell each, one push ---------------------------

GPU_CELL = "ray2.60.0-py3.11.2-cu128"
GPU_ONLY = "ray=2.60.0,python=3.11.2,variant=gpu"


def test_two_ci_shards_push_both_cells(registry: str, tested: Path, tmp_path: Path) -> None:
    """As the workflow runs it: each shard builds and tests one cell in its own build dir
    (its report lists every other cell as excluded); the push job gates on both reports."""
    gpu_shard = tmp_path / "shard-gpu"
    for command in ("build", "test"):
        r = harness(command, "--only", GPU_ONLY, "--build-dir", str(gpu_shard))
        assert r.returncode == 0, r.stderr[-3000:]
    write_scans(gpu_shard / "report.json")
    shard_reports = [str(tested / "report.json"), str(gpu_shard / "report.json")]
    both = ("--only", "ray=2.60.0,python=3.11.2")
    target = registry + "-shards"
    args = ["push", *both, "--build-dir", str(tmp_path / "push")]
    for rep in shard_reports:
        args += ["--report", rep]
    r = harness(*args, env={"RAYCOMPAT_REGISTRY": target})
    assert r.returncode == 0, r.stderr[-3000:]
    lock = json.loads((tmp_path / "push" / "images.lock.json").read_text())
    pushed = {(e["cell"], e["role"]): e for e in lock["images"]}
    assert set(pushed) == {(c, role) for c in (CELL, GPU_CELL) for role in ROLES}
    # gpu honesty: pushed (gpu_e2e: optional), saying it was not run on a GPU
    assert pushed[(GPU_CELL, "head")]["gpu_e2e"].startswith("not run on a GPU")
    assert "WARNING ray2.60.0-py3.11.2-cu128: not run on a GPU" in r.stderr
    r = harness("manifests", "--build-dir", str(tmp_path / "push"))
    assert r.returncode == 0, r.stderr[-2000:]
    rc = yaml.safe_load((tmp_path / "push" / "deploy" / GPU_CELL / "raycluster.yaml").read_text())
    assert rc["metadata"]["annotations"]["raycompat.io/gpu-e2e"].startswith("not run on a GPU")

    # a shard whose cell failed blocks only that cell
    failed = json.loads((gpu_shard / "report.json").read_text())
    for c in failed["cells"]:
        if c["id"] == GPU_CELL:
            c["status"] = "failed"
    (tmp_path / "failed.json").write_text(json.dumps(failed))
    write_scans(gpu_shard / "report.json", into=tmp_path / "scans")
    args = ["push", *both, "--build-dir", str(tmp_path / "push2"), "--dry-run"]
    args += ["--report", shard_reports[0], "--report", str(tmp_path / "failed.json")]
    r = harness(*args, env={"RAYCOMPAT_REGISTRY": target})
    assert r.returncode == 1
    assert f"refused {GPU_CELL}: status 'failed'" in r.stderr
    assert "would push localhost/raycompat/ray-head:2.60.0-py3.11.2-cpu" in r.stderr


# --- a cell goes out whole or not at all ------------------------------------------------------


class FaultyProxy:
    """A TCP proxy in front of the registry that answers 500 to requests whose first line
    matches `fails` (one connection per request: the harness's client sends
    `Connection: close`), and passes everything else through untouched."""

    def __init__(self, upstream: int, fails: str) -> None:
        self.upstream = upstream
        self.fails = re.compile(fails)
        self.hits = 0
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port: int = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            first = conn.recv(65536)
            line = first.split(b"\r\n", 1)[0].decode(errors="replace")
            if self.fails.search(line):
                self.hits += 1
                conn.sendall(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                    b"Connection: close\r\n\r\n"
                )
                return
            with socket.create_connection(("127.0.0.1", self.upstream)) as up:
                up.sendall(first)

                def pump(src: socket.socket, dst: socket.socket) -> None:
                    try:
                        while data := src.recv(65536):
                            dst.sendall(data)
                    except OSError:
                        pass
                    finally:
                        with contextlib.suppress(OSError):
                            dst.shutdown(socket.SHUT_WR)

                t = threading.Thread(target=pump, args=(up, conn), daemon=True)
                t.start()
                pump(conn, up)
                t.join(timeout=600)

    def close(self) -> None:
        self.server.close()


def tag_digest(registry: str, repo: str, tag: str) -> str | None:
    host, path = registry.split("/", 1)
    req = urllib.request.Request(
        f"http://{host}/v2/{path}/{repo}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return str(resp.headers["Docker-Content-Digest"])
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
        return None


@pytest.mark.parametrize(
    "fails",
    [
        r"/ray-notebook/blobs/uploads",
        r"^PUT \S+/ray-notebook/manifests/2\.60\.0-py3\.11\.2-cpu ",
        r"^PUT \S+/ray-notebook/manifests/\S+-\d{8} ",
    ],
    ids=["notebook-upload-fails", "notebook-tag-move-fails", "notebook-dated-tag-fails"],
)
def test_a_cell_goes_out_whole_or_not_at_all(
    registry: str, tested: Path, tmp_path: Path, fails: str
) -> None:
    host, _ = registry.split("/", 1)
    port = int(host.rsplit(":", 1)[1])
    path = "whole-" + uuid.uuid4().hex[:6]
    engine = Engine()
    # what the registry held before: another image under every role's tag of the cell
    base = "localhost/raycompat/base:debian-bookworm-py3.11.2"
    before = {}
    for role in ROLES:
        ref = f"{host}/{path}/ray-{role}:2.60.0-py3.11.2-cpu"
        engine.tag(base, ref)
        for event in engine.client.api.push(ref, stream=True, decode=True):
            assert "error" not in event, event
        assert engine.untag(ref)
        before[role] = tag_digest(f"{host}/{path}", f"ray-{role}", "2.60.0-py3.11.2-cpu")
        assert before[role]
    proxy = FaultyProxy(port, fails)
    try:
        target = f"127.0.0.1:{proxy.port}/{path}"
        r = push_report(report_with(tested, tmp_path), tmp_path, target)
    finally:
        proxy.close()
        untag(f"127.0.0.1:{proxy.port}/")  # what the push pulled back by digest
    assert proxy.hits >= 1, "the fault was never injected"
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert "failed" in r.stderr and "ray-notebook" in r.stderr
    after = {
        role: tag_digest(f"{host}/{path}", f"ray-{role}", "2.60.0-py3.11.2-cpu") for role in ROLES
    }
    assert after == before  # every tag of the cell as it was
    assert not (tmp_path / "images.lock.json").exists()


# --- the vulnerability gate: scanner reports, threshold, exceptions ---------------------------


def test_a_high_finding_blocks_until_an_exception_covers_it(
    registry: str, tested: Path, tmp_path: Path
) -> None:
    """Trivy's report on the head names a high and a critical finding: the cell is refused,
    nothing is pushed. The same findings under a valid exception go out, and report.md
    shows them with the exception's reason; an exception past its date fails, naming it."""
    report = report_with(tested, tmp_path)
    scans = tmp_path / "scans"
    ids = json.loads(report.read_text())
    head = next(c for c in ids["cells"] if c["id"] == CELL)["tested_image_ids"]["head"]
    write_scans(report, into=scans)
    (scans / f"{CELL}-head.json").write_text(
        (ROOT / "tests" / "data" / "scans" / "trivy.json").read_text().replace("IMAGE_ID", head)
    )
    target = registry + "-vulns"
    args = ("push", "--only", ONLY, "--build-dir", str(tmp_path), "--report", str(report))
    env = {"RAYCOMPAT_REGISTRY": target}
    r = harness(*args, env=env)
    assert r.returncode == 1, r.stderr[-2000:]
    assert f"refused {CELL}: vulnerabilities: {CELL}/head: critical GHSA-xxxx-0103-yyyy" in r.stderr
    assert "high CVE-2026-0101 in libssl3" in r.stderr
    assert not (tmp_path / "images.lock.json").exists()

    matrix = tmp_path / "matrix.yaml"  # the project's matrix, beside its own exceptions
    matrix.write_text((ROOT / "matrix.yaml").read_text())
    shutil.copytree(ROOT / "locks", tmp_path / "locks")
    entry = (
        '  - {{id: {id}, package: {pkg}, images: ["ray2.60.0-*"], reason: "{why}", '
        "expires: {date}}}\n"
    )
    today = datetime.date.today()
    soon, yesterday = today + datetime.timedelta(days=90), today - datetime.timedelta(days=1)
    why = "vendored inside the Ray wheel: fixed only by a new Ray release"
    ok = entry.format(id="GHSA-xxxx-0103-yyyy", pkg="ray", date=soon, why=why)
    ssl = entry.format(id="CVE-2026-0101", pkg="libssl3", date=yesterday, why="next release")
    exceptions = tmp_path / "vulnerability-exceptions.yaml"
    exceptions.write_text("exceptions:\n" + ok + ssl)
    r = harness(*args, "--matrix", str(matrix), env=env)
    assert r.returncode == 1
    assert "exceptions[1] (CVE-2026-0101 in libssl3) expired on" in r.stderr

    ssl = ssl.replace(str(yesterday), str(soon))
    exceptions.write_text("exceptions:\n" + ok + ssl)
    r = harness(*args, "--matrix", str(matrix), env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"{CELL}/head: trivy 0.58.1: 0 blocking, 2 excepted, 1 below high" in r.stderr
    pushed = json.loads((tmp_path / "images.lock.json").read_text())["images"]
    assert {e["role"] for e in pushed} == set(ROLES)
    md = (tmp_path / "report.md").read_text()
    assert "vendored inside the Ray wheel: fixed only by a new Ray release (until" in md


# --- patched on purpose: a patch rebuild keeps every tested digest reachable -------------------


def test_a_patch_rebuild_keeps_the_old_digest_by_its_dated_tag(
    registry: str, tested: Path, tmp_path: Path
) -> None:
    """The cell pushed, then rebuilt with one package moved (a re-lock), tested and pushed
    again to the same tag: both digests stay pullable by their dated tags, the plain tag is
    on the newer, images.lock.json keeps the older in its history, and `harness diff` says
    the Python micro and Ray did not move."""
    target = registry + "-patch"
    env = {"RAYCOMPAT_REGISTRY": target}
    first = tmp_path / "first"
    r = harness("push", "--only", ONLY, "--build-dir", str(first), "--report",
                str(report_with(tested, tmp_path)), env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    old = {e["role"]: e for e in json.loads((first / "images.lock.json").read_text())["images"]}
    day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    assert old["head"]["dated_tag"] == f"{target}/ray-head:2.60.0-py3.11.2-cpu-{day}"

    # the patch: the same cell with click moved (under its own local prefix, so the
    # images the other tests gate on keep their tags)
    patch = tmp_path / "patch"
    patch.mkdir()
    shutil.copytree(ROOT / "locks", patch / "locks")
    text = (
        (ROOT / "matrix.yaml")
        .read_text()
        .replace("prefix: localhost/raycompat", "prefix: localhost/raycompat-patch")
    )
    text = text.replace(
        "constraints:\n",
        'constraints:\n  - {ray: "2.60.0", requirement: "click<8.2", reason: "a patch moves it"}\n',
    )
    (patch / "matrix.yaml").write_text(text)
    r = harness("lock", "--matrix", str(patch / "matrix.yaml"), "--only", ONLY)
    assert r.returncode == 0, r.stderr[-3000:]
    moved = diff.run(ROOT / "locks", patch / "locks", patch=True)
    was, now = (lock.version_of(d / CELL / "runtime.txt", "click") for d in (ROOT / "locks",
                patch / "locks"))  # fmt: skip
    assert now and Version(now) < Version("8.2") and was != now
    assert moved[1] == 0 and f"click {was} -> {now}" in moved[0], moved[0]
    assert moved[0].count("Python packages:") == 1  # one cell moved, nothing else
    build = patch / "build"
    try:
        for command in ("build", "test"):
            r = harness(command, "--matrix", str(patch / "matrix.yaml"), "--only", ONLY,
                        "--build-dir", str(build))  # fmt: skip
            assert r.returncode == 0, r.stderr[-3000:]
        write_scans(build / "report.json")
        r = harness("push", "--matrix", str(patch / "matrix.yaml"), "--only", ONLY,
                    "--build-dir", str(first), "--report", str(build / "report.json"),
                    env=env)  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:]
    finally:
        engine = Engine()
        for role in ROLES:
            engine.untag(f"localhost/raycompat-patch/ray-{role}:2.60.0-py3.11.2-cpu")
    doc = json.loads((first / "images.lock.json").read_text())
    new = {e["role"]: e for e in doc["images"]}
    assert {(e["role"], e["digest"]) for e in doc["history"]} == {
        (role, e["digest"]) for role, e in old.items()
    }
    for role in ROLES:
        assert new[role]["digest"] != old[role]["digest"]
        assert new[role]["dated_tag"] == old[role]["dated_tag"] + ".2"  # the same day
        repo, plain = f"ray-{role}", "2.60.0-py3.11.2-cpu"
        assert "sha256:" + manifest_digest(target, repo, plain) == new[role]["digest"]
        for e in (old[role], new[role]):
            dated = e["dated_tag"].rsplit(":", 1)[1]
            assert "sha256:" + manifest_digest(target, repo, dated) == e["digest"]
    assert "Python micro and Ray unchanged (3.11.2, Ray 2.60.0)" in r.stderr
    assert "digest moved" in r.stderr


# --- the verdict travels with the digest: signatures, attestations, verify --------------------


def cosign_keys(where: Path, prefix: str = "cosign") -> tuple[Path, Path]:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["cosign", "generate-key-pair", "--output-key-prefix", prefix],
        cwd=where, env={**os.environ, "COSIGN_PASSWORD": ""}, check=True, capture_output=True,
    )  # fmt: skip
    return where / f"{prefix}.key", where / f"{prefix}.pub"


def _tamper(registry: str, repo: str, digest: str) -> None:
    """Rewrite the test report attestation's payload in the registry (a check's detail),
    keeping its signature: what someone with push rights but no key can do."""
    host, path = registry.split("/", 1)
    base = f"http://{host}/v2/{path}/{repo}"
    tag = digest.replace(":", "-") + ".att"
    oci = "application/vnd.oci.image.manifest.v1+json"
    with urllib.request.urlopen(urllib.request.Request(f"{base}/manifests/{tag}",
                                headers={"Accept": oci})) as resp:  # fmt: skip
        manifest = json.loads(resp.read())
    for layer in manifest["layers"]:
        with urllib.request.urlopen(f"{base}/blobs/{layer['digest']}") as resp:
            envelope = json.loads(resp.read())
        statement = json.loads(base64.b64decode(envelope["payload"]))
        if statement["predicateType"] != "https://raycompat.dev/test-report/v1":
            continue
        statement["predicate"]["checks"][0]["detail"] = "tampered"
        envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
        blob = json.dumps(envelope).encode()
        new = "sha256:" + hashlib.sha256(blob).hexdigest()
        req = urllib.request.Request(f"{base}/blobs/uploads/", method="POST")
        with urllib.request.urlopen(req) as resp:
            location = resp.headers["Location"]
        url = f"http://{host}{location}" if location.startswith("/") else location
        url += ("&" if "?" in url else "?") + f"digest={new}"
        put = urllib.request.Request(
            url, data=blob, method="PUT", headers={"Content-Type": "application/octet-stream"}
        )
        urllib.request.urlopen(put).close()
        layer["digest"], layer["size"] = new, len(blob)
    body = json.dumps(manifest).encode()
    req = urllib.request.Request(f"{base}/manifests/{tag}", data=body, method="PUT",
                                 headers={"Content-Type": oci})  # fmt: skip
    urllib.request.urlopen(req).close()


def test_a_signed_push_verifies_and_forgeries_do_not(
    registry: str, tested: Path, tmp_path: Path
) -> None:
    """push signs and attests every image by digest (SBOM, SLSA provenance, test report) and
    verify passes on them; verify fails, naming why, with another key, on an image pushed
    by hand under the same tag, on a test report of another digest and on a tampered
    attestation; a push that cannot sign records nothing and moves no tag."""
    key, pub = cosign_keys(tmp_path / "keys")
    other_key, other_pub = cosign_keys(tmp_path / "keys", "other")
    target = registry + "-signed"
    out = tmp_path / "out"
    env = {"RAYCOMPAT_REGISTRY": target, "RAYCOMPAT_COSIGN_KEY": str(key), "COSIGN_PASSWORD": ""}
    args = (
        "push",
        "--only",
        ONLY,
        "--build-dir",
        str(out),
        "--report",
        str(tested / "report.json"),
    )
    r = harness(*args, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    lock_file = out / "images.lock.json"
    entries = {e["role"]: e for e in json.loads(lock_file.read_text())["images"]}
    assert all(e["signed"] == f"key {key}" for e in entries.values())
    assert r.stderr.count("signed (key") == 3

    ok = harness("verify", "--images-lock", str(lock_file), "--key", str(pub))
    assert ok.returncode == 0, ok.stdout + ok.stderr[-2000:]
    assert ok.stdout.count("ok   ") == 3 and "every required one passed" in ok.stdout
    assert all(e["signature"].startswith("sha256:") and e["attestations"].startswith("sha256:")
               for e in entries.values())  # fmt: skip
    # the inventory, from the SBOMs push kept by digest: no image pulled
    q = harness("sbom", "query", "libssl3", "--images-lock", str(lock_file))
    assert q.returncode == 0 and q.stdout.count(" libssl3 ") == 3, q.stdout + q.stderr
    assert harness("sbom", "query", "nosuch", "--images-lock", str(lock_file)).returncode == 1
    wrong = harness("verify", "--images-lock", str(lock_file), "--key", str(other_pub))
    assert wrong.returncode == 1 and wrong.stdout.count("FAIL") == 3
    assert "signature: " in wrong.stdout

    # a test report of another digest, signed with the right key: not this image's verdict
    head, worker = entries["head"], entries["worker"]
    report = tmp_path / "forged.json"
    passed = [{"name": n, "status": "passed", "detail": ""} for n in REQUIRED_CHECKS]
    report.write_text(json.dumps({"cell": CELL, "role": "head", "digest": head["digest"],
                                  "platform": "linux/amd64", "status": "passed",
                                  "checks": passed}))  # fmt: skip
    for ref in (worker["ref"],):
        flags = ["--key", str(key), "--tlog-upload=false", "--allow-http-registry", "--yes"]
        subprocess.run(["cosign", "attest", *flags, "--type", signing.TEST_REPORT,
                        "--predicate", str(report), ref], check=True, capture_output=True,
                       env={**os.environ, "COSIGN_PASSWORD": ""})  # fmt: skip
    problems, _ = signing.verify(signing.Verifier(key=str(pub)), worker["ref"])
    assert problems == []  # its own, true report is still there beside the forged one
    _tamper(target, "ray-notebook", entries["notebook"]["digest"])
    problems, _ = signing.verify(signing.Verifier(key=str(pub)), entries["notebook"]["ref"])
    assert any(p.startswith(f"{signing.TEST_REPORT} attestation") for p in problems), problems

    # an image pushed by hand under the head's tag: the tag no longer names the gate's digest
    engine = Engine()
    hand = f"{target}/ray-head:2.60.0-py3.11.2-cpu"
    engine.tag("localhost/raycompat/ray-worker:2.60.0-py3.11.2-cpu", hand)
    try:
        for event in engine.client.api.push(hand, stream=True, decode=True):
            assert "error" not in event, event
    finally:
        engine.untag(hand)
    r = harness("verify", "--images-lock", str(lock_file), "--key", str(pub))
    assert r.returncode == 1 and r.stdout.count("FAIL") == 2  # the head, and the tampered
    assert f"FAIL {head['tag']} ({CELL}/head)" in r.stdout and "not the pushed" in r.stdout
    assert f"ok   {worker['tag']} ({CELL}/worker)" in r.stdout
    r = harness("verify", "--key", str(pub), head["tag"], worker["ref"])  # by tag, by digest
    assert r.returncode == 1 and f"FAIL {head['tag']}: signature:" in r.stdout
    assert f"ok   {worker['ref']} = {worker['ref']}" in r.stdout and "Python 3.11.2" in r.stdout
    # that image's digest, signed by nobody, does not verify either
    hand_digest = "sha256:" + manifest_digest(target, "ray-head", "2.60.0-py3.11.2-cpu")
    problems, _ = signing.verify(signing.Verifier(key=str(pub)),
                                 f"{target}/ray-head@{hand_digest}")  # fmt: skip
    assert any(p.startswith("signature:") for p in problems)
    # its test report, forged from the head's and signed with the right key: of another digest
    subprocess.run(["cosign", "attest", "--key", str(key), "--tlog-upload=false",
                    "--allow-http-registry", "--yes", "--type", signing.TEST_REPORT,
                    "--predicate", str(report), f"{target}/ray-head@{hand_digest}"],
                   check=True, capture_output=True,
                   env={**os.environ, "COSIGN_PASSWORD": ""})  # fmt: skip
    problems, _ = signing.verify(signing.Verifier(key=str(pub)),
                                 f"{target}/ray-head@{hand_digest}")  # fmt: skip
    assert any("of another digest" in p for p in problems), problems

    # a push that cannot sign (the key's password is wrong): nothing recorded, no tag moved
    before = tag_digest(target, "ray-worker", "2.60.0-py3.11.2-cpu")
    bad = {**env, "RAYCOMPAT_COSIGN_KEY": str(other_key), "COSIGN_PASSWORD": "wrong"}
    r = harness("push", "--only", ONLY, "--build-dir", str(tmp_path / "bad"), "--report",
                str(tested / "report.json"), env=bad)  # fmt: skip
    assert r.returncode == 2 and "cosign" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "bad" / "images.lock.json").exists()
    assert tag_digest(target, "ray-worker", "2.60.0-py3.11.2-cpu") == before
