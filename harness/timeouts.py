"""How long each wait may take, in seconds: every bound the test, grid and probe paths use
comes from here. `--ready-timeout` and `--connect-timeout` set the first two; the others
are fixed bounds on single steps. A probe bounds itself with `--timeout` inside the image;
the host waits `PROBE_MARGIN` longer for the interpreter and Ray's import around it.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

PROBE_MARGIN = 90.0
PROBE_COMMAND = 30.0  # `probe --timeout`'s default: how long an address may take to answer


@dataclass(frozen=True, kw_only=True)
class Timeouts:
    ready: float = 120.0  # a cluster's nodes registered: containers, kube pods, grid clusters
    connect: float = 120.0  # a client connects, probes every node and runs the workload
    notebook: float = 120.0  # nbclient executes parity.ipynb
    jupyter: float = 60.0  # JupyterLab answers /api/status and /lab
    join: float = 120.0  # `ray start --address` of a node joining to run a driver
    driver: float = 60.0  # ray.init as a driver, then parity on every node
    gpu: float = 120.0  # Ray's GPU resources and a num_gpus=1 task
    jobs: float = 120.0  # the dashboard answers and a job runs to a terminal status
    serve: float = 180.0  # a Serve app deployed by a job, asked over HTTP, shut down
    proxy: float = 10.0  # after the deploy, a node's Serve proxy answers (it starts last)
    auth: float = 60.0  # one client's round of the token paths (Jobs, GCS, Ray Client)
    facts: float = 60.0  # an idle client container reports its interpreter

    def scaled(self, factor: float) -> Timeouts:
        """Every bound `factor` times longer (a cell run under QEMU emulation)."""
        return Timeouts(
            **{f.name: getattr(self, f.name) * factor for f in dataclasses.fields(self)}
        )


DEFAULT = Timeouts()
# Under QEMU (a linux/arm64 cell on an x86_64 host) Python and Ray run several times slower
# (measured here: `import ray` 2.7 s vs 0.8 s native; a cell's test 279 s vs ~50 s): every
# bound of such a cell is this many times longer.
EMULATION = 6.0
# The grid's clients only connect and probe (no workload), to a cluster proven up.
GRID = Timeouts(connect=60.0)
# Pods on Kubernetes are scheduled and their containers created before Ray starts.
KUBE = Timeouts(ready=300.0)


def from_args(args: argparse.Namespace, defaults: Timeouts) -> Timeouts:
    """`defaults`, with what --ready-timeout and --connect-timeout set."""
    given = {
        "ready": getattr(args, "ready_timeout", None),
        "connect": getattr(args, "connect_timeout", None),
    }
    return dataclasses.replace(defaults, **{k: v for k, v in given.items() if v is not None})
