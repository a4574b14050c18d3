"""The sender: delivers the outbox's notifications, one sender at a time across processes.

Every agent, scheduler and `serve` runs one on its own thread; the one holding the lease
`leases(name='notify')` delivers, the others stand by and take over within a lease when it
dies. A try is recorded before it starts and after it ends; a notification whose sender died
mid-try is due again once its hold passes, and is sent again with the same delivery id
(at-least-once: receivers drop repeats by the `X-Taskplan-Delivery` header).

Nothing here runs on the dispatcher's thread, and every channel call has a timeout, so a
slow or dead receiver never delays a task.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from taskplan.errors import StoreUnavailableError
from taskplan.notify import channels
from taskplan.notify.channels import Sent, Smtp
from taskplan.notify.rules import Channel
from taskplan.store import notify_ops, sched_ops
from taskplan.store.db import Store
from taskplan.store.notify_ops import Delivery

log = logging.getLogger("taskplan.notify")

LEASE_NAME = "notify"
# Tries of one notification, and the wait after each failed one: about 1 h 45 min in all.
MAX_TRIES = 8
BACKOFF = (5.0, 15.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
POLL = 2.0  # how often the leader looks for rows other processes wrote
BATCH = 16
WORKERS = 4


class Sender:
    def __init__(self, store: Store, *, smtp: Smtp | None = None, lease: float = 30.0,
                 holder: str | None = None, clock: Callable[[], float] = time.time,
                 max_tries: int = MAX_TRIES, backoff: Sequence[float] = BACKOFF,
                 poll: float = POLL) -> None:
        self.store = store
        self.smtp = smtp or Smtp.from_settings({})
        self.lease = lease
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self.max_tries = max_tries
        self.backoff = tuple(backoff)
        self.poll = poll
        self.leader = False
        self._stop = threading.Event()
        self._kick = notify_ops.kick_event(store)
        self._thread: threading.Thread | None = None

    # -- leadership -----------------------------------------------------------------------
    def try_lead(self) -> bool:
        now = self.clock()
        with self.store.tx() as tx:
            self.leader = sched_ops.acquire_lease(tx, LEASE_NAME, self.holder, now,
                                                  now + self.lease)
        return self.leader

    def release(self) -> None:
        if self.leader:
            with self.store.tx() as tx:
                sched_ops.release_lease(tx, LEASE_NAME, self.holder)
            self.leader = False

    # -- delivering -------------------------------------------------------------------------
    def deliver_due(self) -> int:
        """Claim what is due, deliver it (up to WORKERS at once), record each outcome."""
        now = self.clock()
        with self.store.tx() as tx:
            if not sched_ops.holds_lease(tx, LEASE_NAME, self.holder, now):
                self.leader = False
                return 0
            due = notify_ops.claim_due(tx, now, BATCH, self._hold)
            for d in due:
                notify_ops.start_attempt(tx, d, self.holder, now)
        if not due:
            return 0
        if len(due) == 1:
            self._deliver(due[0])
        else:
            with ThreadPoolExecutor(min(WORKERS, len(due)),
                                    thread_name_prefix="taskplan-notify") as pool:
                list(pool.map(self._deliver, due))
        return len(due)

    def _hold(self, channel: Channel) -> float:
        """How long a claimed try keeps other senders off it: its timeout plus one lease
        (a sender that dies mid-try is replaced within a lease, then the try is due again)."""
        limit = channels.COMMAND_TIMEOUT if channel.kind == "command" else \
            channels.DEFAULT_TIMEOUT
        return (channel.timeout or limit) + self.lease

    def _deliver(self, d: Delivery) -> None:
        sent = channels.send(d.channel, d.payload, self.smtp)
        self._record(d, sent)

    def _record(self, d: Delivery, sent: Sent) -> None:
        now = self.clock()
        tries = d.attempts + 1 - d.round_from
        retry_at = None
        if not sent.ok and sent.retry and tries < self.max_tries:
            retry_at = now + self.backoff[min(tries - 1, len(self.backoff) - 1)]
        if not sent.ok:
            log.warning("notification %d (%s, %s) try %d failed: %s%s", d.id, d.event,
                        d.channel.describe(), tries, sent.error,
                        "" if retry_at else " (giving up)")
        for _ in range(20):  # the outcome is worth a short wait for the store
            try:
                with self.store.tx() as tx:
                    notify_ops.end_attempt(tx, d, now, ok=sent.ok, status=sent.status,
                                           error=sent.error, retry_at=retry_at)
                return
            except StoreUnavailableError:
                time.sleep(0.5)

    # -- the thread -------------------------------------------------------------------------
    def run(self) -> None:
        """Lead (or stand by) until stop(): deliver what is due, sleep until the next."""
        renew_every = max(0.2, self.lease / 3)
        next_renew = 0.0
        while not self._stop.is_set():
            try:
                mono = time.monotonic()
                if mono >= next_renew:
                    self.try_lead()
                    next_renew = mono + renew_every
                timeout = next_renew - time.monotonic()
                if self.leader:
                    while self.deliver_due() and not self._stop.is_set():
                        pass
                    with self.store.read() as tx:
                        due = notify_ops.next_due(tx)
                    timeout = min(timeout, self.poll)
                    if due is not None:
                        timeout = min(timeout, due - self.clock())
            except StoreUnavailableError as exc:
                log.warning("notifications: store unavailable, retrying: %s", exc)
                timeout = 1.0
            except Exception:  # the sender must outlive any surprise; say so and go on
                log.exception("notifications: sender error")
                timeout = 1.0
            if self._kick.wait(max(0.0, timeout)):
                self._kick.clear()
                # Set inside the writing transaction: let it commit before looking.
                self._stop.wait(0.05)
        try:
            self.release()
        except Exception:
            log.exception("cannot release the notification lease")

    def start(self) -> Sender:
        self._thread = threading.Thread(target=self.run, name="taskplan-notify", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._kick.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def flush(self, root_run_id: int, timeout: float) -> int:
        """Wait until every notification of this run (and its sub-runs) had its first try, or
        `timeout` passed. Returns how many are still untried."""
        deadline = time.monotonic() + timeout
        while True:
            with self.store.read() as tx:
                left = notify_ops.untried_of_root(tx, root_run_id)
            if left == 0 or time.monotonic() >= deadline:
                return left
            self._kick.set()
            time.sleep(0.1)


def start_sender(store: Store, settings: object) -> Sender:
    """A sender thread configured from taskplan.toml (settings: config.Settings)."""
    from taskplan.config import Settings

    assert isinstance(settings, Settings)
    return Sender(store, smtp=Smtp.from_settings(settings.smtp),
                  lease=settings.lease_seconds).start()
