"""A registry's HTTP API (the OCI distribution API): upload a local image by digest, read
a tag, move a tag. The docker CLI can only push tags, and a tag pushed is a tag moved; the
push gate needs to upload a whole cell first and move its tags only when every role is
there (see `registry.push`).

Credentials come only from Docker's own configuration ($DOCKER_CONFIG/config.json, default
~/.docker): a credential helper (`credHelpers`, `credsStore`, e.g. the one `gcloud auth
configure-docker` installs) or a `docker login` entry (`auths`). The token handshake is
the registry's standard one (401 + WWW-Authenticate: Bearer/Basic). Credentials and tokens
go only to the registry's own host, and to a token service over https; a redirect to
another host (blob storage's signed URLs) never carries them. Loopback registries
(127.0.0.0/8, localhost) are spoken to over plain HTTP, as Docker does; others over HTTPS
with the host's CA store.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import posixpath
import re
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from harness import children
from harness.engine import Engine
from harness.errors import EngineError
from harness.matrix import LAYER_COMPRESSIONS

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_V1 = "application/vnd.docker.container.image.v1+json"
MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
# zstd level 9: measured on the 2.60.0 x 3.11.2 notebook, 18 % smaller than gzip -6 (157
# against 191 MB) and faster to compress; level 12 saves 2 MB more at twice the time
ZSTD_LEVEL = 9
ACCEPT = ", ".join(
    (
        MANIFEST_V2,
        OCI_MANIFEST,
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)
CHUNK = 1 << 20


class Sink(Protocol):
    def write(self, b: bytes, /) -> int: ...


class RegistryError(EngineError):
    """The registry refused or could not be reached (exit 2, one line)."""


@dataclass(frozen=True)
class Manifest:
    body: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.body).hexdigest()


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    path: Path  # what to upload


def _docker_config() -> dict[str, Any]:
    root = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        doc = json.loads((root / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def credentials(host: str, config: Mapping[str, Any] | None = None) -> tuple[str, str] | None:
    """(user, secret) for `host` from Docker's configuration, or None (anonymous)."""
    config = _docker_config() if config is None else config
    helper = (config.get("credHelpers") or {}).get(host) or config.get("credsStore")
    if helper:
        try:
            rc, out, _ = children.run(
                [f"docker-credential-{helper}", "get"], input=host, timeout=60
            )
            if rc == 0:
                doc = json.loads(out)
                return str(doc["Username"]), str(doc["Secret"])
        except (OSError, ValueError, KeyError, subprocess.TimeoutExpired, children.Stopped):
            pass  # no helper binary or no entry: try `auths`, then anonymous
    auths = config.get("auths") or {}
    for key in (host, f"https://{host}", f"http://{host}"):
        auth = (auths.get(key) or {}).get("auth")
        if auth:
            user, _, secret = base64.b64decode(auth).decode().partition(":")
            return user, secret
    return None


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', rest))


