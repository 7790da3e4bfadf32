"""The Docker engine, through the Docker SDK for Python, with a bound on every call.

Containers, networks, volumes, images, exec, logs and copies go through the SDK. The
docker CLI serves one purpose: `build`, because images are built with BuildKit and the
engine here (Debian's 20.10) has no buildx, so BuildKit is reachable only through a CLI
that still carries it (20.10-22.x, or one with the buildx plugin); the SDK's build is the
legacy builder.

Every object the harness creates carries labels.MANAGED and labels.RUN so that a run,
or `python -m harness clean` after a crash, removes exactly what it created.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import struct
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

import docker
import docker.errors
import requests.exceptions

from harness import children, interrupts, labels
from harness.errors import EngineError

SETUP_HINT = (
    "run `scripts/setup-engine.sh` as root or with sudo (installs Debian's docker.io, "
    "starts dockerd)"
)
API_TIMEOUT = 120  # seconds an ordinary API call may take
REMOVAL_WAIT = 30.0  # seconds remove_labelled waits for a removal already under way
POLL = 0.1  # seconds between its tries
EXEC_GRACE = 15  # after `timeout` inside the container, how long the host still waits
STAGING = "/tmp/.raycompat"  # where files handed to a command are put inside a container


def new_run_id() -> str:
    return uuid.uuid4().hex[:10]


def _has_buildkit(cli: str) -> bool:
    """True when `cli build` can run BuildKit: a 18.09-22.x CLI (its own builder), or a
    buildx plugin (asked only of the others: one call each, a no-op build makes it)."""
    try:
        out = children.run([cli, "version", "--format", "{{.Client.Version}}"], timeout=20)[1]
        major = out.strip().split(".", 1)[0]
        if major.isdigit() and 18 <= int(major) < 23:
            return True
        return children.run([cli, "buildx", "version"], timeout=20)[0] == 0
    except (OSError, subprocess.TimeoutExpired, children.Stopped):
        return False


def find_cli() -> str:
    """The docker CLI for builds: $HARNESS_DOCKER, else the first BuildKit-capable one."""
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
        raise EngineError(f"no docker CLI found (needed to build with BuildKit); {SETUP_HINT}")
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


SECRETS = "/tmp/.raycompat-secrets"  # secrets handed to a command: owner-only, see create()


def owner_of(user: str) -> tuple[int, int] | None:
    """(uid, gid) of an image's `User` ("" is root, "1000" or "1000:100"); None for a
    user given by name, which only the image's own /etc/passwd could resolve."""
    if not user:
        return 0, 0
    uid, _, gid = user.partition(":")
    if uid.isdigit() and (not gid or gid.isdigit()):
        return int(uid), int(gid or uid)
    return None


def secret_tar(files: Mapping[str, str], owner: tuple[int, int]) -> bytes:
    """A tar of SECRETS (0700) holding `files` (0400), all owned by `owner`: readable by
    the container's user only, never by another user of the container."""
    buf = io.BytesIO()
    uid, gid = owner
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(SECRETS.lstrip("/").split("/", 1)[1])
        info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o700, uid, gid
        tar.addfile(info)
        for name, content in files.items():
            data = content.encode()
            info = tarfile.TarInfo(f"{SECRETS.lstrip('/').split('/', 1)[1]}/{name}")
            info.size, info.mode, info.uid, info.gid = len(data), 0o400, uid, gid
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def tar_of(files: Mapping[str, str | bytes]) -> bytes:
    """An uncompressed tar holding `files` (name -> content), for put_archive."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs = {str(p) for name in files for p in PurePosixPath(name).parents if str(p) != "."}
        for name in sorted(dirs):  # world-writable, sticky: any user may drop its files
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777
            tar.addfile(info)
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def demux(raw: bytes) -> tuple[str, str]:
    """Split Docker's multiplexed stream (8-byte frame headers) into stdout and stderr."""
    out, err, pos = bytearray(), bytearray(), 0
    while pos + 8 <= len(raw):
        kind, size = struct.unpack(">BxxxL", raw[pos : pos + 8])
        frame = raw[pos + 8 : pos + 8 + size]
        (err if kind == 2 else out).extend(frame)
        pos += 8 + size
    return out.decode(errors="replace"), err.decode(errors="replace")


