"""The process's one watchdog of SQL timeouts: nearest deadline first, nothing after an
attempt ended, no thread until a timeout is asked for."""

from __future__ import annotations

import threading
import time
from typing import Any

from taskplan.executors.sql import _Deadlines


class Stop:
    def __init__(self, name: str, fired: list[tuple[str, str]], seen: threading.Event) -> None:
        self.name, self.fired, self.seen = name, fired, seen

    def fire(self, reason: str) -> None:
        self.fired.append((self.name, reason))
        self.seen.set()


def wait_for(cond: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_nearest_first_and_never_after_unwatch() -> None:
    fired: list[tuple[str, str]] = []
    seen = threading.Event()
    deadlines = _Deadlines()
    assert deadlines.watch(Stop("no timeout", fired, seen), None)() is None
    assert deadlines._thread is None  # no timeout asked for: no thread
    deadlines.watch(Stop("late", fired, seen), 0.4)
    # Nearer than the deadline the watchdog sleeps towards: it must wake for it.
    deadlines.watch(Stop("early", fired, seen), 0.1)
    ended = deadlines.watch(Stop("ended", fired, seen), 0.05)
    ended()
    wait_for(lambda: len(fired) >= 2, "both timeouts")
    time.sleep(0.1)
    assert fired == [("early", "timeout"), ("late", "timeout")]


def test_ended_watches_do_not_pile_up() -> None:
    fired: list[tuple[str, str]] = []
    deadlines = _Deadlines()
    for _ in range(1000):
        deadlines.watch(Stop("x", fired, threading.Event()), 3600.0)()
    assert len(deadlines._heap) <= 64 + 2
    assert not deadlines._waiting and fired == []


class Raising(Stop):
    def fire(self, reason: str) -> None:
        super().fire(reason)
        raise RuntimeError("can't start new thread")


def test_an_attempt_whose_timeout_fails_does_not_stop_the_watchdog() -> None:
    fired: list[tuple[str, str]] = []
    seen = threading.Event()
    deadlines = _Deadlines()
    deadlines.watch(Raising("broken", fired, seen), 0.01)
    wait_for(lambda: fired, "the first timeout")
    deadlines.watch(Stop("next", fired, seen), 0.01)
    wait_for(lambda: len(fired) == 2, "the watchdog to time out the next attempt too")
    assert fired == [("broken", "timeout"), ("next", "timeout")]
