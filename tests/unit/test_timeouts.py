"""Every wait's bound comes from harness/timeouts.py; the flags override the path's default."""

from __future__ import annotations

import argparse

from harness import timeouts


def test_flags_override_the_defaults_of_each_path() -> None:
    none = argparse.Namespace(ready_timeout=None, connect_timeout=None)
    assert timeouts.from_args(none, timeouts.DEFAULT) == timeouts.DEFAULT
    assert timeouts.from_args(none, timeouts.KUBE).ready == 300
    assert timeouts.from_args(none, timeouts.GRID).connect == 60
    given = argparse.Namespace(ready_timeout=15.0, connect_timeout=30.0)
    waits = timeouts.from_args(given, timeouts.KUBE)
    assert (waits.ready, waits.connect, waits.notebook) == (15.0, 30.0, 120.0)


def test_the_host_waits_longer_than_a_probe_that_bounds_itself() -> None:
    assert timeouts.DEFAULT.host(30) == 30 + timeouts.PROBE_MARGIN
