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
        self._stores: set[Store] = set()  # whose connections this thread opened
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, store: Store, write: Callable[[], None]) -> None:
        with self._lock:
            self._queue.append(write)
            self._stores.add(store)
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
                    stores, self._stores = self._stores, set()
                    # The thread ends: so do its connections (a PostgreSQL session each).
                    for store in stores:
                        store.drop_connection()
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


class _Flusher:
    """The one thread that writes attempts' output to the store while they run: each due
    every FLUSH_EVERY, or at once when FLUSH_SIZE is waiting.

    Not the thread that read the output, nor a timer thread per flush: every thread that
    writes opens a connection of its own to the store, kept until the process ends, so an
    agent of 8 slots running tasks that print used up PostgreSQL's max_connections within
    seconds. The last flush of an attempt is its slot's (`AttemptLog.close`)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[AttemptLog, float] = {}  # -> monotonic time its flush is due
        self._thread: threading.Thread | None = None

    def schedule(self, out: AttemptLog, at: float) -> None:
        with self._cond:
            if self._due.get(out, at) < at:
                return  # due sooner already
            self._due[out] = at
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="taskplan-log-flush",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def cancel(self, out: AttemptLog) -> None:
        with self._cond:
            self._due.pop(out, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    due = min(self._due.items(), key=lambda kv: kv[1], default=None)
                    if due is not None and due[1] <= now:
                        del self._due[due[0]]
                        break
                    self._cond.wait(None if due is None else due[1] - now)
            try:
                due[0].flush()
            except Exception:  # a bug, not an outage: that chunk waits for the last flush
                log.exception("output could not be stored")


_flusher = _Flusher()


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
            if not self._buf:
                return
            at = (time.monotonic() if self._buf_len >= FLUSH_SIZE
                  else self._last_flush + FLUSH_EVERY)
        _flusher.schedule(self, at)

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
                _late.add(self._store, write)
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
        _flusher.cancel(self)
        self.flush(final=True)
        with self._lock:
            self._closed = True