class _NoCredentialsAcrossHosts(urllib.request.HTTPRedirectHandler):
    """Follows a redirect, but never forwards `Authorization` to another host: a registry
    sends blob reads to storage by signed URL, which must not see the registry's token."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _netloc(newurl) != _netloc(req.full_url):
            new.remove_header("Authorization")
        return new


def _canonical(headers: Any) -> dict[str, str]:
    """Response headers by their canonical names ("Www-Authenticate", "Location"), as Go's
    net/http writes them: a server that spells them otherwise is read the same."""
    return {str(k).title(): str(v) for k, v in headers.items()}


def _netloc(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc.lower()


def _loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name == "localhost" or name.startswith("127.") or name == "[::1]"


class Registry:
    """One registry host; repositories are paths below it (e.g. `acme/ray/ray-head`)."""

    def __init__(self, host: str, timeout: float = 120) -> None:
        self.host = host
        self.base = f"{'http' if _loopback(host) else 'https'}://{host}"
        self.timeout = timeout
        self.creds = credentials(host)
        self._auth: dict[str, str] = {}  # scope -> Authorization header value
        handlers: list[urllib.request.BaseHandler] = [_NoCredentialsAcrossHosts()]
        if _loopback(host):
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    # --- HTTP with the registry's auth handshake ---------------------------------------

    def _login(self, header: str) -> str:
        scheme, params = _challenge(header)
        basic = ""
        if self.creds:
            basic = "Basic " + base64.b64encode(":".join(self.creds).encode()).decode()
        if scheme == "basic":
            if not basic:
                raise RegistryError(f"{self.host} wants credentials: {self._hint()}")
            return basic
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        realm = params.get("realm", "")
        url = realm + "?" + urllib.parse.urlencode(query)
        # As Docker's client: the credentials go to the token service over https only,
        # or to the registry's own host where it is a loopback one (plain http there);
        # never in clear text to whatever host a registry's challenge names.
        mine = _netloc(realm) == self.host.lower() and _loopback(self.host)
        if basic and not (urllib.parse.urlsplit(realm).scheme == "https" or mine):
            basic = ""  # ask for an anonymous token; a refusal then says what to do
        req = urllib.request.Request(url, headers={"Authorization": basic} if basic else {})
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                doc = json.loads(resp.read())
        except (urllib.error.URLError, ValueError, OSError) as exc:
            raise RegistryError(f"token from {url} refused: {exc}; {self._hint()}") from None
        token = doc.get("token") or doc.get("access_token")
        if not token:
            raise RegistryError(f"{url} gave no token; {self._hint()}")
        return f"Bearer {token}"

    def _hint(self) -> str:
        return (
            f"authenticate Docker to {self.host} (`gcloud auth configure-docker {self.host}` "
            "or `docker login`)"
        )

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: bytes | IO[bytes] | None = None,
        scope: str = "",
        ok: tuple[int, ...] = (200,),
        into: Sink | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """(status, headers, body); RegistryError on anything but `ok` (404 included unless
        listed). One retry after an auth challenge. With `into`, an answer in `ok` is
        streamed there (body b"")."""
        full = url if url.startswith("http") else self.base + url
        for attempt in (1, 2):
            hdrs = dict(headers or {})
            if scope in self._auth and _netloc(full) == self.host.lower():
                hdrs["Authorization"] = self._auth[scope]  # the registry's own host only
            if hasattr(data, "seek"):
                data.seek(0)  # type: ignore[union-attr]
            req = urllib.request.Request(full, data=data, headers=hdrs, method=method)
            try:
                with self._opener.open(req, timeout=self.timeout) as resp:
                    status, rh, body = resp.status, _canonical(resp.headers), b""
                    if into is not None and status in ok:
                        shutil.copyfileobj(resp, into, CHUNK)
                    else:
                        body = resp.read()
            except urllib.error.HTTPError as exc:
                status, rh, body = exc.code, _canonical(exc.headers), exc.read()
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise RegistryError(f"cannot reach {self.host}: {reason}") from None
            own = _netloc(full) == self.host.lower()
            if status == 401 and attempt == 1 and rh.get("Www-Authenticate") and own:
                self._auth[scope] = self._login(rh["Www-Authenticate"])
                continue
            if status in ok:
                return status, rh, body
            text = " ".join(body.decode(errors="replace").split())[:300]
            hint = f"; {self._hint()}" if status in (401, 403) else ""
            raise RegistryError(f"{method} {full} answered {status}: {text}{hint}")
        raise AssertionError("unreachable")

    def ping(self) -> None:
        """RegistryError at once when the registry does not answer its API root."""
        self.request("GET", "/v2/", ok=(200, 401))

    # --- blobs and manifests -------------------------------------------------------------

    def has_blob(self, repo: str, digest: str) -> bool:
        status, _, _ = self.request(
            "HEAD", f"/v2/{repo}/blobs/{digest}", scope=_scope(repo), ok=(200, 404)
        )
        return status == 200

    def upload(self, repo: str, blob: Blob, mount_from: str | None = None) -> None:
        """Put a blob into `repo` (mounted from another repo of this registry when it is
        there already), unless it is present."""
        if self.has_blob(repo, blob.digest):
            return
        url = f"/v2/{repo}/blobs/uploads/"
        if mount_from:
            url += "?" + urllib.parse.urlencode({"mount": blob.digest, "from": mount_from})
        status, headers, _ = self.request("POST", url, scope=_scope(repo), ok=(201, 202))
        if status == 201:
            return  # mounted
        location = headers.get("Location") or ""
        location = urllib.parse.urljoin(self.base + "/", location)
        sep = "&" if "?" in location else "?"
        with blob.path.open("rb") as f:
            self.request(
                "PUT",
                f"{location}{sep}digest={urllib.parse.quote(blob.digest)}",
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(blob.size),
                },
                data=f,
                scope=_scope(repo),
                ok=(201,),
            )

    def fetch_blob(self, repo: str, digest: str, into: Sink) -> None:
        """Stream a blob of `repo` into `into` (following the registry's redirect)."""
        self.request("GET", f"/v2/{repo}/blobs/{digest}", scope=_scope(repo), into=into)

    def manifest(self, repo: str, reference: str) -> Manifest | None:
        """The manifest a tag or digest names, or None when there is none."""
        status, headers, body = self.request(
            "GET",
            f"/v2/{repo}/manifests/{reference}",
            headers={"Accept": ACCEPT},
            scope=_scope(repo),
            ok=(200, 404),
        )
        if status == 404:
            return None
        return Manifest(body, headers.get("Content-Type", MANIFEST_V2).split(";")[0])

    def put_manifest(self, repo: str, reference: str, m: Manifest) -> None:
        """Store `m` under a digest (untagged) or a tag (moving it)."""
        _, headers, _ = self.request(
            "PUT",
            f"/v2/{repo}/manifests/{reference}",
            headers={"Content-Type": m.media_type},
            data=m.body,
            scope=_scope(repo),
            ok=(201, 200),
        )
        served = headers.get("Docker-Content-Digest")
        if served and served != m.digest:
            raise RegistryError(f"{repo}: the registry stored {served}, not {m.digest}")

    def delete_tag(self, repo: str, tag: str) -> bool:
        """Remove a tag (OCI distribution 1.1); False where the registry does not allow it."""
        try:
            self.request("DELETE", f"/v2/{repo}/manifests/{tag}", scope=_scope(repo), ok=(202, 200))
        except RegistryError:
            return False
        return True


def index_of(entries: Sequence[tuple[str, Manifest]]) -> Manifest:
    """An index naming one manifest per platform (`linux/arm64`): a Docker manifest list
    (what `docker manifest push` and buildx write for schema-2 images), or an OCI index
    when the images are OCI manifests (zstd layers)."""
    oci = any(m.media_type == OCI_MANIFEST for _, m in entries)
    kind = OCI_INDEX if oci else MANIFEST_LIST
    doc = {
        "schemaVersion": 2,
        "mediaType": kind,
        "manifests": [
            {
                "mediaType": m.media_type,
                "size": len(m.body),
                "digest": m.digest,
                "platform": {"architecture": platform.split("/")[1], "os": platform.split("/")[0]},
            }
            for platform, m in entries
        ],
    }
    return Manifest(json.dumps(doc, indent=3).encode(), kind)


def index_entries(m: Manifest) -> dict[str, str]:
    """platform -> manifest digest of an image index (Docker list or OCI); {} for an image."""
    if m.media_type not in (MANIFEST_LIST, OCI_INDEX):
        return {}
    doc = json.loads(m.body)
    return {
        f"{e['platform']['os']}/{e['platform']['architecture']}": str(e["digest"])
        for e in doc.get("manifests", [])
        if isinstance(e, dict) and isinstance(e.get("platform"), dict)
    }


def _scope(repo: str) -> str:
    return f"repository:{repo}:pull,push"


# --- from the local engine to blobs ---------------------------------------------------------


@dataclass
class Exported:
    """One local image as registry blobs: its config (whose digest is the image id) and
    its layers, gzip- or zstd-compressed."""

    image_id: str
    config: Blob
    layers: list[Blob]
    compression: str = "gzip"

    def manifest(self) -> Manifest:
        """gzip: Docker's schema 2 manifest (what `docker push` writes, pulled by every
        client); zstd: an OCI manifest, the only kind that can name zstd layers."""
        oci = self.compression == "zstd"
        kind = OCI_MANIFEST if oci else MANIFEST_V2
        layer = OCI_LAYER_ZSTD if oci else LAYER_GZIP
        doc = {
            "schemaVersion": 2,
            "mediaType": kind,
            "config": {
                "mediaType": OCI_CONFIG if oci else CONFIG_V1,
                "size": self.config.size,
                "digest": self.config.digest,
            },
            "layers": [
                {"mediaType": layer, "size": b.size, "digest": b.digest} for b in self.layers
            ],
        }
        return Manifest(json.dumps(doc, indent=3).encode(), kind)


class Exporter:
    """`docker save` images into a work directory as registry blobs. Layers shared between
    images (head and worker share all of theirs) are compressed once."""

    def __init__(self, engine: Engine, work: Path, compression: str = "gzip") -> None:
        if compression not in LAYER_COMPRESSIONS:
            raise ValueError(f"unknown layer compression {compression!r}")
        self.engine = engine
        self.work = work
        self.compression = compression
        self._layers: dict[str, Blob] = {}  # diff id (uncompressed sha256) -> compressed

    def export(self, image_id: str, timeout: float = 1800) -> Exported:
        self.work.mkdir(parents=True, exist_ok=True)
        members: dict[str, Blob] = {}  # layer path in the archive -> compressed blob
        pending: dict[str, Future[Blob]] = {}
        texts: dict[str, bytes] = {}
        # `docker save` writes a layer that repeats an earlier one of the same image (two
        # empty WORKDIR layers, say) as a symlink to the first: the same blob, twice
        links: dict[str, str] = {}
        # zlib releases the GIL: layers are compressed in parallel while the archive streams
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            try:
                with tarfile.open(fileobj=self.engine.save(image_id, timeout), mode="r|") as tar:
                    for member in tar:
                        if member.issym() and member.name.endswith("/layer.tar"):
                            where = posixpath.dirname(member.name)
                            target = posixpath.join(where, member.linkname)
                            links[member.name] = posixpath.normpath(target)
                            continue
                        f = tar.extractfile(member) if member.isfile() else None
                        if f is None:
                            continue
                        if member.name.endswith("/layer.tar"):
                            raw, diff_id = self._spool(f)
                            if diff_id in self._layers:
                                raw.unlink()
                                members[member.name] = self._layers[diff_id]
                            else:
                                pending[member.name] = pool.submit(self._compress, raw, diff_id)
                        elif member.name.endswith(".json"):
                            texts[member.name] = f.read()
            except (OSError, tarfile.TarError, EngineError) as exc:
                raise RegistryError(f"docker save {image_id[:19]} failed: {exc}") from None
            members.update({name: f.result() for name, f in pending.items()})
        members.update(
            {name: members[target] for name, target in links.items() if target in members}
        )
        [entry] = json.loads(texts["manifest.json"])
        config_bytes = texts[entry["Config"]]
        config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        if config_digest != image_id:
            raise RegistryError(f"docker save {image_id[:19]} gave config {config_digest[:19]}")
        config_path = self.work / config_digest.replace(":", "-")
        config_path.write_bytes(config_bytes)
        layers = [members[name] for name in entry["Layers"]]
        config = Blob(config_digest, len(config_bytes), config_path)
        return Exported(image_id, config, layers, self.compression)

    def _spool(self, f: IO[bytes]) -> tuple[Path, str]:
        """One layer from the archive to disk; its path and diff id (sha256 as stored)."""
        raw = hashlib.sha256()
        path = self.work / f"raw-{uuid.uuid4().hex}"
        with path.open("wb") as out:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                raw.update(chunk)
                out.write(chunk)
        return path, "sha256:" + raw.hexdigest()

    def _compress(self, raw: Path, diff_id: str) -> Blob:
        """Compress one layer, deterministically (gzip: no name, no time; zstd: one
        thread, a fixed level), and name it by its digest. Both release the GIL."""
        packed = hashlib.sha256()
        tmp = raw.with_suffix("." + self.compression)

        class Tee:
            def __init__(self, out: IO[bytes]) -> None:
                self.out = out
                self.size = 0

            def write(self, b: bytes) -> int:
                packed.update(b)
                self.size += len(b)
                return self.out.write(b)

            def flush(self) -> None:
                self.out.flush()

        with tmp.open("wb") as out, raw.open("rb") as src:
            tee = Tee(out)
            if self.compression == "zstd":
                import zstandard  # only a zstd push needs it (not every CLI start)

                zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=0)
                z = zstd.compressobj(size=raw.stat().st_size)
                for chunk in iter(lambda: src.read(CHUNK), b""):
                    tee.write(z.compress(chunk))
                tee.write(z.flush())
            else:
                with gzip.GzipFile(fileobj=tee, mode="wb", mtime=0, compresslevel=6) as gz:
                    for chunk in iter(lambda: src.read(CHUNK), b""):
                        gz.write(chunk)
        raw.unlink()
        digest = "sha256:" + packed.hexdigest()
        path = self.work / digest.replace(":", "-")
        tmp.replace(path)
        self._layers[diff_id] = Blob(digest, tee.size, path)
        return self._layers[diff_id]

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


