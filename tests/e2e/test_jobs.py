"""The Jobs API path against a real cluster, its negative cases: a job that raises is
reported FAILED with its log tail and the check built from it fails (`jobs:submit`); a
Serve route that was never deployed is a failed `serve:http`, not a pass. And what the
KubeRay manifests hand to Ray (a RayJob's entrypoint, a RayService's serveConfigV2) run
on a real cluster of the cell, as the operator would run them."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

import pytest
import yaml

from harness import cluster_checks, k8s, matrix, timeouts
from harness.backends import open_backend
from harness.engine import Engine, tar_of
from harness.labels import RUN as LABEL_RUN
from harness.probe_client import Probe
from tests.conftest import ROOT
from tests.e2e.cli import harness

pytestmark = pytest.mark.e2e
ONLY = "ray=2.60.0,python=3.11.2,variant=cpu"


@pytest.fixture(scope="module")
def cell() -> matrix.Cell:
    r = harness("build", "--only", ONLY)
    assert r.returncode == 0, r.stderr[-3000:]
    m = matrix.load(ROOT / "matrix.yaml")
    return next(c for c in m.cells if c.id == "ray2.60.0-py3.11.2-cpu")


def test_a_failing_job_is_failed_with_its_log(cell: matrix.Cell, tmp_path: Path) -> None:
    engine = Engine()
    run_id = "jobs" + uuid.uuid4().hex[:8]
    backend = open_backend("containers", engine, run_id)
    images = cell.tags("localhost/raycompat")
    with backend, backend.cluster(cell, images, tmp_path, timeouts.DEFAULT) as cluster:
        ready = Probe(cluster, cluster.head).cluster("auto", nodes=2, timeout=120)
        node_ids = [n["node_id"] for n in ready.get("nodes", [])]
        assert len(node_ids) == 2, ready
        r = Probe(cluster, cluster.notebook).jobs(
            f"http://{cluster.head_host}:8265", 120, fail=True
        )
    assert r["job"]["status"] == "FAILED", r
    check = cluster_checks.jobs(r, {"python": cell.python, "ray": cell.ray}, node_ids)
    assert check.status == "failed"
    assert "FAILED" in check.detail and "this job fails on purpose" in check.detail
    assert engine.ids("container", {LABEL_RUN: run_id}) == []


def test_a_route_that_is_not_deployed_fails_serve_http(cell: matrix.Cell, tmp_path: Path) -> None:
    engine = Engine()
    run_id = "serve" + uuid.uuid4().hex[:8]
    backend = open_backend("containers", engine, run_id)
    images = cell.tags("localhost/raycompat")
    with backend, backend.cluster(cell, images, tmp_path, timeouts.DEFAULT) as cluster:
        ready = Probe(cluster, cluster.head).cluster("auto", nodes=2, timeout=120)
        assert len(ready.get("nodes", [])) == 2, ready
        r = Probe(cluster, cluster.notebook).serve(
            f"http://{cluster.head_host}:8265",
            [f"http://{cluster.head_host}:{cluster_checks.SERVE_PORT}"],
            180,
            route="/not-deployed",
        )
    assert r["deploy"]["status"] == "SUCCEEDED", r  # the application itself is up
    assert r["replies"][0]["status"] == 404, r
    expected = {"python": cell.python, "ray": cell.ray}
    check = cluster_checks.serve(r, expected, "/not-deployed")
    assert check.status == "failed"
    assert "/not-deployed answered 404" in check.detail
    assert "/-/routes (200) does not list /not-deployed" in check.detail
    assert r["shutdown"]["status"] == 200  # and Serve was still shut down
    assert engine.ids("container", {LABEL_RUN: run_id}) == []


SUBMIT = """
import os, sys, time
from ray.job_submission import JobSubmissionClient, JobStatus
client = JobSubmissionClient(os.environ["DASHBOARD"])
job = client.submit_job(entrypoint=os.environ["ENTRYPOINT"])
status = client.get_job_status(job)
while status not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
    time.sleep(1)
    status = client.get_job_status(job)
