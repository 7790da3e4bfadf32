"""The Serve probe asks the proxies again until every replica's node has answered: Ray 2.9.3
routes at random (no local-node preference), and one request per proxy may reach the same
replica twice (measured: serve:http failed on a healthy 2.9.3 cluster)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator

import pytest

from harness.inside import probe


@pytest.fixture()
def proxy() -> Iterator[tuple[str, list[str]]]:
    """A loopback 'proxy' answering node A three times, then B; the nodes it answered."""
    answered: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            node = "B" if len(answered) >= 3 else "A"
            answered.append(node)
            body = json.dumps({"node": node}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/app", answered
    finally:
        server.shutdown()
        server.server_close()


def test_asks_again_until_every_node_answered_then_stops(
    proxy: tuple[str, list[str]],
) -> None:
    url, answered = proxy
    got = probe._spread([url], {"B"}, time.time() + 30)
    assert [a["node"] for a in got] == ["A", "A", "A", "B"]
    assert len(answered) == 4  # stopped at the first B


def test_nothing_unseen_or_no_proxy_asks_nothing(proxy: tuple[str, list[str]]) -> None:
    url, answered = proxy
    assert probe._spread([url], set(), time.time() + 30) == []
    assert probe._spread([], {"B"}, time.time() + 30) == []
    assert answered == []


def test_bounded_when_a_node_never_answers(proxy: tuple[str, list[str]]) -> None:
    url, answered = proxy
    got = probe._spread([url], {"C"}, time.time() + 30)
    assert len(got) == probe.SPREAD_ROUNDS and len(answered) == probe.SPREAD_ROUNDS
