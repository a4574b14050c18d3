"""Live pages: one watcher thread per process notices store changes for every open tab.

It sleeps in `Store.wait` (in-process commits, PostgreSQL LISTEN/NOTIFY, the SQLite WAL check)
and reads the newest event id when woken, and at most once a second on PostgreSQL (whose
NOTIFY is sent only when claimable work grew). However many tabs are open, an idle store sees
at most one query a second from this process; a tab costs one more query only when something
changed, to learn whether its own run did.
"""

from __future__ import annotations

import logging
import threading
import time

from taskplan.errors import StoreUnavailableError
from taskplan.store import console
from taskplan.store.db import Store

log = logging.getLogger("taskplan.web")

# Where any commit wakes a waiter (SQLite), also read the newest event id this often when
# nothing did (a change hidden in one WAL mtime tick is caught by Store.wait's own periodic
# check as well).
IDLE_CHECK = 5.0
# Where only commits that ask to wake others do (PostgreSQL's NOTIFY), read it this often.
POLL = 1.0


class ChangeWatcher:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.latest = 0  # newest event id seen
        self.generation = 0  # bumped whenever `latest` moves
        self.queries = 0  # store reads made, for tests and benchmarks
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="taskplan-web-watch",
                                                daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _read(self) -> None:
        with self.store.read() as tx:
            value = console.latest_event_id(tx)
        self.queries += 1
        if value != self.latest:
            self.latest = value
            self.generation += 1

    def _loop(self) -> None:
        store = self.store
        seen = store.waker.generation
        last_read = 0.0
        while not self._stop.is_set():
            try:
                if not last_read:
                    self._read()
                    last_read = time.monotonic()
                started = time.monotonic()
                gen = store.wait(seen, POLL)
                now = time.monotonic()
                woken = gen != seen or now - started < POLL * 0.9
                seen = gen
                every = IDLE_CHECK if store.dialect.wakes_on_every_commit else POLL
                if woken or now - last_read >= every:
                    if woken and now - last_read < 0.1:
                        time.sleep(0.1)  # a burst of commits: one read for all of them
                    self._read()
                    last_read = time.monotonic()
            except StoreUnavailableError as exc:
                log.warning("web: store unavailable: %s", exc)
                self._stop.wait(2.0)
            except Exception:
                log.exception("web: change watcher")
                self._stop.wait(2.0)
