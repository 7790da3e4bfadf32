"""The probe ends Ray Client's retries at its server's refusal of the token, and only there.

Ray Client logs what its server said at debug level, inside its retry loop's `except
grpc.RpcError`, and retries a refused token as if the server were unavailable. The probe's
handler on that logger raises out of the loop when the words are a token refusal; a server
still starting says something else and is retried."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from harness.inside import probe

WORKER = "ray.util.client.worker"


@pytest.fixture
def captured() -> Iterator[probe._Captured]:
    logger = logging.getLogger(WORKER)
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    into = probe._Captured()
    probe._listen_to_the_server(into)
    yield into
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


def ray_client_attempt(details: str) -> None:
    """What Ray Client's _connect_channel does when its server answers an RpcError."""
    logger = logging.getLogger(WORKER)
    try:
        raise RuntimeError("grpc.RpcError stand-in")
    except RuntimeError:
        logger.debug("Ray client server unavailable, retrying in 1s...")
        logger.debug(f"{probe.SERVER_SAID}{details}")


def test_a_refused_token_ends_the_retries_with_the_servers_words(
    captured: probe._Captured,
) -> None:
    with pytest.raises(probe.ServerRefused):
        ray_client_attempt("Invalid or missing authentication token")
    assert captured.messages == [f"{probe.SERVER_SAID}Invalid or missing authentication token"]


@pytest.mark.parametrize(
    "details",
    ["failed to connect to all addresses; last error: UNAVAILABLE", "Socket closed", ""],
)
def test_a_server_still_starting_is_retried(captured: probe._Captured, details: str) -> None:
    ray_client_attempt(details)  # no exception: Ray retries
    assert captured.messages == [f"{probe.SERVER_SAID}{details}"]


def test_other_debug_lines_neither_stop_nor_reach_the_capture(captured: probe._Captured) -> None:
    logging.getLogger(WORKER).debug("authentication mentioned, but not as the server's words")
    assert captured.messages == []


def test_listening_twice_adds_one_handler(captured: probe._Captured) -> None:
    probe._listen_to_the_server(captured)
    words = [h for h in logging.getLogger(WORKER).handlers if isinstance(h, probe._ServerWords)]
    assert len(words) == 1
