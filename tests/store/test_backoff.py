"""The one backoff: its delays, and the retry loops that take theirs from it."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from taskplan import scheduler
from taskplan.errors import StoreUnavailableError
from taskplan.store import resilience
from taskplan.store.resilience import BACKOFF_FIRST, BACKOFF_MAX, Backoff, retrying


def test_the_delays_double_from_the_first_up_to_the_cap() -> None:
    backoff = Backoff()
    delays = [backoff.next() for _ in range(8)]
    assert delays[0] == BACKOFF_FIRST == 0.05 and BACKOFF_MAX == 1.0
    assert delays == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    backoff.reset()
    assert backoff.next() == BACKOFF_FIRST


def _failing(times: int) -> Callable[[], str]:
    left = [times]

    def fn() -> str:
        if left[0]:
            left[0] -= 1
            raise StoreUnavailableError("the store is away")
        return "done"
    return fn


def test_retrying_waits_the_backoff_and_warns_once(monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    slept: list[float] = []
    monkeypatch.setattr(resilience.time, "sleep", slept.append)
    with caplog.at_level(logging.WARNING, logger="taskplan.store.db"):
        assert retrying(_failing(4), what="testing") == "done"
    assert slept == [0.05, 0.1, 0.2, 0.4]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("store unavailable while testing, retrying")
    assert messages[1].startswith("store back after")


def test_the_scheduler_retries_with_the_same_delays_and_logs_each(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    slept: list[float] = []
    monkeypatch.setattr(scheduler.time, "sleep", slept.append)
    with caplog.at_level(logging.WARNING, logger="taskplan.scheduler"):
        assert scheduler.retrying(_failing(3), what="testing", stop=lambda: False) == "done"
    assert slept == [0.05, 0.1, 0.2]
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        f"store unavailable while testing, retrying in {d:.2f}s" for d in slept]
    with pytest.raises(StoreUnavailableError):
        scheduler.retrying(_failing(1), what="testing", stop=lambda: True)
