"""Code that runs *inside* the images: in node containers, the notebook client, or a build check.

It is fed to the image's own interpreter on stdin (`python - COMMAND ...`), so it depends on
nothing but the standard library and what the image installed (ray, nbclient). It prints one
JSON document on the last line of stdout. Keep it compatible with Python 3.9.

Commands:
  facts                      Python micro, Ray version and commit of this interpreter
  structure                  facts + what a structure check needs (uid, leftovers, ray CLI)
  cluster ADDRESS ...        connect (ray:// client or host:port driver), wait for the nodes,
                             run a probe pinned to every alive node and, with --workload,
                             tasks, an actor and a cross-node object transfer
  notebook PATH              execute an .ipynb with nbclient, return what its cells printed
  jupyter                    wait for JupyterLab's /api/status and /lab on this host
  jobs http://HOST:8265      the dashboard's /api/version and a job through the Jobs API
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from typing import Any

Json = dict[str, Any]


def facts() -> Json:
    out: Json = {
        "python": "%d.%d.%d" % sys.version_info[:3],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "executable": sys.executable,
        "hostname": platform.node(),
        "uid": os.getuid(),
    }
    try:
        import ray

        out["ray"] = ray.__version__
        out["commit"] = ray.__commit__
    except Exception as exc:
        out["ray"] = None
        out["commit"] = None
        out["ray_error"] = repr(exc)
    out["libs"] = wire_libs()
    return out


# How often a wait during start-up asks again (a port, nodes alive, a Jupyter server): the
# cores are partly idle then, each answer is a cheap local call and the cell waits for it.
# Waits during the lanes ask once a second: both cores are busy there, and each question
# costs the dashboard and this probe CPU the lanes need.
POLL = 0.25
# Libraries whose objects or protocols cross the wire between a client and the cluster.
WIRE_LIBS = ("cloudpickle", "grpcio", "protobuf", "pyarrow", "numpy", "pydantic", "msgpack")


def wire_libs() -> dict[str, Any]:
    from importlib import metadata

    out: dict[str, Any] = {}
    for name in WIRE_LIBS:
        try:
            out[name] = metadata.version(name)
        except Exception:
            out[name] = None
    if out.get("cloudpickle") is None:  # Ray vendors it
        try:
            import ray.cloudpickle as vendored

            out["cloudpickle"] = "%s (vendored)" % vendored.__version__
        except Exception:
            pass
    return out


def _owned_files() -> set[str]:
    """Files listed in the RECORD of an installed distribution (their own data, not leftovers)."""
    owned = set()
    try:
        from importlib import metadata

        for dist in metadata.distributions():
            for f in dist.files or []:
                owned.add(os.path.realpath(str(dist.locate_file(f))))
    except Exception:
        pass
    return owned


def cuda() -> Json:
    """Load libcudart through the dynamic loader and ask its runtime version (no GPU needed)."""
    import ctypes

    try:
        lib = ctypes.CDLL("libcudart.so.12")
    except OSError as exc:
        return {"ok": False, "error": "libcudart.so.12 does not load: %s" % exc}
    version = ctypes.c_int()
    rc = lib.cudaRuntimeGetVersion(ctypes.byref(version))
    devices = ctypes.c_int()
    device_rc = lib.cudaGetDeviceCount(ctypes.byref(devices))
    v = version.value
    return {
        "ok": rc == 0,
        "version": v,
        "runtime": "%d.%d" % (v // 1000, (v % 1000) // 10),
        "device_count": devices.value if device_rc == 0 else 0,
        "device_rc": device_rc,  # 35/100 without a driver or GPU: expected on CPU hosts
    }


def packages() -> Json:
    """Debian packages (dpkg: version, architecture) and Python distributions (pip freeze
    form, and each one's declared licence) in this image: what its SBOM lists."""
    out: Json = {}
    try:
        dpkg = subprocess.run(
            [
                "dpkg-query",
                "-W",
                "-f",
                "${Package}\t${Version}\t${Architecture}\t${source:Package}\t${source:Version}\n",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        rows = [line.split("\t") for line in dpkg.stdout.splitlines() if line.count("\t") == 4]
        out["dpkg"] = dict((r[0], r[1]) for r in rows)
        out["dpkg_arch"] = dict((r[0], r[2]) for r in rows)
        # the source package: Debian's security tracker (and so every scanner) files
        # advisories under it (libssl3's under openssl)
        out["dpkg_source"] = dict((r[0], [r[3], r[4]]) for r in rows)
        found = ((r[0], _debian_licence(r[0])) for r in rows)
        out["dpkg_licenses"] = dict((name, text) for name, text in found if text)
    except Exception as exc:
        out["dpkg"] = {"error": repr(exc)}
    out["os"] = _os_release()
    from importlib import metadata

    dists = list(metadata.distributions())
    out["pip_freeze"] = sorted("%s==%s" % (d.metadata["Name"], d.version) for d in dists)
    declared = ((d.metadata["Name"], _licence(d.metadata)) for d in dists)
    out["python_licenses"] = dict((name, text) for name, text in declared if text)
    return out


def _os_release() -> Json:
    """The distribution and its point release ("debian", "12.7"): the operating-system
    component a scanner needs before it matches Debian packages."""
    fields = {}
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                fields[key] = value.strip('"')
    except OSError:
        pass
    version = fields.get("VERSION_ID", "")
    try:
        with open("/etc/debian_version", encoding="utf-8") as f:
            point = f.read().strip()
        if point[:1].isdigit():
            version = point
    except OSError:
        pass
    return {"id": fields.get("ID", ""), "version": version}


def _debian_licence(package: str) -> str:
    """The licences a package's machine-readable copyright file (DEP-5) names, e.g.
    "GPL-2+, LGPL-2.1+"; "" when it has none or is free-form text."""
    name = package.split(":")[0]
    try:
        with open("/usr/share/doc/%s/copyright" % name, encoding="utf-8", errors="replace") as f:
            text = f.read(200000)
    except OSError:
        return ""
    if not text.startswith("Format:"):
        return ""
    found = set()
    for line in text.splitlines():
        if line.startswith("License:"):
            short = line[len("License:") :].strip()
            if short and len(short) <= 80:
                found.add(short)
    return ", ".join(sorted(found))


def _licence(meta: Any) -> str:
    """A distribution's declared licence: its SPDX expression (PEP 639), else the licence
    classifiers, else a one-line License field; "" when it declares none."""
    expression = meta.get("License-Expression")
    if expression:
        return str(expression).strip()
    classifiers = [
        c.split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if c.startswith("License ::")
    ]
    if classifiers:  # names, not SPDX ids ("MIT License"): a named licence, never an expression
        return ", ".join(sorted(set(classifiers)))
    text = str(meta.get("License") or "").strip()
    return text if text and "\n" not in text and len(text) <= 80 else ""


VENV = "/opt/ray"


def _pyc_kind(path: str) -> str:
    try:
        with open(path, "rb") as f:
            flags = int.from_bytes(f.read(8)[4:8], "little")
    except OSError:
        return "timestamp"
    return {3: "checked-hash", 1: "unchecked-hash"}.get(flags, "timestamp")


# One module per layer the harness builds or recompiles: the base's stdlib, the runtime
# layer, the notebook's layer (where installed). Their bytecode is compiled without
# Python 3.11's column tables (see images/Dockerfile and harness/base.py).
STDLIB_SAMPLE = "json"  # the base's layer: judged only on a base the harness built
COLUMN_SAMPLES = (STDLIB_SAMPLE, "ray", "jupyter_server")


def column_tables() -> Any:
    """Per sampled module: whether its .pyc carries column tables, "no pyc" or "unreadable";
    None before Python 3.11 (which has none)."""
    if sys.version_info < (3, 11):
        return None
    import importlib.util
    import marshal

    out: Json = {}
    for name in COLUMN_SAMPLES:
        spec = importlib.util.find_spec(name)  # finds, does not import
        if spec is None or not spec.cached:
            continue
        try:
            with open(spec.cached, "rb") as f:
                code = marshal.loads(f.read()[16:])
        except FileNotFoundError:
            out[name] = "no pyc"
            continue
        except (OSError, ValueError, EOFError, TypeError):
            out[name] = "unreadable"
            continue
        out[name] = any(p[2] is not None for p in code.co_positions())
    return out


def structure() -> Json:
    out = facts()
    out.update(packages())
    out["cuda"] = cuda() if os.environ.get("NVIDIA_VISIBLE_DEVICES") else None
    owned = _owned_files()
    packaged: list[str] = []
    leftovers: list[str] = []
    caches: list[str] = []
    # Bytecode in the venv (every layer the harness builds writes there), by .pyc header
    # flags (PEP 552): 3 checked-hash, 1 unchecked-hash, 0 timestamp.
    pyc: Json = {"checked-hash": 0, "unchecked-hash": 0, "timestamp": 0, "examples": []}
    for root, dirs, files in os.walk("/", topdown=True):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in ("/proc", "/sys", "/dev")]
        for name in files:
            if name.endswith(".whl"):
                path = os.path.join(root, name)
                (packaged if os.path.realpath(path) in owned else leftovers).append(path)
            elif name.endswith(".pyc") and root.startswith(VENV + "/"):
                kind = _pyc_kind(os.path.join(root, name))
                pyc[kind] += 1
                if kind != "checked-hash" and len(pyc["examples"]) < 5:
                    pyc["examples"].append(os.path.join(root, name))
        for name in dirs:
            path = os.path.join(root, name)
            if path.endswith(("/.cache/pip", "/.cache/uv")):
                caches.append(path)
    out["bytecode"] = pyc
    out["column_tables"] = column_tables()
    out["wheel_files"] = leftovers[:20]
    out["packaged_wheels"] = len(packaged)
    out["pip_caches"] = caches[:20]
    try:  # how KubeRay starts a node and probes it: a bash login shell, wget
        shell = subprocess.run(
            ["bash", "-lc", "command -v ray; command -v wget"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        out["login_shell"] = shell.stdout.split()
    except Exception as exc:
        out["login_shell"] = [repr(exc)]
    try:
        cli = subprocess.run(["ray", "--version"], capture_output=True, text=True, timeout=120)
        out["ray_cli"] = (cli.stdout + cli.stderr).strip()
        out["ray_cli_rc"] = cli.returncode
    except Exception as exc:
        out["ray_cli"] = repr(exc)
        out["ray_cli_rc"] = -1
    return out


class _Captured(logging.Handler):
    """Keeps Ray's own warnings (e.g. 'Python patch version mismatch') for the report."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()[:500]
        if message not in self.messages:  # a record can reach several of our handlers
            self.messages.append(message)


SERVER_SAID = "Received when checking init: "  # Ray Client's debug line: the server's words


# A Ray Client server's refusal of this client's token (Ray 2.60.0's server says "Invalid or
# missing authentication token"): no retry can change it.
TOKEN_REFUSED = re.compile(r"authenticat", re.IGNORECASE)


class ServerRefused(Exception):
    """Ray Client's server refused this client's token. Ray Client retries that as if the
    server were unavailable: three attempts with a growing sleep between them (5, 10, 15 s
    in Ray 2.9.3 and 2.51.2, fixed in their code; Ray 2.60.0 reads the bounds from
    RAY_CLIENT_*_CONNECTION_TIMEOUT_S, which the probe sets to 1 and 2 s). The probe ends
    the retries at the first refusal: the error carries the server's words instead of Ray's
    later timeout."""


class _ServerWords(logging.Handler):
    """What a Ray Client server said when it refused the connection (a token, for one):
    Ray logs it only at debug level and retries as if the server were unavailable. A
    refused token raises ServerRefused out of Ray's retry loop (the debug line is logged
    in its `except grpc.RpcError`, in the caller's thread, in every Ray this harness
    builds); other words (a server still starting) let Ray retry."""

    def __init__(self, into: _Captured) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(SERVER_SAID):
            self.into.emit(record)
            if TOKEN_REFUSED.search(message):
                raise ServerRefused("Ray Client's server refused the connection")


class _Onwards(logging.Handler):
    """Hands records of INFO and above on to `to` (and its parents), as propagation would."""

    def __init__(self, to: logging.Logger) -> None:
        super().__init__(logging.INFO)
        self.to = to

    def emit(self, record: logging.LogRecord) -> None:
        self.to.handle(record)


def _listen_to_the_server(captured: _Captured) -> None:
    """Ray Client's debug records reach `captured` when they carry the server's words; the
    rest of its debug output goes nowhere (not to Ray's stderr handler)."""
    worker_log = logging.getLogger("ray.util.client.worker")
    if any(isinstance(h, _ServerWords) for h in worker_log.handlers):
        return
    worker_log.setLevel(logging.DEBUG)
    worker_log.propagate = False
    worker_log.addHandler(_ServerWords(captured))
    worker_log.addHandler(_Onwards(logging.getLogger("ray.util.client")))


def _section(fn: Callable[[], Json]) -> Json:
    try:
        return {"ok": True, **fn()}
    except Exception as exc:
        return {
            "ok": False,
            "error": "%s: %s" % (type(exc).__name__, exc),
            "traceback": traceback.format_exc()[-2000:],
        }


def _wait_port(address: str, deadline: float) -> None:
    """Wait until host:port accepts TCP: ray.init against a port nobody listens on yet sits
    in a long internal retry, so knocking first keeps the connect time short."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    while time.time() < deadline:
        try:
            with socket.create_connection((host, int(port)), timeout=2):
                return
        except OSError:
            time.sleep(POLL)


FROM_SERVER = "initialization failure from server"  # Ray Client: the server answered
NO_SPECIFIC_SERVER = "starting ray client server failed"  # ... without a server for the client
# How Ray says this client's own Ray lacks an extra a path needs (Ray Client: `client`;
# JobSubmissionClient: `default`): "... please reinstall by executing `pip install ray[client]`"
MISSING_EXTRA = re.compile(r"pip install '?ray\[(\w+)\]")


def _connect(address: str, deadline: float, captured: _Captured, once: bool = False) -> Json:
    """ray.init until it connects, Ray gives a verdict or the deadline passes; with `once`
    (a cluster already proven up), one ray.init: Ray's own connection retries only."""
    import ray

    attempts = 0
    last = first = ""
    while True:
        attempts += 1
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
            out = {"ok": True, "attempts": attempts, "warnings": captured.messages}
            if first:  # a retry: the host reports it with the first attempt's evidence
                out["first_error"] = first[:2000]
            return out
        except Exception as exc:
            last = "%s: %s" % (type(exc).__name__, exc)
            first = first or last
            try:
                ray.shutdown()
            except Exception:
                pass
            # A version mismatch, a refused token or a server that took the connection and
            # failed it in its own code (e.g. a Ray Client of another Ray: its JobConfig
            # lacks what the server reads) is Ray's verdict, not a cluster still starting:
            # stop at once. (Ray Client retries a refused token as if the server were
            # unavailable and says only "timeout"; its debug log has the server's words.)
            # A server that could not start its process for this client is not a verdict.
            # Nor is a Ray here without its `client` extra, but no retry can change it.
            said = " ".join([last, *captured.messages]).lower()
            refused = FROM_SERVER in said and NO_SPECIFIC_SERVER not in said
            verdict = refused or "mismatch" in said or bool(TOKEN_REFUSED.search(said))
            if verdict or MISSING_EXTRA.search(last) or once or time.time() > deadline:
                said_so = [m for m in captured.messages if m.startswith(SERVER_SAID)]
                if said_so:
                    last += " (the server said: %s)" % said_so[-1][len(SERVER_SAID) :]
                return {
                    "ok": False,
                    "attempts": attempts,
                    "error": last[:4000],
                    "warnings": [m for m in captured.messages if m not in said_so],
                }
            time.sleep(2)


def _alive_nodes(expect: int, deadline: float) -> list[Json]:
    import ray

    while True:
        alive = [n for n in ray.nodes() if n.get("Alive")]
        if len(alive) >= expect or time.time() > deadline:
            return alive
        time.sleep(POLL)


def _node_probes(nodes: list[Json], timeout: float) -> list[Json]:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    def node_facts() -> Json:
        import ray as r

        out = facts()
        out["node_id"] = r.get_runtime_context().get_node_id()
        return out

    results: list[Json] = []
    refs = []
    for node in nodes:
        strategy = NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
        refs.append((node, node_facts.options(scheduling_strategy=strategy).remote()))
    for node, ref in refs:
        entry: Json = {
            "node_id": node["NodeID"],
            "address": node.get("NodeManagerAddress"),
            "hostname": node.get("NodeManagerHostname"),
        }
        try:
            entry["facts"] = ray.get(ref, timeout=timeout)
        except Exception as exc:
            entry["error"] = "%s: %s" % (type(exc).__name__, exc)
        results.append(entry)
    return results


def _workload(nodes: list[Json], timeout: float) -> Json:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    def here() -> str:
        return str(ray.get_runtime_context().get_node_id())

    # A whole CPU each: at most one task per core at a time, so a node starts two workers
    # for the 24 tasks instead of four (measured; a worker process costs ~1.5 CPU-s here).
    @ray.remote(num_cpus=1)
    def square(x: int) -> list[Any]:
        time.sleep(0.05)
        return [x * x, here()]

    @ray.remote(num_cpus=0)
    class Counter:
        def __init__(self) -> None:
            self.n = 0

        def add(self, k: int) -> int:
            self.n += k
            return self.n

        def node(self) -> str:
            return here()

    @ray.remote(num_cpus=0)
    def produce(size: int) -> bytes:
        return hashlib.sha256(b"seed").digest() * (size // 32)

    @ray.remote(num_cpus=0)
    def consume(data: bytes) -> list[Any]:
        return [hashlib.sha256(data).hexdigest(), len(data), here()]

    node_ids = [n["NodeID"] for n in nodes]
    out: Json = {}
    tasks = ray.get(
        [square.options(scheduling_strategy="SPREAD").remote(i) for i in range(24)], timeout=timeout
    )
    out["tasks"] = {
        "count": len(tasks),
        "sum_ok": sum(r[0] for r in tasks) == sum(i * i for i in range(24)),
        "nodes": sorted({r[1] for r in tasks}),
    }
    counter = Counter.remote()  # type: ignore[attr-defined]
    values = [ray.get(counter.add.remote(k), timeout=timeout) for k in (1, 2, 3)]
    out["actor"] = {
        "values": values,
        "ok": values == [1, 3, 6],
        "node": ray.get(counter.node.remote(), timeout=timeout),
    }
    ray.kill(counter)
    if len(node_ids) >= 2:
        src, dst = node_ids[0], node_ids[-1]
        size = 4 * 1024 * 1024  # large enough to live in the object store, not inline
        ref = produce.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=src, soft=False)
        ).remote(size)
        digest, length, reader = ray.get(
            consume.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=dst, soft=False)
            ).remote(ref),
            timeout=timeout,
        )
        expected = hashlib.sha256(hashlib.sha256(b"seed").digest() * (size // 32)).hexdigest()
        out["object"] = {
            "writer": src,
            "reader": reader,
            "bytes": length,
            "ok": digest == expected and reader == dst and src != dst,
        }
    else:
        out["object"] = {"ok": False, "error": "fewer than two nodes: nothing crosses a node"}
    out["placement_group"] = _section(lambda: _placement_group(node_ids, timeout))
    return out


def _placement_group(node_ids: list[str], timeout: float) -> Json:
    """A STRICT_SPREAD placement group over two nodes: its bundles' tasks land apart."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    @ray.remote(num_cpus=0.1)
    def where() -> str:
        return str(ray.get_runtime_context().get_node_id())

    bundles = [{"CPU": 0.1} for _ in range(min(2, len(node_ids)))]
    pg = placement_group(bundles, strategy="STRICT_SPREAD")
    try:
        ray.get(pg.ready(), timeout=timeout)
        refs = [
            where.options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=pg, placement_group_bundle_index=i
                )
            ).remote()
            for i in range(len(bundles))
        ]
        landed = ray.get(refs, timeout=timeout)
    finally:
        remove_placement_group(pg)
    return {"bundles": len(bundles), "nodes": landed, "spread": len(set(landed)) == 2}


# The job's working_dir holds this module; its tasks import it (a job-level runtime_env, as
# RayJob's runtimeEnvYAML and submit_job set it: Ray takes local directories only there).
RUNTIME_ENV_MODULE = "raycompat_env_probe"

JOB_SCRIPT = """
import json, sys
import ray
ray.init()
def facts():
    return {"python": "%d.%d.%d" % sys.version_info[:3], "ray": ray.__version__,
            "commit": ray.__commit__}
@ray.remote(num_cpus=0.1)
def node_facts():
    import importlib, os
    out = facts()
    out["node"] = ray.get_runtime_context().get_node_id()
    out["env"] = os.environ.get("RAYCOMPAT_ENV")
    try:
        out["module"] = importlib.import_module("__MODULE__").VALUE
    except Exception as exc:
        out["module"] = "%s: %s" % (type(exc).__name__, exc)
    return out
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as Pin
# nodes that can run a task: a client that joined as a 0-CPU node (and may have just left)
# takes none
nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]
tasks = ray.get([node_facts.options(scheduling_strategy=Pin(node_id=n, soft=False)).remote()
                 for n in nodes], timeout=120)
print("RAYCOMPAT_JOB " + json.dumps({"driver": facts(), "tasks": tasks}))
"""
JOB_SCRIPT = JOB_SCRIPT.replace("__MODULE__", RUNTIME_ENV_MODULE)
FAILING_JOB = "raise SystemExit('raycompat: this job fails on purpose')"


@contextlib.contextmanager
def _answering(out: Json, timeout: float) -> Iterator[None]:
    """Run a command's body under the probe's deadline (SIGALRM: a Ray call can hang);
    whatever fails becomes the answer's `error`, and `ok` says the probe answered."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(timeout) + 20)
    try:
        yield
        out.setdefault("ok", True)
    except _Deadline as exc:
        out["ok"], out["error"] = False, str(exc)
    except Exception as exc:
        out["ok"], out["error"] = False, "%s: %s" % (type(exc).__name__, exc)
    finally:
        signal.alarm(0)


def jobs(args: argparse.Namespace) -> Json:
    """The dashboard's /api/version, then a job through the Jobs API (JobSubmissionClient,
    as KubeRay's RayJob and Vertex AI submit): a runtime_env with env_vars and a
    working_dir, its driver's and every node's facts in its logs. With --fail, a job that
    raises instead (its status and log tail are the result)."""
    import tempfile

    out: Json = {"client": facts(), "address": args.address}
    with _answering(out, args.timeout):
        deadline = time.time() + args.timeout
        version = _http(args.address + "/api/version", timeout=30)
        if version["status"] != 200:
            raise RuntimeError(
                "/api/version answered %s: %s" % (version["status"], version["body"])
            )
        out["dashboard"] = json.loads(version["body"])
        from ray.job_submission import JobSubmissionClient

        client = JobSubmissionClient(args.address)
        work = tempfile.mkdtemp(prefix="raycompat-job-")
        token = hashlib.sha256(str(time.time()).encode()).hexdigest()[:12]
        with open(os.path.join(work, "rcjob.py"), "w") as f:
            f.write(FAILING_JOB if args.fail else JOB_SCRIPT)
        with open(os.path.join(work, RUNTIME_ENV_MODULE + ".py"), "w") as f:
            f.write("VALUE = %r\n" % token)
        job_id = client.submit_job(
            entrypoint="python rcjob.py",
            runtime_env={"working_dir": work, "env_vars": {"RAYCOMPAT_ENV": token}},
        )
        out["job"] = dict(_wait_job(client, job_id, deadline), token=token)
        for line in client.get_job_logs(job_id).splitlines():
            if line.startswith("RAYCOMPAT_JOB "):
                out["job"]["facts"] = json.loads(line[len("RAYCOMPAT_JOB ") :])
    return out


# The Serve application of the workload checks, one source for both ways operators deploy
# it: a job through the Jobs API (as RayJob and `ray job submit` do) runs it as a script
# and calls serve.run (the notebook needs no Serve itself); a RayService imports it as the
# module SERVE_MODULE (serveConfigV2 `import_path: raycompat_serve:app`, see k8s.py).
SERVE_APP = "raycompat"
SERVE_MODULE = "raycompat_serve"
SERVE_PORT = 8000  # Serve's HTTP proxy on every node, as RayService's serve Service exposes
SERVE_APP_SOURCE = """import sys
import ray
from ray import serve
@serve.deployment(num_replicas=2, max_replicas_per_node=1, ray_actor_options={"num_cpus": 0.1})
class Facts:
    def __call__(self, request):
        ctx = ray.get_runtime_context()
        return {"python": "%d.%d.%d" % sys.version_info[:3], "ray": ray.__version__,
                "commit": ray.__commit__, "node": ctx.get_node_id()}
app = Facts.bind()
"""
# A proxy on every node, stated: in Ray 2.51.2, serve.start(http_options=...) without a
# proxy_location takes HTTPOptions' default location, HeadOnly, so no proxy ever started
# on the worker (measured; 2.60.0 starts one). serveConfigV2 says EveryNode too (k8s.py).
# serve.run returns once the application is running in every Ray this harness knows (newer
# Rays' `blocking` defaults to False; Ray 2.9.3 has no such keyword and refuses it).
# graceful_shutdown_wait_loop_s: a replica told to stop first sleeps this long, then counts
# its requests in flight (Ray 2.9.3's prepare_for_shutdown, 2.60.0's drain loop). Ray's
# default, 2 s, was most of the 2.9 s the probe's DELETE took (measured 2026-12-06, Ray
# 2.60.0); nothing asks the application while it shuts down. The RayService's module keeps
# Ray's default: there a rolling update's routers need that time.
SERVE_SCRIPT = (
    SERVE_APP_SOURCE
    + """ray.init()
serve.start(proxy_location="EveryNode", http_options={"host": "0.0.0.0", "port": __PORT__})
app = Facts.options(graceful_shutdown_wait_loop_s=0.2).bind()
serve.run(app, name="__APP__", route_prefix="/__APP__")
print("RAYCOMPAT_SERVE deployed")
"""
)


def _token_headers() -> dict[str, str]:
    """The bearer header Ray's own clients send when this process has a token (token
    auth: RAY_AUTH_MODE=token with RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH). The token is
    read here and never printed."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return {}
    token = os.environ.get("RAY_AUTH_TOKEN", "")
    path = os.environ.get("RAY_AUTH_TOKEN_PATH", "")
    if not token and path:
        try:
            with open(path) as f:
                token = f.read().strip()
        except OSError:
            token = ""
    return {"Authorization": "Bearer " + token} if token else {}


def _http(
    url: str,
    method: str = "GET",
    timeout: float = 10,
    token: bool = True,
    headers: dict[str, str] | None = None,
) -> Json:
    """status, body and the headers a browser's framing and CORS rules read, of one HTTP
    request (errors are answers too); with `token`, the process's Ray token as Ray's
    clients send it."""
    sent = dict(_token_headers() if token else {}, **(headers or {}))
    req = urllib.request.Request(url, method=method, headers=sent)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, got, body = resp.status, resp.headers, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        status, got, body = exc.code, exc.headers, exc.read().decode(errors="replace")[:500]
    except Exception as exc:
        return {"status": None, "body": "%s: %s" % (type(exc).__name__, exc)}
    return {
        "status": status,
        "body": body,
        "csp": got.get("Content-Security-Policy"),
        "xfo": got.get("X-Frame-Options"),
        "acao": got.get("Access-Control-Allow-Origin"),
    }


def _wait_job(client: Any, job_id: str, deadline: float) -> Json:
    from ray.job_submission import JobStatus

    terminal = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
    status = client.get_job_status(job_id)
    while status not in terminal and time.time() < deadline:
        time.sleep(1)  # not POLL: this runs in the lanes
        status = client.get_job_status(job_id)
    logs = client.get_job_logs(job_id)
    return {
        "id": job_id,
        "status": str(status.value if hasattr(status, "value") else status),
        "log_tail": "\n".join(logs.strip().splitlines()[-15:]),
    }


def serve(args: argparse.Namespace) -> Json:
    """Deploy a two-replica Serve application (one replica per node) through the Jobs API,
    ask the dashboard which nodes run replicas, ask the application over HTTP from here at
    every --http proxy (again, in bounded rounds, until every replica's node has answered:
    see _spread), ask the first proxy's /-/healthz and /-/routes, then shut Serve down
    through its REST API."""
    import tempfile

    t0 = time.time()
    out: Json = {"client": facts(), "address": args.address, "http": args.http}
    timings = out["timings"] = {}  # seconds from the probe's start, per phase's end
    deadline = time.time() + args.timeout
    with _answering(out, args.timeout):
        from ray.job_submission import JobSubmissionClient

        client = JobSubmissionClient(args.address)
        work = tempfile.mkdtemp(prefix="raycompat-serve-")
        port = int(args.http[0].rsplit(":", 1)[1].split("/")[0])
        script = SERVE_SCRIPT.replace("__APP__", SERVE_APP).replace("__PORT__", str(port))
        with open(os.path.join(work, "rcserve.py"), "w") as f:
            f.write(script)
        job_id = client.submit_job(
            entrypoint="python rcserve.py", runtime_env={"working_dir": work}
        )
        out["deploy"] = _wait_job(client, job_id, deadline)
        timings["deployed"] = round(time.time() - t0, 2)
        if out["deploy"]["status"] == "SUCCEEDED":
            apps = _http(args.address + "/api/serve/applications/")
            try:
                app = json.loads(apps["body"])["applications"][SERVE_APP]
                replicas = [r for d in app["deployments"].values() for r in d["replicas"]]
                out["replica_nodes"] = sorted({str(r.get("node_id")) for r in replicas})
            except (ValueError, KeyError, TypeError):
                out["replica_nodes"] = []
                out["applications"] = {"status": apps["status"], "body": apps["body"][:500]}
            replies: list[Json] = []
            for proxy in args.http:
                until = time.time() + args.proxy_wait  # a proxy starts with its replica
                while True:
                    reply = _http(proxy + args.route)
                    if reply["status"] == 200 or time.time() > min(until, deadline):
                        break
                    time.sleep(POLL)
                replies.append(dict(reply, proxy=proxy))
            out["replies"] = replies
            out["answers"] = [json.loads(r["body"]) for r in replies if r["status"] == 200]
            out["answers"] += _spread(
                [r["proxy"] + args.route for r in replies if r["status"] == 200],
                set(out["replica_nodes"]) - {str(a.get("node")) for a in out["answers"]},
                deadline,
            )
            out["healthz"] = _http(args.http[0] + "/-/healthz")
            out["routes"] = _http(args.http[0] + "/-/routes")
            timings["answered"] = round(time.time() - t0, 2)
    out["shutdown"] = _http(args.address + "/api/serve/applications/", "DELETE", timeout=60)
    timings["shut_down"] = round(time.time() - t0, 2)
    return out


# Rays before 2.10 route a proxy's request to any replica (local-node preference was off by
# default: RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING=0 in 2.9.3), so one request per proxy
# may never reach a node's replica. Asked again in rounds, each answering proxy once a
# round: 32 rounds over two proxies miss one of two replicas with odds of 2**-63.
SPREAD_ROUNDS = 32


def _spread(urls: list[str], unseen: set[str], deadline: float) -> list[Json]:
    """Ask `urls` again, round by round, until every node in `unseen` has answered (or
    SPREAD_ROUNDS or the deadline pass); the answers, in order."""
    answers: list[Json] = []
    for _ in range(SPREAD_ROUNDS if urls else 0):
        if not unseen or time.time() > deadline:
            break
        for url in urls:
            reply = _http(url)
            if reply["status"] == 200:
                answer = json.loads(reply["body"])
                answers.append(answer)
                unseen.discard(str(answer.get("node")))
    return answers


def _jobs_path(dashboard: str) -> Json:
    from ray.job_submission import JobSubmissionClient

    listed = JobSubmissionClient(dashboard).list_jobs()
    return {"ok": True, "detail": "%d job(s) listed" % len(listed)}


def _gcs_path(gcs: str) -> Json:
    from ray._raylet import GcsClient

    try:
        from ray._common.usage import usage_lib
    except ImportError:  # older Ray
        from ray._private.usage import usage_lib
    meta = usage_lib.get_cluster_metadata(GcsClient(address=gcs))
    return {"ok": True, "detail": "Ray %s" % meta.get("ray_version")}


def _ray_client_path(address: str, deadline: float) -> Json:
    # Ray Client treats the server's refusal as unavailability and retries with backoff
    # (polled fast: see auth), and its debug line carries what the server said.
    captured = _Captured()
    _listen_to_the_server(captured)
    connect = _connect(address, min(deadline, time.time() + 20), captured)
    detail = "connected" if connect["ok"] else str(connect.get("error"))
    return {"ok": connect["ok"], "detail": detail[:600]}


def auth(args: argparse.Namespace) -> Json:
    """What the cluster answers this process, with whatever token its environment gives
    it (none, a wrong one, the right one): the Jobs API over plain HTTP and through
    JobSubmissionClient, GCS (what a driver or a joining node asks first) and Ray Client;
    how long each took to answer."""
    out: Json = {"mode": os.environ.get("RAY_AUTH_MODE", ""), "seconds": {}}
    deadline = time.time() + args.timeout
    # read when Ray's client module is imported, which the Jobs path already does
    os.environ.setdefault("RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S", "1")
    os.environ.setdefault("RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S", "2")
    paths: list[tuple[str, Callable[[], Json]]] = [
        ("jobs", lambda: _jobs_path(args.dashboard)),
        ("gcs", lambda: _gcs_path(args.gcs)),
        ("ray_client", lambda: _ray_client_path(args.client, deadline)),
    ]
    with _answering(out, args.timeout):
        t0 = time.time()
        http = _http(args.dashboard + "/api/jobs/", timeout=15)
        out["http"] = {"status": http["status"], "body": http["body"][:300]}
        out["seconds"]["http"] = round(time.time() - t0, 1)
        for name, path in paths:
            t0 = time.time()
            try:
                out[name] = path()
            except Exception as exc:
                out[name] = {"ok": False, "detail": ("%s: %s" % (type(exc).__name__, exc))[:600]}
            out["seconds"][name] = round(time.time() - t0, 1)
    return out


class _Point:
    """A plain class whose instances travel (pickled by value from __main__)."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def norm2(self) -> int:
        return self.x * self.x + self.y * self.y


def roundtrip(args: argparse.Namespace) -> Json:
    """As a driver (`ray.init(address=HOST:6379)`, this container joined as a 0-CPU node),
    send a function, a class instance, a closure and an array (numpy, where this image has
    it) through tasks on the cluster's nodes, and an instance through an actor: each
    round trip's outcome, with Ray's error where one fails."""
    deadline = time.time() + args.timeout
    out: Json = {"client": facts(), "address": args.address}
    with _answering(out, args.timeout):
        out["connect"] = _connect(args.address, deadline, _Captured())
        if not out["connect"]["ok"]:
            return out
        import ray

        @ray.remote(num_cpus=0.1)
        def call(fn: Any, *values: Any) -> Any:
            return fn(*values)

        @ray.remote(num_cpus=0.1)
        class Keeper:
            def __init__(self) -> None:
                self.items: list[Any] = []

            def put(self, item: Any) -> int:
                self.items.append(item)
                return len(self.items)

            def norm2(self, i: int) -> int:
                return int(self.items[i].norm2())

        factor = 7

        def square(v: int) -> int:
            return v * v

        def actor() -> bool:
            keeper = Keeper.remote()  # type: ignore[attr-defined]
            ray.get(keeper.put.remote(_Point(1, 2)), timeout=60)
            return bool(ray.get(keeper.norm2.remote(0), timeout=60) == 5)

        trips: dict[str, Callable[[], bool]] = {
            "function": lambda: ray.get(call.remote(square, 12), timeout=60) == 144,
            "class instance": lambda: ray.get(call.remote(_Point.norm2, _Point(3, 4))) == 25,
            "closure": lambda: ray.get(call.remote(lambda v: v * factor, 6), timeout=60) == 42,
            "actor": actor,
        }
        try:
            import numpy as np  # type: ignore[import-not-found, unused-ignore]

            data = np.arange(100000)
            trips["array"] = lambda: bool(
                (ray.get(call.remote(lambda a: a * 2, data), timeout=60) == data * 2).all()
            )
        except ImportError:
            out["array"] = "numpy is not in this image: no array round trip"
        results: Json = {}
        for name, trip in trips.items():
            try:
                results[name] = {"ok": bool(trip()), "detail": "came back equal"}
            except Exception as exc:
                results[name] = {
                    "ok": False,
                    "detail": ("%s: %s" % (type(exc).__name__, exc))[:800],
                }
        out["roundtrips"] = results
    return out


class _Deadline(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Deadline("probe deadline passed (a Ray call hung)")


def cluster(args: argparse.Namespace) -> Json:
    # Ray Client backs off 5, 10, 20 s while a just-started head is not ready; poll faster
    # (ray/util/client/worker.py reads these) and let _connect retry until the deadline.
    os.environ.setdefault("RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S", "1")
    os.environ.setdefault("RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S", "2")
    # ray.init can hang (e.g. a driver with no local raylet): bound everything with an alarm.
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(args.timeout) + 20)
    try:
        return _cluster(args)
    except _Deadline as exc:
        return {
            "client": facts(),
            "address": args.address,
            "connect": {"ok": False, "error": str(exc), "warnings": []},
        }
    finally:
        signal.alarm(0)


def _cluster(args: argparse.Namespace) -> Json:
    captured = _Captured()
    # Ray's loggers do not propagate to the root logger: listen on them too, and on warnings.
    for name in ("", "ray", "ray.util.client", "ray.util.client.worker"):
        logging.getLogger(name).addHandler(captured)
    _listen_to_the_server(captured)
    warnings.simplefilter("always")
    warnings.showwarning = lambda message, *rest: captured.messages.append(str(message)[:500])
    deadline = time.time() + args.timeout
    out: Json = {"client": facts(), "address": args.address}
    t0 = time.time()
    if args.address != "auto":
        _wait_port(args.address, deadline)
    timings = out["timings"] = {"port": round(time.time() - t0, 2)}
    out["connect"] = _connect(args.address, deadline, captured, once=args.once)
    timings["connect"] = round(time.time() - t0, 2)
    if not out["connect"]["ok"]:
        return out
    import ray

    try:
        nodes = _alive_nodes(args.expect_nodes, deadline)
        out["alive_nodes"] = len(nodes)
        timings["nodes"] = round(time.time() - t0, 2)
        if args.count_only:  # readiness: no task, so no worker process on any node
            return out
        out["nodes"] = _node_probes(nodes, max(10.0, deadline - time.time()))
        timings["parity"] = round(time.time() - t0, 2)
        if args.workload:
            out["workload"] = _section(lambda: _workload(nodes, max(20.0, deadline - time.time())))
            timings["workload"] = round(time.time() - t0, 2)
        out["connect"]["warnings"] = captured.messages
    finally:
        ray.shutdown()
    return out


def version_check(args: argparse.Namespace) -> Json:
    """Ray's own driver/node version check against a cluster, without joining it.

    `ray.init(address=HOST:6379)` and `ray start --address` read the cluster's metadata
    from GCS and call `ray._private.utils.check_version_info`; this does the same, so the
    verdict and message are Ray's, with no raylet started and nothing joined."""
    import ray._private.utils as utils
    from ray._raylet import GcsClient

    try:
        from ray._common.usage import usage_lib
    except ImportError:  # older Ray
        from ray._private.usage import usage_lib

    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(args.timeout))
    try:
        metadata = usage_lib.get_cluster_metadata(GcsClient(address=args.address))
    except _Deadline:
        message = "no answer from GCS at %s" % args.address
        return {"ok": False, "verdict": "error", "message": message}
    except Exception as exc:
        return {"ok": False, "verdict": "error", "message": "%s: %s" % (type(exc).__name__, exc)}
    finally:
        signal.alarm(0)
    cluster = {k: metadata.get(k) for k in ("ray_version", "python_version", "git_commit")}
    out: Json = {"client": facts(), "cluster": cluster}
    try:
        # Ray words it "This process on <address> was started with ...": name this host
        utils.check_version_info(metadata, socket.gethostname())
        out.update(ok=True, verdict="accepted", message="versions match Ray's check")
    except Exception as exc:
        out.update(ok=True, verdict="rejected", message=str(exc)[:3000])
    return out


def gpu(args: argparse.Namespace) -> Json:
    """Ray sees GPU resources, and a num_gpus=1 task is given a device."""
    import ray

    ray.init(address=args.address, logging_level=logging.WARNING)
    try:

        @ray.remote(num_gpus=1)
        def visible() -> Json:
            import ray as r

            return {
                "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "gpu_ids": [str(g) for g in r.get_gpu_ids()],
                "cuda": cuda(),
            }

        gpus = ray.cluster_resources().get("GPU", 0)
        out: Json = {"cluster_gpus": gpus}
        if gpus:
            out["task"] = ray.get(visible.remote(), timeout=args.timeout)
        out["ok"] = bool(gpus) and bool((out.get("task") or {}).get("CUDA_VISIBLE_DEVICES"))
        return out
    finally:
        ray.shutdown()


def notebook(args: argparse.Namespace) -> Json:
    import nbclient
    import nbformat

    nb = nbformat.read(args.path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=args.timeout, kernel_name="python3")
    out: Json = {"nbclient": nbclient.__version__}
    try:
        client.execute()
        out["ok"] = True
    except Exception as exc:
        out["ok"] = False
        out["error"] = str(exc)[-3000:]
    texts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                texts.append(output.get("text", ""))
    out["stdout"] = "".join(texts)[-6000:]
    return out


def jupyter(args: argparse.Namespace) -> Json:
    base = "http://127.0.0.1:%d" % args.port
    with open(args.token_file) as f:
        headers = {"Authorization": "token %s" % f.read().strip()}
    deadline = time.time() + args.timeout
    last = ""
    while time.time() < deadline:
        try:
            req = urllib.request.Request(base + "/api/status", headers=headers)
            with urllib.request.urlopen(req, timeout=5) as resp:
                status = json.loads(resp.read().decode())
            req = urllib.request.Request(base + "/lab", headers=headers)
            with urllib.request.urlopen(req, timeout=5) as resp:
                page = resp.read().decode(errors="replace")
            return {"ok": True, "status": status, "lab_page": "JupyterLab" in page}
        except Exception as exc:
            last = "%s: %s" % (type(exc).__name__, exc)
            time.sleep(POLL)
    return {"ok": False, "error": last}


def kubeflow(args: argparse.Namespace) -> Json:
    """In a notebook container started as Kubeflow's notebook controller starts one
    (NB_PREFIX set, an empty volume at /home/jovyan, the image's own command): the server
    under the prefix without a token, the headers a dashboard on another origin needs to
    frame it, and the user, home and whether the home is writable."""
    import pwd

    prefix = os.environ.get("NB_PREFIX", "")
    base = "http://127.0.0.1:8888" + prefix
    origin = {"Origin": "https://kubeflow.example.com"}
    out: Json = {"prefix": prefix}
    deadline = time.time() + args.timeout
    status: Json = {"status": None, "body": "no answer"}
    while time.time() < deadline:
        status = _http(base + "/api/status", timeout=5, token=False, headers=origin)
        if status["status"] in (200, 403, 404):
            break
        time.sleep(POLL)
    out["api_status"] = status
    if status["status"] is not None:
        lab = _http(base + "/lab", timeout=5, token=False, headers=origin)
        out["lab"] = dict(lab, body=lab["body"][:4000])
        root = _http("http://127.0.0.1:8888/api/status", timeout=5, token=False)
        out["root_without_prefix"] = root["status"]
    user = pwd.getpwuid(os.getuid())
    home = os.environ.get("HOME", "")
    writable = False
    try:
        probe_file = os.path.join(home, ".raycompat-write-test")
        with open(probe_file, "w") as f:
            f.write("ok")
        os.remove(probe_file)
        writable = True
    except OSError as exc:
        out["home_error"] = str(exc)
    out["user"] = {
        "name": user.pw_name,
        "uid": os.getuid(),
        "gid": os.getgid(),
        "home": home,
        "passwd_home": user.pw_dir,
        "home_writable": writable,
        "home_entries": sorted(os.listdir(home))[:20] if os.path.isdir(home) else None,
    }
    out["ok"] = True
    return out


def arguments() -> argparse.ArgumentParser:
    """The probe's command line (the host builds it with harness.probe_client)."""
    parser = argparse.ArgumentParser(prog="probe")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("facts")
    sub.add_parser("structure")
    p = sub.add_parser("cluster")
    p.add_argument("address")
    p.add_argument("--expect-nodes", type=int, default=1)
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--workload", action="store_true")
    p.add_argument("--once", action="store_true")  # the cluster is proven up: one ray.init
    p.add_argument("--count-only", action="store_true")  # alive nodes, no probe on them
    p = sub.add_parser("version-check")
    p.add_argument("address")
    p.add_argument("--timeout", type=float, default=30)
    p = sub.add_parser("gpu")
    p.add_argument("address")
    p.add_argument("--timeout", type=float, default=120)
    p = sub.add_parser("notebook")
    p.add_argument("path")
    p.add_argument("--timeout", type=int, default=120)
    p = sub.add_parser("jobs")
    p.add_argument("address")  # http://HOST:8265
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--fail", action="store_true")
    p = sub.add_parser("serve")
    p.add_argument("address")  # http://HOST:8265
    p.add_argument("--http", action="append", required=True)  # http://NODE:8000, head first
    p.add_argument("--route", default="/" + SERVE_APP)
    p.add_argument("--timeout", type=float, default=180)
    p.add_argument("--proxy-wait", type=float, default=10)  # per proxy, after the deploy
    p = sub.add_parser("auth")
    p.add_argument("--dashboard", required=True)  # http://HOST:8265
    p.add_argument("--client", required=True)  # ray://HOST:10001
    p.add_argument("--gcs", required=True)  # HOST:6379
    p.add_argument("--timeout", type=float, default=60)
    p = sub.add_parser("roundtrip")
    p.add_argument("address")  # HOST:6379, with this container joined as a node
    p.add_argument("--timeout", type=float, default=120)
    p = sub.add_parser("kubeflow")
    p.add_argument("--timeout", type=float, default=60)
    p = sub.add_parser("jupyter")
    p.add_argument("--port", type=int, default=8888)
    p.add_argument("--token-file", required=True)
    p.add_argument("--timeout", type=float, default=60)
    return parser


def main(argv: list[str]) -> int:
    args = arguments().parse_args(argv)
    handlers: dict[str, Callable[[], Json]] = {
        "facts": facts,
        "structure": structure,
        "cluster": lambda: cluster(args),
        "version-check": lambda: version_check(args),
        "gpu": lambda: gpu(args),
        "notebook": lambda: notebook(args),
        "jupyter": lambda: jupyter(args),
        "jobs": lambda: jobs(args),
        "serve": lambda: serve(args),
        "auth": lambda: auth(args),
        "roundtrip": lambda: roundtrip(args),
        "kubeflow": lambda: kubeflow(args),
    }
    result = handlers[args.command]()
    sys.stdout.write("\n" + json.dumps(result, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
