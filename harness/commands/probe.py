"""`probe`: a cluster the harness did not start, checked from this interpreter or an image:
Ray's own verdict for this client, and the harness's node-by-node comparison."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness import children, grid, matrix
from harness.backends import probe_result
from harness.engine import SECRETS, STAGING, Engine
from harness.errors import HarnessError
from harness.inside import PROBE_SOURCE
from harness.inside.probe import FROM_SERVER, MISSING_EXTRA
from harness.probe_client import cluster_args, jobs_args, version_check_args
from harness.report import brief
from harness.timeouts import PROBE_MARGIN


def run(args: argparse.Namespace, run_id: str) -> int:
    m = matrix.load(args.matrix) if args.matrix.is_file() else None
    policy = m.grid if m else matrix.GridPolicy()
    ray_client = args.address.startswith("ray://")
    jobs_api = args.address.startswith(("http://", "https://"))
    port = re.fullmatch(r"(ray://|https?://)?[A-Za-z0-9.\-\[\]:]+:([0-9]{1,5})", args.address)
    if not port or not 0 < int(port.group(2)) < 65536:
        raise HarnessError(
            f"--address {args.address!r}: use ray://HOST:PORT (Ray Client), "
            "http://HOST:PORT (the dashboard's Jobs API) or HOST:PORT (GCS), PORT 1-65535"
        )
    if not args.image and importlib.util.find_spec("ray") is None:
        raise HarnessError(
            f"Ray is not installed in {sys.executable}; run the client side in a notebook "
            "image instead: --image <prefix>/ray-notebook:<ray>-py<python>-<variant>"
        )
    timeout = int(args.timeout)
    if ray_client:
        command = cluster_args(args.address, nodes=1, timeout=timeout)
    elif jobs_api:
        command = jobs_args(args.address, timeout)
    else:
        command = version_check_args(args.address, timeout)
    unreachable = (
        f"cannot reach {args.address} within {timeout}s: check the address and port, that "
        "the cluster is up, and that this machine (or --image's container, on the host "
        "network) can reach it"
    )
    # the probe bounds itself; the outer bound covers Python and Ray starting up around it
    if args.image:
        engine = Engine()
        engine.ping()
        secrets, env = {}, {}
        token = _token()
        if token:  # the cluster wants Ray's token: a file only the image's user can read
            secrets["auth_token"] = token
            env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": f"{SECRETS}/auth_token"}
        r = engine.run_once(
            args.image,
            [f"{STAGING}/probe.py", *command],
            entrypoint=["python"],
            network_mode="host",
            files={"probe.py": PROBE_SOURCE},
            env=env,
            secrets=secrets,
            timeout=timeout + PROBE_MARGIN,
        )
        if r.returncode == 124:
            raise HarnessError(unreachable)
        rc, out, err = r.returncode, r.stdout, r.stderr
    else:
        try:
            rc, out, err = children.run(
                [sys.executable, "-", *command], input=PROBE_SOURCE, timeout=timeout + PROBE_MARGIN
            )
        except subprocess.TimeoutExpired:
            raise HarnessError(unreachable) from None
    result = probe_result(out)
    if result is None:
        why = (err.strip().splitlines() or ["no output"])[-1][:300]
        raise HarnessError(f"the probe gave no answer (exit {rc}): {why}")
    extra = _missing_extra(result)
    if extra:
        name, said = extra
        client = result.get("client") or {}
        where = f"the image {args.image}" if args.image else sys.executable
        raise HarnessError(
            f"the Ray in {where} lacks its `{name}` extra, which this path needs: install "
            f"'ray[{name}]=={client.get('ray') or '<its version>'}' there, or run the client "
            "side in a notebook image built here (--image <prefix>/ray-notebook:...), which "
            f"has every extra (Ray said: {said})"
        )
    refusal = _token_refusal(result)
    if refusal:
        given = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
        raise HarnessError(
            f"{args.address} refused this client's token: check RAY_AUTH_TOKEN or "
            f"RAY_AUTH_TOKEN_PATH (Ray said: {refusal})"
            if given
            else f"{args.address} wants Ray's token (the cluster runs with token "
            "authentication): set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN or "
            f"RAY_AUTH_TOKEN_PATH, as Ray reads them (Ray said: {refusal})"
        )
    if jobs_api:
        return _jobs(args.address, result, unreachable)
    if not result.get("ok") and "client" not in result:
        raise HarnessError(f"{unreachable} ({str(result.get('message') or result)[:200]})")
    if not ray_client:
        cluster = result.get("cluster") or {}
        node = {"python": cluster.get("python_version"), "ray": cluster.get("ray_version")}
        checked = tuple(k for k in policy.fail if k in node)
        ours = grid.judge(result["client"], [node], matrix.GridPolicy(fail=checked, warn=()))
        print(f"Ray's driver check against {args.address}: {result['verdict']}")
        print(f"  {' '.join(str(result.get('message')).split())[:600]}")
        print(f"harness: {ours.verdict} (cluster metadata: {checked})")
        for reason in ours.reasons:
            print(f"  - {reason}")
        print("(for node-by-node parity and wire libraries, probe ray://HOST:10001)")
        return 0 if ours.verdict != grid.INCOMPATIBLE and result["verdict"] == "accepted" else 1
    client = grid.ray_client_verdict(result)
    nodes = [n.get("facts") or {} for n in result.get("nodes", [])]
    answered = client.verdict != grid.UNDECIDED or FROM_SERVER in client.message.lower()
    if not answered and not nodes:
        raise HarnessError(f"{unreachable} ({client.message[:200]})")
    print(f"Ray Client {args.address}: {client.verdict}: {brief(client.message, 600)}")
    if not nodes:  # Ray ended the connection: there is nothing of the nodes to compare
        host = args.address.removeprefix("ray://").rsplit(":", 1)[0]
        print(
            "harness: undecided: no node was probed, Ray ended the connection (above); "
            f"`probe --address {host}:6379` compares this client with the cluster's Ray "
            "and Python"
        )
        return 1
    ours = grid.judge(result.get("client") or {}, nodes, policy)
    print(f"harness: {ours.verdict} over {len(nodes)} node(s)")
    for reason in ours.reasons:
        print(f"  - {reason}")
    return 0 if ours.verdict != grid.INCOMPATIBLE and client.verdict != "rejected" else 1


def _jobs(address: str, result: dict[str, object], unreachable: str) -> int:
    """The Jobs path, judged as the grid judges it: Ray's answer to a job submitted from
    here, and the harness's verdict (the job runs on the cluster's interpreter)."""
    job = result.get("job") or {}
    if not job and "Connection refused" in str(result.get("error")):
        raise HarnessError(f"{unreachable} ({str(result.get('error'))[:200]})")
    facts = (job.get("facts") or {}) if isinstance(job, dict) else {}
    cluster = facts.get("driver") or {}
    ray_verdict, ours = grid.jobs_verdicts(result, cluster)
    print(f"Jobs API {address}: {ray_verdict.verdict}: {ray_verdict.message[:500]}")
    print(f"harness (Jobs path): {ours.verdict}")
    for reason in ours.reasons:
        print(f"  - {reason}")
    if cluster:
        print(f"  the job's driver ran on Python {cluster.get('python')}, Ray {cluster.get('ray')}")
    ok = ours.verdict in (grid.COMPATIBLE, grid.WARN) and ray_verdict.verdict == "accepted"
    return 0 if ok else 1


# How each path says a token is missing or wrong: Ray Client's server, GCS, the dashboard.
TOKEN_REFUSALS = ("authentication token", "authenticationerror", "answered 401")


def _ray_said(result: Mapping[str, Any]) -> list[str]:
    """What Ray answered the probe, on whichever path: connect's error, the error, the
    driver check's message."""
    connect = result.get("connect") or {}
    said = (connect.get("error"), result.get("error"), result.get("message"))
    return [s for s in said if isinstance(s, str)]


def _token_refusal(result: Mapping[str, Any]) -> str:
    """Ray's words when the cluster refused this client for want of the right token, else
    "" (a refusal is not a verdict on compatibility)."""
    for said in _ray_said(result):
        if any(w in said.lower() for w in TOKEN_REFUSALS):
            return brief(said, 300)
    return ""


def _missing_extra(result: Mapping[str, Any]) -> tuple[str, str] | None:
    """(the extra, Ray's words) when this client's Ray lacks an extra of Ray the path needs:
    a fault of the client's installation, not an answer of the cluster."""
    for said in _ray_said(result):
        if found := MISSING_EXTRA.search(said):
            return found.group(1), brief(said, 300)
    return None


def _token() -> str:
    """Ray's token from this environment (RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH, as Ray
    reads them) when RAY_AUTH_MODE=token, for the probe in --image; else ""."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return ""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    if not token:
        try:
            token = Path(path).read_text().strip()
        except OSError:
            raise HarnessError(
                f"RAY_AUTH_MODE=token but no token: set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH "
                f"({path} cannot be read)"
            ) from None
    return token