print(status.value)
print(client.get_job_logs(job))
"""


def test_the_rayjob_entrypoint_checks_parity_for_real(cell: matrix.Cell, tmp_path: Path) -> None:
    """The RayJob that `manifests` renders, its entrypoint submitted as is through the Jobs
    API (KubeRay's HTTPMode does the same): it passes on the cell's cluster, and it fails
    when the cell it expects is another."""
    engine = Engine()
    run_id = "rayjob" + uuid.uuid4().hex[:8]
    entrypoint = k8s.rayjob(cell, {r: f"x/ray-{r}" for r in matrix.ROLES})["spec"]["entrypoint"]
    other = entrypoint.replace(f'("{cell.python}", ', '("3.0.0", ')
    assert other != entrypoint
    backend = open_backend("containers", engine, run_id)
    images = cell.tags("localhost/raycompat")
    with backend, backend.cluster(cell, images, tmp_path, timeouts.DEFAULT) as cluster:
        ready = Probe(cluster, cluster.head).cluster("auto", nodes=2, timeout=120)
        assert len(ready.get("nodes", [])) == 2, ready
        env = {"DASHBOARD": f"http://{cluster.head_host}:8265"}
        outcomes = [
            cluster.exec(
                cluster.notebook,
                ["python", "-c", SUBMIT],
                timeout=300,
                env={**env, "ENTRYPOINT": e},
            )
            for e in (entrypoint, other)
        ]
    (rc, out, err), (rc_other, out_other, _) = outcomes
    assert rc == 0, out + err
    assert out.startswith("SUCCEEDED"), out
    assert "RAYCOMPAT_PARITY" in out and "2 node(s) OK" in out, out
    assert rc_other == 0 and out_other.startswith("FAILED"), out_other
    [line] = [ln for ln in out_other.splitlines() if ln.startswith("RAYCOMPAT_PARITY")]
    assert "2 node(s)" in line and not line.endswith("OK"), line
    assert engine.ids("container", {LABEL_RUN: run_id}) == []


# What KubeRay's RayService controller does with serveConfigV2: PUT it, as JSON, to the
# head's Serve REST API, then read the applications' status until it settles.
APPLY = """
import json, os, time, urllib.error, urllib.request
base = os.environ["DASHBOARD"] + "/api/serve/applications/"
headers = {"Content-Type": "application/json"}
if os.environ.get("RAY_AUTH_TOKEN_PATH"):  # the cluster's token, as Ray's clients send it
    headers["Authorization"] = "Bearer " + open(os.environ["RAY_AUTH_TOKEN_PATH"]).read().strip()
def call(method, url, body=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
code, body = call("PUT", base, os.environ["CONFIG"].encode())
assert code == 200, (code, body)
app, status = {}, None
for _ in range(150):
    code, body = call("GET", base)
    app = json.loads(body).get("applications", {}).get(os.environ["APP"], {}) if code == 200 else {}
    status = app.get("status")
    if status in ("RUNNING", "DEPLOY_FAILED"):
        break
    time.sleep(2)
reply = call("GET", os.environ["ROUTE"]) if status == "RUNNING" else None
print(json.dumps({"status": status, "message": app.get("message", ""), "reply": reply}))
"""


def test_the_rayservice_config_deploys_on_a_real_cluster(cell: matrix.Cell, tmp_path: Path) -> None:
    """The RayService that `manifests` renders, on the cell's real cluster the way KubeRay
    runs it: its ConfigMap's module where the pods mount it, its serveConfigV2 PUT to the
    Serve REST API. It deploys and answers with the cell's facts; the same config with the
    module elsewhere is DEPLOY_FAILED (so the mount is what makes it work)."""
    engine = Engine()
    run_id = "rayservice" + uuid.uuid4().hex[:8]
    config_map, service = k8s.rayservice(cell, {r: f"x/ray-{r}" for r in matrix.ROLES})
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    [app] = config["applications"]
    broken = copy.deepcopy(config)
    broken["applications"][0]["runtime_env"]["env_vars"]["PYTHONPATH"] = "/opt/elsewhere"
    top, below = k8s.SERVE_DIR.strip("/").split("/", 1)  # /opt exists in every image
    backend = open_backend("containers", engine, run_id)
    images = cell.tags("localhost/raycompat")
    with backend, backend.cluster(cell, images, tmp_path, timeouts.DEFAULT) as cluster:
        ready = Probe(cluster, cluster.head).cluster("auto", nodes=2, timeout=120)
        assert len(ready.get("nodes", [])) == 2, ready
        for node in cluster.node_containers():  # what the ConfigMap volume does in a pod
            files = {f"{below}/{name}": text for name, text in config_map["data"].items()}
            engine.client.api.put_archive(node, f"/{top}", tar_of(files))
        env = {
            "DASHBOARD": f"http://{cluster.head_host}:8265",
            "APP": app["name"],
            "ROUTE": f"http://{cluster.head_host}:{config['http_options']['port']}"
            + app["route_prefix"],
        }
        outcomes = []
        for c in (broken, config):
            rc, out, err = cluster.exec(
                cluster.notebook,
                ["python", "-c", APPLY],
                timeout=360,
                env={**env, "CONFIG": json.dumps(c)},
            )
            assert rc == 0, out + err
            outcomes.append(json.loads(out.strip().splitlines()[-1]))
    failed, deployed = outcomes
    assert failed["status"] == "DEPLOY_FAILED", failed
    assert "raycompat_serve" in failed["message"], failed
    assert deployed["status"] == "RUNNING", deployed
    code, body = deployed["reply"]
    assert code == 200, deployed
    facts = json.loads(body)
    assert (facts["python"], facts["ray"]) == (cell.python, cell.ray), facts
    assert engine.ids("container", {LABEL_RUN: run_id}) == []