# --- from the registry back: the image a digest names is the tested one -------------------


class _Check:
    """A file-like sink for a blob: hashes what arrives and, for a layer, decompresses it
    as it streams and hashes the tar inside (its diff id). Nothing is kept."""

    def __init__(self, media_type: str = "") -> None:
        self.packed = hashlib.sha256()
        self.raw = hashlib.sha256() if media_type else None
        self.unpack: Any = None
        self.errors: tuple[type[Exception], ...] = (zlib.error,)  # a stream's own failures
        if media_type.endswith("+zstd"):
            import zstandard  # only a zstd push needs it (not every CLI start)

            self.unpack = zstandard.ZstdDecompressor().decompressobj()
            self.errors = (zstandard.ZstdError,)
        elif media_type.endswith("gzip"):
            self.unpack = zlib.decompressobj(wbits=31)
        elif media_type:
            raise RegistryError(f"a layer of media type {media_type!r}, which push never writes")
        self.body = bytearray()  # the config's bytes (a few KB); layers keep nothing
        self.error = ""  # why the layer did not decompress

    def write(self, b: bytes) -> int:
        self.packed.update(b)
        if self.raw is not None and not self.error:
            try:
                self.raw.update(self.unpack.decompress(b))
            except self.errors as exc:
                self.error = str(exc) or type(exc).__name__
        elif self.raw is None and len(self.body) < 1 << 20:
            self.body += b
        return len(b)

    @property
    def digest(self) -> str:
        return "sha256:" + self.packed.hexdigest()

    def unpacked(self) -> str:
        """The diff id of a layer that arrived whole; RegistryError when it does not
        decompress, is truncated or has bytes after its end."""
        assert self.raw is not None
        if not self.error:
            self.raw.update(self.unpack.flush())
            if not self.unpack.eof or self.unpack.unused_data:
                self.error = "truncated, or bytes after its end"
        if self.error:
            raise RegistryError(f"does not decompress: {self.error}")
        return "sha256:" + self.raw.hexdigest()


