"""Riding out a store that goes away: backoff between tries.

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


def retrying(fn: Callable[[], T], *, what: str, stop: Callable[[], bool] | None = None,
             give_up_after: float | None = None) -> T:
    """Call `fn` until it does not raise StoreUnavailableError, backing off between tries.

    For daemons that must ride out a store restart. Gives up (re-raising) when `stop()` turns
    true or after `give_up_after` seconds.
    """
    delay = BACKOFF_FIRST
    started = time.monotonic()
    warned = False
    while True:
        try:
            result = fn()
        except StoreUnavailableError as exc:
            if (stop is not None and stop()) or (
                    give_up_after is not None and time.monotonic() - started >= give_up_after):
                raise
            if not warned:
                log.warning("store unavailable while %s, retrying: %s", what, exc)
                warned = True
            time.sleep(delay)
            delay = min(BACKOFF_MAX, delay * 2)
            continue
        if warned:
            log.warning("store back after %.1fs (%s)", time.monotonic() - started, what)
        return result