class ChunkReader(io.RawIOBase):
    """A readable file over an iterator of byte chunks (the SDK's streamed responses)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            try:
                self._rest = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._rest))
        buffer[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n


def _safe_members(tar: tarfile.TarFile, top: str) -> Iterator[tarfile.TarInfo]:
    """Regular files and directories under `top`, with no absolute or `..` paths."""
    for member in tar:
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts or not (member.isfile() or member.isdir()):
            continue
        if path.parts and path.parts[0] == top:
            yield member


class Engine:
    """The local Docker engine: typed calls over the SDK (the CLI only for builds)."""

    def __init__(self, cli: str | None = None, cleanup: bool = False) -> None:
        self._cli = cli
        self._finding: Future[str] | None = None
        self.cleanup = cleanup  # may run while the run is stopping
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()

    # --- connection ----------------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        """The SDK client, connected on first use (EngineError naming the fix if it cannot)."""
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self, timeout: float = API_TIMEOUT) -> docker.DockerClient:
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        try:
            return docker.from_env(timeout=int(timeout))
        except docker.errors.DockerException as exc:
            text = str(exc).lower()
            if "permission denied" in text:
                raise EngineError(
                    "no permission to use the Docker socket; run as root or add your user "
                    "to the `docker` group"
                ) from None
            raise EngineError(f"Docker engine not reachable at {host}; {SETUP_HINT}") from None

    def _api(self, timeout: float) -> docker.APIClient:
        """A low-level client whose socket reads give up after `timeout` seconds."""
        version = self.client.api.api_version
        return docker.from_env(version=version, timeout=max(1, int(timeout))).api

    @property
    def cli(self) -> str:
        """The docker CLI used for BuildKit builds (found on first use, or by
        `look_for_cli`); EngineError naming the fix when there is none."""
        if self._cli is None:
            self._cli = self._finding.result() if self._finding is not None else find_cli()
        return self._cli

    def look_for_cli(self) -> None:
        """Start `find_cli` in the background (its `docker version` calls take tens of ms,
        most of a no-op build's wait); `cli` waits for its answer. $HARNESS_DOCKER, which
        asks nothing of the CLI, is checked at once."""
        if os.environ.get("HARNESS_DOCKER") and self._cli is None:
            self._cli = find_cli()
        if self._cli is None and self._finding is None:
            pool = ThreadPoolExecutor(1, thread_name_prefix="raycompat-cli")
            self._finding = pool.submit(find_cli)
            pool.shutdown(wait=False)

    def guard(self, what: str) -> None:
        if children.stopping() and not self.cleanup:
            raise EngineError(f"{what} not started: the run is stopping")

    def run(
        self,
        args: Sequence[str],
        *,
        timeout: float = 120,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> Result:
        """Run `docker ARGS` with the build CLI (only `build` needs it); EngineError on
        timeout or (with check) on a non-zero exit."""
        what = f"`docker {' '.join(args[:3])} ...`"
        try:
            rc, out, err = children.run(
                [self.cli, *args], timeout=timeout, env=env, during_stop=self.cleanup
            )
        except subprocess.TimeoutExpired:
            raise EngineError(f"{what} did not finish in {timeout:.0f}s") from None
        except children.Stopped:
            raise EngineError(f"{what} not started: the run is stopping") from None
        if check and rc != 0:
            msg = err.strip().splitlines()[-1:] or ["(no output)"]
            raise EngineError(f"{what} failed: {msg[0]}")
        return Result(rc, out, err)

    def ping(self) -> str:
        """Server version, or EngineError naming the cause and the fix."""
        try:
            return str(self.client.version()["Version"])
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
            raise EngineError(f"Docker engine not reachable at {host}; {SETUP_HINT}") from None

    def info(self) -> dict[str, Any]:
        return dict(self.client.info())

    def nvidia_runtime(self) -> bool:
        """True when the engine has the NVIDIA container runtime (so GPUs can be handed out)."""
        try:
            return "nvidia" in (self.info().get("Runtimes") or {})
        except docker.errors.DockerException:
            return False

    # --- objects by label ----------------------------------------------------------------

    def inspect(self, kind: str, ref: str) -> dict[str, Any] | None:
        api = self.client.api
        get = {
            "image": api.inspect_image,
            "container": api.inspect_container,
            "network": api.inspect_network,
            "volume": api.inspect_volume,
        }[kind]
        try:
            return dict(get(ref))
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            if exc.status_code in (400, 404):
                return None  # e.g. an invalid reference: no such object
            raise EngineError(f"inspecting {kind} {ref}: {exc.explanation}") from None

    def image_tags(self) -> set[str]:
        """Every repository:tag the engine holds, in one listing (as the engine spells
        them: a Docker Hub name may be shortened, so an absent one is no proof of absence)."""
        try:
            found = self.client.api.images()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise EngineError(f"listing images: {exc}") from None
        return {tag for image in found for tag in image.get("RepoTags") or ()}

    def image_labels(self, ref: str) -> dict[str, str] | None:
        info = self.inspect("image", ref)
        if info is None:
            return None
        return dict((info.get("Config") or {}).get("Labels") or {})

    def _listing(self, kind: str, labels_: Mapping[str, str]) -> list[tuple[str, dict[str, str]]]:
        """(id, labels) of every object of `kind` carrying all the labels."""
        filters = {"label": [f"{k}={v}" if v else k for k, v in labels_.items()]}
        api = self.client.api
        try:
            if kind == "container":
                found = api.containers(all=True, filters=filters)
                rows = [(c["Id"], c.get("Labels")) for c in found]
            elif kind == "image":
                rows = [(i["Id"], i.get("Labels")) for i in api.images(filters=filters)]
            elif kind == "network":
                rows = [(n["Id"], n.get("Labels")) for n in api.networks(filters=filters)]
            else:
                vols = api.volumes(filters=filters).get("Volumes") or []
                rows = [(v["Name"], v.get("Labels")) for v in vols]
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise EngineError(f"listing {kind}s: {exc}") from None
        return list({ident: dict(lab or {}) for ident, lab in rows}.items())

    def ids(self, kind: str, labels_: Mapping[str, str]) -> list[str]:
        """IDs of containers/networks/volumes/images carrying all the labels."""
        return [ident for ident, _ in self._listing(kind, labels_)]

    def label_values(self, kind: str, key: str) -> dict[str, str]:
        """id -> value of label `key`, for every container/network/volume/image carrying it."""
        return {ident: lab.get(key, "") for ident, lab in self._listing(kind, {key: ""})}

    def remove(self, kind: str, ident: str) -> bool:
        api = self.client.api
        try:
            if kind == "container":
                api.remove_container(ident, force=True, v=True)
            elif kind == "network":
                api.remove_network(ident)
            elif kind == "volume":
                api.remove_volume(ident, force=True)
            else:
                api.remove_image(ident, force=True)
        except docker.errors.NotFound:
            return True
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            return False
        return True

    def remove_labelled(self, labels_: Mapping[str, str], images: bool = False) -> dict[str, int]:
        """Remove containers, networks and volumes (and images if asked) with these labels;
        how many of each were removed. A container whose removal another thread of the run
        has begun ("already in progress") still holds its network endpoint and volumes:
        what could not be removed is tried again until it is gone, up to REMOVAL_WAIT
        seconds (measured: a network left behind, "has active endpoints", when a run was
        interrupted while its cell's cluster was being torn down)."""
        counts: dict[str, int] = {}
        kinds = ["container", "network", "volume"] + (["image"] if images else [])
        for kind in kinds:
            ids = self.ids(kind, labels_)
            left = [ident for ident in ids if not self.remove(kind, ident)]
            deadline = time.monotonic() + (REMOVAL_WAIT if kind != "image" else 0)
            while left and time.monotonic() < deadline:
                time.sleep(POLL)
                left = [i for i in left if not self.remove(kind, i)]  # gone: True
            counts[kind] = len(ids) - len(left)
        return counts

    def disk_usage(self) -> dict[str, Any]:
        """The engine's own `df` (images, containers, volumes, build cache); {} if it
        cannot answer."""
        try:
            return dict(self.client.api.df())
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            return {}

    def build_cache_since(self, since: datetime) -> list[dict[str, Any]]:
        """Build-cache records created at or after `since` (to the second) that no running
        build uses and no image shares."""
        stamp = since.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        return [
            dict(r)
            for r in self.disk_usage().get("BuildCache") or []
            if str(r.get("CreatedAt", ""))[:19] >= stamp  # RFC 3339 in UTC, as the engine writes
            and not r.get("InUse")
            and not r.get("Shared")
        ]

    def prune_build_cache_since(self, since: datetime) -> int:
        """Remove the records `build_cache_since` lists (a record whose children are still
        there goes in a later pass); the bytes freed."""
        freed = 0
        for _ in range(8):
            removed = 0
            for record in self.build_cache_since(since):
                # one id per call (the engine refuses more); the stubs know only two keys
                only: Any = {"id": str(record["ID"])}
                try:
                    out = self.client.api.prune_builds(filters=only)
                except (docker.errors.DockerException, requests.exceptions.RequestException):
                    continue
                removed += len(out.get("CachesDeleted") or [])
                freed += int(out.get("SpaceReclaimed") or 0)
            if not removed:
                break
        return freed

    # --- images --------------------------------------------------------------------------

    def tag(self, image: str, ref: str) -> None:
        """Give `image` (an id or reference) the tag `ref` (repository:tag)."""
        repo, _, tag = ref.rpartition(":")
        if not repo or "/" in tag:
            repo, tag = ref, "latest"
        try:
            self.client.api.tag(image, repo, tag)
        except docker.errors.DockerException as exc:
            raise EngineError(f"tag {image} as {ref}: {exc}") from None

    def untag(self, ref: str, force: bool = False) -> bool:
        """Remove one tag (or image reference); False if the engine refused."""
        try:
            self.client.api.remove_image(ref, force=force)
        except docker.errors.NotFound:
            return False
        except docker.errors.APIError:
            return False
        return True

    def untag_prefix(self, prefix: str) -> int:
        """Remove every tag and digest reference starting with `prefix` (e.g. what pulls
        from one registry left); the images stay. How many were removed."""
        removed = 0
        for image in self.client.api.images():
            for ref in [*(image.get("RepoTags") or []), *(image.get("RepoDigests") or [])]:
                if ref.startswith(prefix):
                    removed += self.untag(ref)
        return removed

    def pull(self, ref: str, timeout: float = 900) -> None:
        """Pull `ref` (credentials from the Docker config, as the CLI uses them)."""
        self.guard(f"pull {ref}")
        repo, _, digest = ref.partition("@")
        tag = None
        if not digest:
            name, sep, maybe_tag = ref.rpartition(":")
            if sep and "/" not in maybe_tag:
                repo, tag = name, maybe_tag

        def pull() -> None:
            events = self.client.api.pull(repo, tag=digest or tag, stream=True, decode=True)
            for event in events:
                if isinstance(event, dict) and event.get("error"):
                    raise EngineError(f"pull {ref}: {event['error']}")

        _bounded(pull, timeout, f"pull {ref}")

    def load(self, archive: Path, ref: str, image_id: str) -> None:
        """`docker load` an image archive (docker save's format) that tags `ref` as the
        image `image_id` (the digest of the archive's config)."""
        self.guard(f"load {ref}")

        def load() -> None:
            with archive.open("rb") as f:
                for event in self._api(900).load_image(f):  # type: ignore[no-untyped-call]
                    if isinstance(event, dict) and event.get("error"):
                        raise EngineError(f"load {ref}: {event['error']}")

        _bounded(load, 900, f"load {ref}")
        got = (self.inspect("image", ref) or {}).get("Id")
        if got != image_id:
            raise EngineError(f"load {ref}: the engine has {got or 'no such image'} afterwards")

    def history(self, ref: str) -> list[str]:
        """The `CreatedBy` of every layer of an image, newest first ([] if it is gone)."""
        try:
            entries: list[dict[str, Any]] = self.client.api.history(ref)  # type: ignore[no-untyped-call]
        except docker.errors.NotFound:
            return []
        return [str(h.get("CreatedBy") or "") for h in entries]

    def save(self, image_id: str, timeout: float = 1800) -> IO[bytes]:
        """`docker save` as a readable stream."""
        return io.BufferedReader(ChunkReader(iter(self._api(timeout).get_image(image_id))))

    # --- containers ----------------------------------------------------------------------

    def create(
        self,
        image: str,
        command: Sequence[str] | None = None,
        *,
        labels_: Mapping[str, str],
        entrypoint: Sequence[str] | None = None,
        network_mode: str = "none",
        files: Mapping[str, str | bytes] | None = None,
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> str:
        """Create (not start) a container; `files` are put under STAGING first, `secrets`
        under SECRETS, readable by the image's user only (removed with the container)."""
        self.guard(f"create a container of {image}")
        api = self.client.api
        owner: tuple[int, int] | None = (0, 0)
        if secrets:
            user = str(((self.inspect("image", image) or {}).get("Config") or {}).get("User"))
            owner = owner_of("" if user == "None" else user)
            if owner is None:
                raise EngineError(
                    f"{image} runs as the user {user!r}, a name: a secret cannot be made "
                    "readable by it alone; give the image a numeric USER (uid:gid)"
                )
        try:
            with interrupts.making(f"a container of {image}"):
                cid = api.create_container(
                    image,
                    command=list(command) if command is not None else None,
                    entrypoint=list(entrypoint) if entrypoint is not None else None,
                    labels={labels.MANAGED: "scratch", **labels_},
                    environment=dict(env or {}),
                    host_config=api.create_host_config(network_mode=network_mode),
                )["Id"]
            if files:
                staged = {f".raycompat/{n}": c for n, c in files.items()}
                api.put_archive(cid, "/tmp", tar_of(staged))
            if secrets and owner is not None:
                api.put_archive(cid, "/tmp", secret_tar(secrets, owner))
        except docker.errors.ImageNotFound:
            raise EngineError(f"image {image} is not in the engine") from None
        except docker.errors.DockerException as exc:
            raise EngineError(f"creating a container of {image}: {exc}") from None
        return str(cid)

    def owned_volume(
        self, name: str, image: str, *, owner: str, mode: str, labels_: Mapping[str, str]
    ) -> str:
        """A new, empty named volume whose root belongs to `owner` (uid:gid) with `mode`,
        set by a throwaway container of `image` run as root (no host privileges needed:
        a user of the docker group can); removed by the labels' sweep."""
        self.guard(f"create the volume {name}")
        api = self.client.api
        try:
            with interrupts.making(f"the volume {name}"):
                api.create_volume(name=name, labels={labels.MANAGED: "scratch", **labels_})
                cid = api.create_container(
                    image,
                    command=["sh", "-c", f"chown {owner} /v && chmod {mode} /v"],
                    entrypoint=[],
                    user="0:0",
                    labels={labels.MANAGED: "scratch", **labels_},
                    host_config=api.create_host_config(
                        network_mode="none", binds={name: {"bind": "/v", "mode": "rw,nocopy"}}
                    ),
                )["Id"]
        except docker.errors.DockerException as exc:
            raise EngineError(f"preparing the volume {name}: {exc}") from None
        try:
            api.start(cid)
            code = int(api.wait(cid, timeout=120)["StatusCode"])
            if code != 0:
                out, err = self._logs(cid)
                raise EngineError(f"preparing the volume {name}: exit {code}: {err or out}")
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise EngineError(f"preparing the volume {name}: {exc}") from None
        finally:
            self.remove("container", cid)
        return name

    def run_once(
        self,
        image: str,
        command: Sequence[str],
        *,
        labels_: Mapping[str, str] | None = None,
        entrypoint: Sequence[str] | None = None,
        network_mode: str = "none",
        files: Mapping[str, str | bytes] | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        secrets: Mapping[str, str] | None = None,
    ) -> Result:
        """Run `command` in a throwaway container of `image` and remove it; the command's
        input files go to STAGING/<name>, its secrets to SECRETS/<name> (owner-only).
        Exit 124 when it outlives `timeout`."""
        cid = self.create(
            image,
            command,
            labels_={labels.RUN: os.environ.get("HARNESS_RUN_ID", ""), **(labels_ or {})},
            entrypoint=entrypoint,
            network_mode=network_mode,
            files=files,
            env=env,
            secrets=secrets,
        )
        api = self.client.api
        try:
            api.start(cid)
            try:
                code = int(api.wait(cid, timeout=max(1, int(timeout)))["StatusCode"])
            except requests.exceptions.RequestException:
                api.kill(cid)
                out, err = self._logs(cid)
                return Result(124, out, err + f"\n(did not finish in {timeout:.0f}s)")
            out, err = self._logs(cid)
            return Result(code, out, err)
        except docker.errors.DockerException as exc:
            raise EngineError(f"running {image}: {exc}") from None
        finally:
            self.remove("container", cid)

    def _logs(self, container: str, tail: int | Literal["all"] = "all") -> tuple[str, str]:
        api = self.client.api
        out = api.logs(container, stdout=True, stderr=False, tail=tail)
        err = api.logs(container, stdout=False, stderr=True, tail=tail)
        return out.decode(errors="replace"), err.decode(errors="replace")

    def logs(self, container: str, tail: int = 400) -> str:
        """The container's last `tail` lines of output (stdout and stderr interleaved)."""
        try:
            data = self.client.api.logs(container, stdout=True, stderr=True, tail=tail)
        except docker.errors.DockerException as exc:
            return f"(no logs: {exc})"
        return bytes(data).decode(errors="replace")

    def kill(self, container: str) -> None:
        self.client.api.kill(container)

    def export(self, container: str, timeout: float = 600) -> IO[bytes]:
        """The container's filesystem as a tar stream."""
        return io.BufferedReader(ChunkReader(iter(self._api(timeout).export(container))))

    def copy_out(self, container: str, path: str, dest: Path, timeout: float = 120) -> bool:
        """Copy directory `path` out of the container into `dest` (like `docker cp`)."""
        try:
            chunks, _ = self._api(timeout).get_archive(container, path)
        except docker.errors.DockerException:
            return False
        top = PurePosixPath(path).name
        staging = dest.parent / f".{dest.name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            with tarfile.open(fileobj=ChunkReader(iter(chunks)), mode="r|") as tar:
                for member in _safe_members(tar, top):
                    tar.extract(member, staging, set_attrs=False)
            if not (staging / top).is_dir():
                return False
            shutil.rmtree(dest, ignore_errors=True)
            (staging / top).rename(dest)
            return True
        except (tarfile.TarError, OSError, requests.exceptions.RequestException):
            return False
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def exec(
        self,
        container: str,
        command: Sequence[str],
        *,
        timeout: float = 120,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        cancel: threading.Event | None = None,
    ) -> Result:
        """`command` in a running container, bounded twice: coreutils `timeout` inside
        (the SDK's exec has no timeout, so the process itself must end) and a deadline on
        the host-side socket, which `cancel` also ends at once. `input` is handed over as a
        file and fed on stdin. Exit 124 on timeout or cancel."""
        self.guard(f"exec in {container}")
        api = self.client.api
        bounded = ["timeout", "-k", "5", str(max(1, int(timeout))), *command]
        try:
            if input is not None:
                name = f"stdin-{uuid.uuid4().hex[:8]}"
                api.put_archive(container, "/tmp", tar_of({f".raycompat/{name}": input}))
                staged = f"{STAGING}/{name}"
                bounded = ["sh", "-c", f'"$@" < {staged}; rc=$?; rm -f {staged}; exit $rc', "sh"]
                bounded += ["timeout", "-k", "5", str(max(1, int(timeout))), *command]
            exec_id = api.exec_create(container, bounded, environment=dict(env or {}))["Id"]
            sock = api.exec_start(exec_id, socket=True)
        except docker.errors.DockerException as exc:
            return Result(125, "", f"exec in {container}: {exc}")
        raw = _read_socket(sock, time.monotonic() + timeout + EXEC_GRACE, cancel)
        if raw is None:
            why = "cancelled" if cancel is not None and cancel.is_set() else "timed out"
            return Result(124, "", f"exec in {container} {why} after {timeout:.0f}s")
        out, err = demux(raw)
        try:
            code = api.exec_inspect(exec_id).get("ExitCode")
        except docker.errors.DockerException as exc:
            return Result(125, out, err + f"\nexec in {container}: {exc}")
        return Result(int(code if code is not None else 125), out, err)


def _bounded(call: Callable[[], None], timeout: float, what: str) -> None:
    """`call()` within `timeout` seconds, for SDK calls that set no socket timeout of their
    own (pull, import): EngineError when it does not return in time (it is abandoned)."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=target, daemon=True, name=what)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise EngineError(f"{what} did not finish in {timeout:.0f}s")
    if failure:
        exc = failure[0]
        if isinstance(exc, EngineError):
            raise exc
        if isinstance(exc, (docker.errors.DockerException, requests.exceptions.RequestException)):
            raise EngineError(f"{what}: {exc}") from None
        raise exc


def _read_socket(sock: Any, deadline: float, cancel: threading.Event | None) -> bytes | None:
    """Everything an exec socket sends until it closes; None at the deadline or on cancel."""
    raw_sock: socket.socket = getattr(sock, "_sock", sock)
    data = bytearray()
    try:
        raw_sock.settimeout(0.5)
        while True:
            if (cancel is not None and cancel.is_set()) or time.monotonic() > deadline:
                return None
            try:
                chunk = raw_sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                return bytes(data)
            data.extend(chunk)
    except OSError:
        return bytes(data)
    finally:
        with contextlib.suppress(OSError):
            sock.close()


def image_ids(engine: Engine, tags: Mapping[str, str]) -> dict[str, str]:
    """Each role's image id by its tag ("None" where no such image is here): what a test
    records as tested and what reusing its results compares."""
    return {role: str((engine.inspect("image", tag) or {}).get("Id")) for role, tag in tags.items()}
