"""Every wait's bound comes from harness/timeouts.py; the flags override the path's default."""

from __future__ import annotations

import argparse

from harness import timeouts
from harness.probe_client import Probe


def test_flags_override_the_defaults_of_each_path() -> None:
    none = argparse.Namespace(ready_timeout=None, connect_timeout=None)
    assert timeouts.from_args(none, timeouts.DEFAULT) == timeouts.DEFAULT
    assert timeouts.from_args(none, timeouts.KUBE).ready == 300
    assert timeouts.from_args(none, timeouts.GRID).connect == 60
    given = argparse.Namespace(ready_timeout=15.0, connect_timeout=30.0)
    waits = timeouts.from_args(given, timeouts.KUBE)
    assert (waits.ready, waits.connect, waits.notebook) == (15.0, 30.0, 120.0)


def test_the_host_waits_longer_than_a_probe_that_bounds_itself() -> None:
    seen: list[tuple[list[str], float]] = []

    class Runner:
        def probe(
            self, container: str, args: list[str], timeout: float, env: object = None
        ) -> dict[str, object]:
            seen.append((args, timeout))
            return {}

    probe = Probe(Runner(), "c")
    probe.cluster("ray://h:10001", nodes=2, timeout=30, workload=True)
    probe.notebook("/tmp/x.ipynb", 120)
    probe.jupyter("t0k", 60)
    assert seen == [
        (
            ["cluster", "ray://h:10001", "--expect-nodes", "2", "--timeout", "30", "--workload"],
            30 + timeouts.PROBE_MARGIN,
        ),
        (["notebook", "/tmp/x.ipynb", "--timeout", "120"], 240),  # nbclient's bound is per cell
        (["jupyter", "--token-file", "t0k", "--timeout", "60"], 60 + timeouts.PROBE_MARGIN),
    ]


def test_the_probe_reads_the_command_lines_the_host_builds() -> None:
    from harness.inside import probe
    from harness.probe_client import cluster_args

    once = probe.arguments().parse_args(cluster_args("ray://h:10001", 2, 60, once=True))
    assert once.once and not once.workload and once.expect_nodes == 2
    full = probe.arguments().parse_args(cluster_args("auto", 2, 60, workload=True))
    assert full.workload and not full.once and not full.count_only
    ready = probe.arguments().parse_args(cluster_args("auto", 2, 60, count_only=True))
    assert ready.count_only and not ready.workload


def test_the_serve_probe_waits_for_each_proxy_as_long_as_the_host_says() -> None:
    """A node's Serve proxy starts last; under QEMU it takes minutes (measured), so its
    wait is a bound of `Timeouts`, scaled with the others, not a constant in the probe."""
    from harness.inside import probe

    seen: list[list[str]] = []

    class Runner:
        def probe(
            self, container: str, args: list[str], timeout: float, env: object = None
        ) -> dict[str, object]:
            seen.append(args)
            return {}

    emulated = timeouts.DEFAULT.scaled(timeouts.EMULATION)
    Probe(Runner(), "c").serve(
        "http://h:8265", ["http://h:8000", "http://w:8000"], emulated.serve, None, emulated.proxy
    )
    parsed = probe.arguments().parse_args(seen[0])
    assert parsed.proxy_wait == timeouts.DEFAULT.proxy * timeouts.EMULATION
    assert parsed.http == ["http://h:8000", "http://w:8000"]
    assert probe.arguments().parse_args(["serve", "http://h:8265", "--http", "x"]).proxy_wait == 10
