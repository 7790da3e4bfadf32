"""The Docker engine, reached through the docker CLI with a timeout on every call.

Every object the harness creates carries labels.MANAGED and labels.RUN so that a run,
or `python -m harness clean` after a crash, removes exactly what it created.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness import children
from harness.errors import EngineError

SETUP_HINT = (
    "run `scripts/setup-engine.sh` as root or with sudo (installs Debian's docker.io, "
    "starts dockerd)"
)


def new_run_id() -> str:
    return uuid.uuid4().hex[:10]


def _has_buildkit(cli: str) -> bool:
    """True when `cli build` can run BuildKit: a buildx plugin, or a 20.10-22.x CLI."""
    try:
        if (
            subprocess.run([cli, "buildx", "version"], capture_output=True, timeout=20).returncode
            == 0
        ):
            return True
        out = subprocess.run(
            [cli, "version", "--format", "{{.Client.Version}}"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return False
    major = out.split(".", 1)[0]
    return major.isdigit() and 18 <= int(major) < 23


def find_cli() -> str:
    """The docker CLI to use: $HARNESS_DOCKER, else the first BuildKit-capable one."""
    forced = os.environ.get("HARNESS_DOCKER")
    if forced:
        found = shutil.which(forced)
        if found is None:
            raise EngineError(
                f"HARNESS_DOCKER={forced}: no executable docker CLI there; point it at one "
                "(e.g. /usr/bin/docker) or unset it"
            )
        return found
    candidates = [c for c in (shutil.which("docker"), "/usr/bin/docker") if c and os.path.exists(c)]
    if not candidates:
        raise EngineError(f"no docker CLI found; {SETUP_HINT}")
    for cli in dict.fromkeys(candidates):
        if _has_buildkit(cli):
            return cli
    raise EngineError(
        f"the docker CLI at {candidates[0]} cannot build with BuildKit (no buildx plugin); "
        f"install docker-buildx or {SETUP_HINT}"
    )


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


class Engine:
    """Thin, typed wrapper over the docker CLI."""

    def __init__(self, cli: str | None = None, cleanup: bool = False) -> None:
        self.cli = cli or find_cli()
        self.cleanup = cleanup  # may run while the run is stopping

    def run(
        self,
        args: Sequence[str],
        *,
        timeout: float = 120,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        cancel: threading.Event | None = None,
    ) -> Result:
        """Run `docker ARGS`; EngineError on timeout, on `cancel` being set, or (with
        check) on a non-zero exit."""
        what = f"`docker {' '.join(args[:3])} ...`"
        try:
            rc, out, err = children.run(
                [self.cli, *args],
                timeout=timeout,
                input=input,
                env=env,
                cancel=cancel,
                during_stop=self.cleanup,
            )
        except subprocess.TimeoutExpired:
            raise EngineError(f"{what} did not finish in {timeout:.0f}s") from None
        except children.Cancelled:
            raise EngineError(f"{what} cancelled") from None
        except children.Stopped:
            raise EngineError(f"{what} not started: the run is stopping") from None
        result = Result(rc, out, err)
        if check and rc != 0:
            msg = err.strip().splitlines()[-1:] or ["(no output)"]
            raise EngineError(f"{what} failed: {msg[0]}")
        return result

    def ping(self) -> str:
        """Server version, or EngineError naming the cause and the fix."""
        try:
            r = self.run(["version", "--format", "{{.Server.Version}}"], timeout=20, check=False)
        except EngineError:
            raise EngineError(f"Docker engine did not answer within 20s; {SETUP_HINT}") from None
        if r.returncode != 0 or not r.stdout.strip():
            err = " ".join(r.stderr.split())
            if "permission denied" in err.lower():
                raise EngineError(
                    "no permission to use the Docker socket; run as root or add your user "
                    "to the `docker` group"
                )
            host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
            raise EngineError(f"Docker engine not reachable at {host}; {SETUP_HINT}")
        return r.stdout.strip()

    def nvidia_runtime(self) -> bool:
        """True when the engine has the NVIDIA container runtime (so `--gpus` can work)."""
        r = self.run(["info", "--format", "{{json .Runtimes}}"], timeout=30, check=False)
        return r.returncode == 0 and "nvidia" in r.stdout

    def inspect(self, kind: str, ref: str) -> dict[str, Any] | None:
        r = self.run([kind, "inspect", ref], check=False, timeout=60)
        if r.returncode != 0:
            return None
        data = json.loads(r.stdout)
        return data[0] if data else None

    def image_labels(self, ref: str) -> dict[str, str] | None:
        info = self.inspect("image", ref)
        if info is None:
            return None
        return dict((info.get("Config") or {}).get("Labels") or {})

    def ids(self, kind: str, labels: Mapping[str, str]) -> list[str]:
        """IDs of containers/networks/volumes/images carrying all the labels."""
        filters = [
            f"--filter=label={k}={v}" if v else f"--filter=label={k}" for k, v in labels.items()
        ]
        if kind == "container":
            args = ["ps", "-a", "-q", *filters]
        elif kind == "image":
            args = ["images", "-q", "--no-trunc", *filters]
        else:
            args = [kind, "ls", "-q", *filters]
        out = self.run(args, timeout=60).stdout
        return list(dict.fromkeys(out.split()))

    def label_values(self, kind: str, key: str) -> dict[str, str]:
        """id -> value of label `key`, for every container/network/volume/image carrying it."""
        ids = self.ids(kind, {key: ""})
        if not ids:
            return {}
        where = ".Config.Labels" if kind in ("container", "image") else ".Labels"
        ident = "{{.Name}}" if kind == "volume" else "{{.Id}}"
        fmt = f'{ident} {{{{index {where} "{key}"}}}}'
        r = self.run([kind, "inspect", "--format", fmt, *ids], timeout=120, check=False)
        out: dict[str, str] = {}
        for line in r.stdout.splitlines():
            ident, _, value = line.partition(" ")
            if ident:
                out[ident] = value.strip()
        return out

    def remove_labelled(self, labels: Mapping[str, str], images: bool = False) -> dict[str, int]:
        """Remove containers, networks and volumes (and images if asked) with these labels."""
        counts: dict[str, int] = {}
        kinds = ["container", "network", "volume"] + (["image"] if images else [])
        for kind in kinds:
            ids = self.ids(kind, labels)
            if ids:
                rm = {
                    "container": ["rm", "-f", "-v"],
                    "network": ["network", "rm"],
                    "volume": ["volume", "rm", "-f"],
                    "image": ["rmi", "-f"],
                }[kind]
                self.run([*rm, *ids], timeout=120, check=False)
            counts[kind] = len(ids)
        return counts