def verify_pushed(
    api: Registry, repo: str, digest: str, image_id: str, known: dict[str, str] | None = None
) -> None:
    """What a pull of `repo@digest` checks, without a client: the manifest is the one under
    that digest, its config is the tested image (config digest = image id) and every layer
    is the blob its digest names and unpacks to the uncompressed layer (diff id) the config
    lists. For images no local client can pull (zstd on Docker < 23); RegistryError on the
    first difference. `known` (blob digest -> diff id) holds the layers already read back
    whole: as a pull skips the layers it has, such a layer is only asked for in `repo`
    (head and worker share all of theirs), and each layer read is added to it."""
    known = {} if known is None else known
    m = api.manifest(repo, digest)
    if m is None or m.digest != digest:
        got = m.digest if m else "nothing"
        raise RegistryError(f"{repo}@{digest} is {got}")
    try:
        doc = json.loads(m.body)
        config_digest, layers = doc["config"]["digest"], doc["layers"]
    except (ValueError, KeyError, TypeError) as exc:
        raise RegistryError(f"{repo}@{digest}: not an image manifest ({exc})") from None
    if config_digest != image_id:
        raise RegistryError(f"{repo}@{digest} names config {config_digest}, not {image_id}")
    config = _Check()
    api.fetch_blob(repo, config_digest, config)
    if config.digest != image_id:
        raise RegistryError(f"{repo}: the registry served other bytes for config {image_id}")
    try:
        diff_ids = json.loads(bytes(config.body))["rootfs"]["diff_ids"]
    except (ValueError, KeyError, TypeError) as exc:
        raise RegistryError(f"{repo}: config {config_digest} lists no layers ({exc})") from None
    if len(layers) != len(diff_ids):
        raise RegistryError(
            f"{repo}@{digest}: {len(layers)} layers for the config's {len(diff_ids)}"
        )
    for i, (layer, diff_id) in enumerate(zip(layers, diff_ids, strict=True)):
        where = f"{repo}@{digest}: layer {i + 1} ({layer.get('digest')})"
        if known.get(layer["digest"]) == diff_id:
            if not api.has_blob(repo, layer["digest"]):
                raise RegistryError(f"{where}: not in {repo}")
            continue
        try:
            check = _Check(str(layer.get("mediaType", "")) or LAYER_GZIP)
            api.fetch_blob(repo, layer["digest"], check)
            if check.digest != layer["digest"]:
                raise RegistryError(f"the registry served other bytes ({check.digest})")
            unpacked = check.unpacked()
        except RegistryError as exc:
            raise RegistryError(f"{where}: {exc}") from None
        if unpacked != diff_id:
            raise RegistryError(f"{where}: unpacks to {unpacked}, not the tested {diff_id}")
        known[layer["digest"]] = diff_id
