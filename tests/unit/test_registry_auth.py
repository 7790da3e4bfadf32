"""Where the registry client sends credentials, against real HTTP servers on loopback: a
registry that challenges with a token realm on another host and redirects blob reads to
another port (as registries hand out signed storage URLs). No Docker needed."""

from __future__ import annotations

import base64
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import registry_api

USER, SECRET = "ci-bot", "s3cr3t-password"


class Recorder(http.server.ThreadingHTTPServer):
    """A loopback server that records the Authorization header of every request."""

    def __init__(self, answer: Any) -> None:
        self.seen: list[tuple[str, str | None]] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.seen.append((self.path, self.headers.get("Authorization")))
                status, headers, body = answer(self)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Recorder]]:
    storage = Recorder(lambda h: (200, {}, b'{"schemaVersion": 2}'))
    token = Recorder(lambda h: (200, {}, json.dumps({"token": "registry-token"}).encode()))

    def registry(h: http.server.BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        if h.headers.get("Authorization") != "Bearer registry-token":
            realm = f'Bearer realm="http://{token.host}/token",service="r",scope="repo:x:pull"'
            return 401, {"WWW-Authenticate": realm}, b""
        return 307, {"Location": f"http://{storage.host}/signed?sig=abc"}, b""

    reg = Recorder(registry)
    config = tmp_path / "docker"
    config.mkdir()
    auth = base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {reg.host: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    yield {"registry": reg, "token": token, "storage": storage}
    for s in (reg, token, storage):
        s.shutdown()
        s.server_close()


def test_no_credentials_leave_for_another_host(servers: dict[str, Recorder]) -> None:
    reg, token, storage = servers["registry"], servers["token"], servers["storage"]
    client = registry_api.Registry(reg.host)
    assert client.creds == (USER, SECRET)
    status, _, body = client.request("GET", "/v2/x/blobs/sha256:abc", scope="repo:x:pull")
    assert status == 200 and b"schemaVersion" in body  # the redirect was followed
    # the token service on another host, over plain http: asked anonymously
    assert [auth for _, auth in token.seen] == [None]
    # the registry itself got the token it handed out
    assert reg.seen[-1][1] == "Bearer registry-token"
    # storage behind the redirect: no Authorization header at all
    assert storage.seen == [("/signed?sig=abc", None)]
    every = [a for s in (reg, token, storage) for _, a in s.seen if a]
    assert not any("Basic" in a for a in every)  # the password went nowhere in clear text


def test_credentials_go_to_a_loopback_registrys_own_token_service(
    servers: dict[str, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local registry (plain http on loopback) with its token realm on itself."""
    reg = servers["registry"]
    client = registry_api.Registry(reg.host)
    header = f'Bearer realm="http://{reg.host}/token",service="r"'
    # the registry answers its own /token with the redirect: only the header sent matters
    with pytest.raises(registry_api.RegistryError):
        client._login(header)
    path, auth = reg.seen[-1]
    assert path.startswith("/token") and auth is not None and auth.startswith("Basic ")
