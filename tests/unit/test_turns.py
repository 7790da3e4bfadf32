"""How cells take turns (harness.turns): pure logic, real threads, no engine."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.turns import Alone, Turns

WAIT = 5.0  # generous bound for a thread that should get its turn; never reached when right


def test_the_next_cell_starts_at_the_last_phase_and_checks_after_the_end() -> None:
    turns = Turns(1)
    events: list[str] = []
    lock = threading.Lock()
    a_in_last_phase = threading.Event()
    b_started = threading.Event()
    a_may_end = threading.Event()

    def note(what: str) -> None:
        with lock:
            events.append(what)

    def cell_a() -> None:
        with turns.cell() as turn:
            note("a starts")
            turn.checks()
            note("a checks")
            turn.last_phase()
            a_in_last_phase.set()
            assert a_may_end.wait(WAIT)
            note("a ends")

    def cell_b() -> None:
        assert a_in_last_phase.wait(WAIT)
        with turns.cell() as turn:
            note("b starts")
            b_started.set()
            turn.checks()
            note("b checks")

    with ThreadPoolExecutor(turns.cells_at_once) as pool:
        a, b = pool.submit(cell_a), pool.submit(cell_b)
        assert b_started.wait(WAIT), "b's cluster did not start while a was in its last phase"
        assert "b checks" not in events  # a is not gone yet
        a_may_end.set()
        a.result(WAIT)
        b.result(WAIT)
    assert events == ["a starts", "a checks", "b starts", "a ends", "b checks"]


def test_no_cell_starts_before_the_one_before_reaches_its_last_phase() -> None:
    turns = Turns(1)
    with turns.cell():
        assert not turns.starting.acquire(timeout=0.05)


def test_a_cell_that_ends_early_gives_back_every_slot() -> None:
    turns = Turns(1)
    with pytest.raises(RuntimeError), turns.cell() as turn:
        turn.checks()
        raise RuntimeError("the cluster did not start")
    assert turns.starting.acquire(timeout=0.05)
    assert turns.checking.acquire(timeout=0.05)


def test_last_phase_and_checks_are_idempotent() -> None:
    turns = Turns(1)
    with turns.cell() as turn:
        turn.checks()
        assert turn.checks() == 0.0
        turn.last_phase()
        turn.last_phase()  # a BoundedSemaphore would raise on a second release
    assert turns.starting.acquire(timeout=0.05)


def test_alone_never_waits() -> None:
    alone = Alone()
    assert alone.checks() == 0.0
    alone.last_phase()
