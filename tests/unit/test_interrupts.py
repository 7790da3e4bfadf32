"""Interrupts: what the main thread's handler defers, what the cleanup waits for, and the
cleanup's removal of what another thread is still removing."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

from harness import children, interrupts
from harness.engine import Engine
from harness.errors import EngineError


@pytest.fixture(autouse=True)
def handler(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The CLI's handler on SIGINT, a run not stopping, nothing pending."""
    monkeypatch.setattr(children, "_STOPPING", threading.Event())
    monkeypatch.setattr(interrupts, "_pending", [])
    before = signal.signal(signal.SIGINT, interrupts.handle)
    yield
    signal.signal(signal.SIGINT, before)


def test_an_interrupt_waits_for_the_object_being_made_then_stops() -> None:
    made = []
    with pytest.raises(interrupts.Interrupted) as info, interrupts.making("the network n"):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs here and returns: the call goes on
        made.append("n")
    assert made == ["n"] and info.value.code == 130


def test_a_second_interrupt_stops_at_once() -> None:
    reached = []
    with pytest.raises(interrupts.Interrupted), interrupts.making("the network n"):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        reached.append("the end of the block")
    assert not reached


def test_nothing_is_made_once_the_run_stops() -> None:
    children._STOPPING.set()
    made = []
    with (
        pytest.raises(EngineError, match="the volume v not started: the run is stopping"),
        interrupts.making("the volume v"),
    ):
        made.append("v")
    assert not made


def test_the_cleanup_waits_for_calls_in_flight_in_other_threads() -> None:
    inside, release = threading.Event(), threading.Event()

    def make() -> None:
        with interrupts.making("a container"):
            inside.set()
            release.wait(5)

    worker = threading.Thread(target=make)
    worker.start()
    inside.wait(5)
    assert interrupts.settle(timeout=0.1) is False  # still in flight
    threading.Timer(0.2, release.set).start()
    assert interrupts.settle(timeout=5) is True
    worker.join()


class Racing(Engine):
    """A container another thread is already removing (409 "already in progress") for a
    few tries, and its network refused while the container holds an endpoint."""

    def __init__(self) -> None:
        super().__init__(cli="/bin/true")
        self.objects = {"container": {"c1"}, "network": {"n1"}, "volume": set[str]()}
        self.tries = 0

    def ids(self, kind: str, labels_: Any) -> list[str]:
        return sorted(self.objects[kind])

    def remove(self, kind: str, ident: str) -> bool:
        if ident not in self.objects[kind]:
            return True  # NotFound, as Engine.remove says it
        if kind == "container":
            self.tries += 1
            if self.tries >= 3:  # the other thread's removal ends
                self.objects["container"].discard(ident)
            return False  # "removal ... is already in progress"
        if kind == "network" and self.objects["container"]:
            return False  # "has active endpoints"
        self.objects[kind].discard(ident)
        return True


def test_the_cleanup_waits_for_a_removal_under_way_before_the_network() -> None:
    engine = Racing()
    counts = engine.remove_labelled({"run": "r"})
    assert counts == {"container": 1, "network": 1, "volume": 0}
    assert not engine.objects["network"]
