"""An attempt's output on its way to the store: buffered, flushed often, and bounded.

Output beyond `LIMIT` characters is not stored except for its last `TAIL` characters, which are
kept in memory and written when the attempt ends behind a note saying how much was dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from taskplan.errors import StoreUnavailableError
from taskplan.store import ops
from taskplan.store.db import Store, retrying

log = logging.getLogger(__name__)

FLUSH_EVERY = 0.25  # seconds: how stale `logs --follow` may be
FLUSH_SIZE = 32 * 1024
LIMIT = 1024 * 1024  # characters of an attempt's output stored; past it only the tail
TAIL = 64 * 1024  # characters of the end of the output kept past LIMIT
FINAL_WAIT = 60.0  # seconds the last flush waits on its slot before handing over to _late


class _LateWrites:
    """Final chunks of output whose store stayed away past FINAL_WAIT: one thread writes them,
    oldest first, once the store is back, so a slot is not held while it is away."""

    def __init__(self) -> None:
        self._queue: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, write: Callable[[], None]) -> None:
        with self._lock:
            self._queue.append(write)
            if self._thread is None:
                self._thread = threading.Thread(target=self._drain, name="taskplan-late-logs",
                                                daemon=True)
                self._thread.start()

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._thread = None
                    return
                write = self._queue[0]
            try:
                retrying(write, what="storing output that waited for the store")
            except Exception:  # a bug, not an outage: lose this chunk, not the later ones
                log.exception("output that waited for the store could not be stored")
            with self._lock:
                self._queue.pop(0)

    def wait(self, timeout: float) -> bool:
        """Wait until every waiting chunk is stored (True) or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True


_late = _LateWrites()


def wait_for_late_output(timeout: float) -> bool:
    """Before a process that ran attempts exits: the output still waiting for the store."""
    return _late.wait(timeout)


class AttemptLog:
    def __init__(self, store: Store, task_run_id: int, attempt: int) -> None:
        self._store = store
        self._tr = task_run_id
        self._attempt = attempt
        self._lock = threading.Lock()
        self._buf: list[str] = []
        self._buf_len = 0
        self._stored = 0
        self._dropped = 0
        self._produced = 0  # every character the attempt wrote, kept or not
        self._tail = ""
        self._seq = 0
        self._last_flush = time.monotonic()
        self._timer: threading.Timer | None = None
        self._closed = False

    def write(self, text: str) -> None:
        if not text:
            return
        with self._lock:
            if self._closed:
                return
            self._produced += len(text)
            room = LIMIT - self._stored - self._buf_len
            if room > 0:
                head = text[:room]
                self._buf.append(head)
                self._buf_len += len(head)
                text = text[room:]
            if text:
                self._dropped += len(text)
                self._tail = (self._tail + text)[-TAIL:]
            due = (time.monotonic() - self._last_flush >= FLUSH_EVERY
                   or self._buf_len >= FLUSH_SIZE)
            if not due and self._timer is None and self._buf:
                self._timer = threading.Timer(FLUSH_EVERY, self._timed_flush)
                self._timer.daemon = True
                self._timer.start()
        if due:
            self.flush()

    def _timed_flush(self) -> None:
        with self._lock:
            self._timer = None
        self.flush()

    def flush(self, final: bool = False) -> None:
        with self._lock:
            chunk = "".join(self._buf)
            self._buf.clear()
            self._buf_len = 0
            if final and self._dropped:
                kept = len(self._tail)
                chunk += (f"\n[taskplan: {self._dropped - kept} characters of output dropped;"
                          f" the last {kept} follow]\n{self._tail}")
            if not chunk:
                return
            seq = self._seq
            self._seq += 1
            self._stored += len(chunk)
            total = self._produced
            self._last_flush = time.monotonic()
        def write() -> None:
            with self._store.tx() as tx:
                ops.append_log(tx, self._tr, self._attempt, seq, chunk, total,
                               self._dropped > 0)

        if final:
            try:  # the attempt has ended: wait a while for a store that is restarting
                retrying(write, what="storing an attempt's output", give_up_after=FINAL_WAIT)
            except StoreUnavailableError as exc:
                # Still away: the last chunk waits in memory, as the attempt's end does, and
                # is written when the store is back (lost only if this process ends first).
                log.warning("output of task run %s attempt %s waits for the store: %s",
                            self._tr, self._attempt, exc)
                _late.add(write)
            return
        try:
            write()
        except StoreUnavailableError:
            # The store is away: keep the chunk (under its sequence number) for the next
            # flush instead of failing the attempt that printed it.
            with self._lock:
                if self._seq == seq + 1:
                    self._seq = seq
                    self._stored -= len(chunk)
                    self._buf.insert(0, chunk)
                    self._buf_len += len(chunk)

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        self.flush(final=True)
        with self._lock:
            self._closed = True
