"""End-to-end session hygiene: the build cache the session's own builds left unshared."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from harness.engine import Engine
from harness.errors import HarnessError


@pytest.fixture(scope="session", autouse=True)
def build_cache_given_back() -> Iterator[None]:
    """The tests build from contexts in temporary directories: each leaves a BuildKit
    `local source` record (~0.5 GiB a session here) that no later build can use. At the
    end, records created during the session that no image shares and no build uses go."""
    since = datetime.now(timezone.utc)
    yield
    with contextlib.suppress(HarnessError):  # no engine: the tests themselves said so
        Engine().prune_build_cache_since(since)
