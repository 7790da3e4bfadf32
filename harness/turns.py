"""How cells take turns on the machine while `test` runs them.

A cell's cluster spends its first seconds starting (containers, the head's `ray start`, the
nodes registering, readiness) and its last ones in the driver check and teardown; both
leave the cores half idle (measured on 2 cores: 45-55 % idle while a cluster starts, ~40 %
through the driver check). So the next cell's cluster starts as soon as the cell before
enters its last phase (its driver's node has joined: started beside the joining `ray start`,
it made the join take 10 s instead of 5-6, and a joining raylet gives its agents a fixed
15 s), and waits, ready, until that cell is gone before its own checks run.
Two clusters never run their checks at the same time per slot: Ray Client connects stalled
for 40-80 s when two whole clusters shared two cores.

Per slot (`test --jobs`): at most one cell between its start and its last phase, and at most
one between its checks and its end; so at most two clusters, one of them in its last phase.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Turn(Protocol):
    """What a cell's test tells the scheduler about its phases."""

    def checks(self) -> float:
        """Wait until this cell may run its checks; the seconds waited."""
        ...

    def last_phase(self) -> None:
        """This cell's last phase has begun: the next cell's cluster may start."""
        ...


class Alone:
    """A turn that never waits: a cell tested on its own (or where clusters never overlap)."""

    def checks(self) -> float:
        return 0.0

    def last_phase(self) -> None:
        return None


class _Turn:
    def __init__(self, turns: Turns) -> None:
        self._turns = turns
        self.starting = True
        self.checking = False

    def checks(self) -> float:
        if self.checking:
            return 0.0
        began = time.monotonic()
        self._turns.checking.acquire()
        self.checking = True
        return round(time.monotonic() - began, 2)

    def last_phase(self) -> None:
        if self.starting:
            self.starting = False
            self._turns.starting.release()

    def end(self) -> None:
        self.last_phase()
        if self.checking:
            self.checking = False
            self._turns.checking.release()


class Turns:
    """`slots` clusters run their checks at once; each slot's next cluster starts while
    the one before is in its last phase."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.starting = threading.BoundedSemaphore(slots)
        self.checking = threading.BoundedSemaphore(slots)

    @property
    def cells_at_once(self) -> int:
        """Cells alive at once: one starting and one finishing per slot."""
        return 2 * self.slots

    @contextmanager
    def cell(self) -> Iterator[Turn]:
        """A cell's turn, from before its cluster starts until it is gone (every slot it
        holds is given back, however the cell ends)."""
        self.starting.acquire()
        turn = _Turn(self)
        try:
            yield turn
        finally:
            turn.end()
