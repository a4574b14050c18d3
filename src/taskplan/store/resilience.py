"""Riding out a store that goes away: the one backoff every retry loop uses, and `retrying`.

Which errors mean the store went away is the dialect's to say (store/dialects/).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from taskplan.errors import StoreUnavailableError

T = TypeVar("T")
log = logging.getLogger("taskplan.store.db")

# Reconnection backoff: quick at first (a server restart takes about a second), then capped.
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 1.0


class Backoff:
    """The delays between tries at reaching the store: BACKOFF_FIRST, doubling, capped at
    BACKOFF_MAX. Every loop that rides out an outage (daemons' `retrying`, the agent's
    dispatcher, the PostgreSQL listener) takes its delays from one of these."""

    def __init__(self) -> None:
        self.delay = BACKOFF_FIRST  # the delay the next `next()` gives

    def next(self) -> float:
        """The delay to wait now; the one after it is doubled (up to the cap)."""
        delay = self.delay
        self.delay = min(BACKOFF_MAX, delay * 2)
        return delay

    def reset(self) -> None:
        """The store answered: the next outage starts again from the first delay."""
        self.delay = BACKOFF_FIRST


class Outage:
    """The store is unreachable: when that started, and the backoff before the next try. A
    loop that rides it out says so once when it starts and once when it ends (`back`), not at
    every try (up to one a second for as long as it lasts)."""

    def __init__(self, exc: BaseException, logger: logging.Logger, prefix: str = "") -> None:
        self.started = time.monotonic()
        self.backoff = Backoff()
        self._log = logger
        self._prefix = prefix
        logger.warning("%sstore unavailable, retrying until it is back: %s", prefix, exc)

    def seconds(self) -> float:
        return time.monotonic() - self.started

    def sleep(self) -> None:
        time.sleep(self.backoff.next())

    def back(self) -> None:
        self._log.warning("%sstore back after %.1fs", self._prefix, self.seconds())


def retrying(fn: Callable[[], T], *, what: str, stop: Callable[[], bool] | None = None,
             give_up_after: float | None = None, each_try: logging.Logger | None = None
             ) -> T:
    """Call `fn` until it does not raise StoreUnavailableError, backing off between tries.

    For daemons that must ride out a store restart. Gives up (re-raising) when `stop()` turns
    true or after `give_up_after` seconds. By default the outage is logged twice (when it
    starts, when the store is back); with `each_try` every try is logged there, with the
    delay before the next (the scheduler's log).
    """
    backoff = Backoff()
    started = time.monotonic()
    warned = False
    while True:
        try:
            result = fn()
        except StoreUnavailableError as exc:
            if (stop is not None and stop()) or (
                    give_up_after is not None and time.monotonic() - started >= give_up_after):
                raise
            delay = backoff.next()
            if each_try is not None:
                each_try.warning("store unavailable while %s, retrying in %.2fs: %s", what,
                                 delay, exc)
            elif not warned:
                log.warning("store unavailable while %s, retrying: %s", what, exc)
                warned = True
            time.sleep(delay)
            continue
        if warned:
            log.warning("store back after %.1fs (%s)", time.monotonic() - started, what)
        return result
