"""In-process wake-ups: what a slot or a committing thread uses to rouse the dispatcher."""

from __future__ import annotations

import threading


class Waker:
    """In-process wake-up: a generation counter under a condition variable."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._gen = 0

    @property
    def generation(self) -> int:
        return self._gen

    def notify(self) -> None:
        with self._cond:
            self._gen += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float | None) -> int:
        with self._cond:
            if self._gen == seen:
                self._cond.wait(timeout)
            return self._gen
