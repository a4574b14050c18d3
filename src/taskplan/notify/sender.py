"""The sender: delivers the outbox's notifications.

Every agent, scheduler, `serve` and `taskplan run` runs one on its own thread. A process
delivers the notifications it wrote itself, at once; everything else (retries, rows whose
writer died or runs no sender) is delivered by the one sender holding the lease
`leases(name='notify')`, which the others take over within a lease when it dies. Each row is
claimed before its try (pushed past the try's timeout), so two senders never try one row at
once. A try is recorded before it starts and after it ends; a notification whose sender died
mid-try is due again once its hold passes, and is sent again with the same delivery id
(at-least-once: receivers drop repeats by the `X-Taskplan-Delivery` header).

Nothing here runs on the dispatcher's thread, and every channel call has a timeout, so a
slow or dead receiver never delays a task. Nor does it hold up other notifications: the
sender's loop only claims rows and hands each try to a thread of its own, up to FRESH_WORKERS
tries of its own rows and WORKERS retries at once, so a new notification goes out at once
however many tries of a dead receiver are under way. An idle sender sends one statement per
lease.
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
from dataclasses import replace

from taskplan.config import Settings
from taskplan.errors import StoreUnavailableError
from taskplan.notify import channels
from taskplan.notify.channels import Sent, Smtp
from taskplan.notify.rules import Channel
from taskplan.store import notify_ops, sched_ops
from taskplan.store.db import Store
from taskplan.store.notify_ops import Delivery
from taskplan.store.resilience import Outage, retrying

log = logging.getLogger("taskplan.notify")

# Tries of one notification, and the wait after each failed one: about 1 h 45 min in all.
MAX_TRIES = 8
BACKOFF = (5.0, 15.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
# The lease lasts LEASE_FACTOR x lease_seconds and is renewed every lease_seconds: the holder
# only sends retries and rows nobody else sent, so a slow takeover costs little, and an idle
# sender stays at one statement per lease_seconds (each commit also wakes the agent's
# dispatcher on SQLite).
LEASE_FACTOR = 3.0
FRESH_FOR = 5.0  # how long a sender looks for its own rows before leaving them to the holder
BATCH = 16
RECORD_WAIT = 10.0  # seconds a delivery's outcome waits for the store to be recorded
WORKERS = 4  # tries at once of what is due again (the lease holder's retries)
FRESH_WORKERS = 8  # tries at once of the rows this process wrote


class Sender:
    def __init__(self, store: Store, *, smtp: Smtp | None = None, lease: float = 30.0,
                 holder: str | None = None, clock: Callable[[], float] = time.time,
                 max_tries: int = MAX_TRIES, backoff: Sequence[float] = BACKOFF,
                 root: int | None = None) -> None:
        self.store = store
        # A foreground `taskplan run`/`retry`: it retries its own run's notifications (and
        # its sub-runs') and never takes the lease, so another run's slow receiver neither
        # holds up its exit nor has its try cut short there (and sent twice).
        self.root = root
        self.smtp = smtp or Smtp.from_settings({})
        self.lease = lease
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self.max_tries = max_tries
        self.backoff = tuple(backoff)
        self.leader = False
        self.next_due: float | None = None  # as the leader (or a root's sender) last saw it
        self._stop = threading.Event()
        self._kick = notify_ops.kick_event(store)
        self._thread: threading.Thread | None = None
        self._lease_row = False  # seen or made: a standby's renewal is then one statement
        self._fresh: dict[int, float] = {}  # own rows not claimed yet -> when first looked for
        # Tries under way on their own threads (run()'s loop), by kind: "fresh" or "due".
        self._busy = {"fresh": 0, "due": 0}
        self._busy_lock = threading.Lock()
        self._ended = threading.Event()  # a try ended: the holder looks at what is due again

    # -- leadership -----------------------------------------------------------------------
    def try_lead(self) -> bool:
        now = self.clock()
        with self.store.tx() as tx:
            lease = notify_ops.renew_lease(tx, self.holder, now, now + LEASE_FACTOR * self.lease,
                                           create=not self._lease_row)
            self.leader, self.next_due = lease.held, lease.next_due
        self._lease_row = True
        return self.leader

    def release(self) -> None:
        if self.leader:
            with self.store.tx() as tx:
                sched_ops.release_lease(tx, notify_ops.LEASE_NAME, self.holder)
            self.leader = False

    # -- delivering -------------------------------------------------------------------------
    def deliver_due(self) -> int:
        """As the lease holder: claim what is due, deliver it, record each outcome."""
        due = self._claim_due(BATCH)
        self._deliver_all(due)
        if due:
            with self.store.read() as tx:
                self.next_due = notify_ops.next_due(tx, self.root)
        return len(due)

    def _claim_due(self, limit: int) -> list[Delivery]:
        """As the lease holder (or for its root run): claim up to `limit` due rows and record
        their tries' start."""
        now = self.clock()
        with self.store.tx() as tx:
            if self.root is None and not sched_ops.holds_lease(tx, notify_ops.LEASE_NAME,
                                                               self.holder, now):
                self.leader = False
                return []
            due = notify_ops.claim_due(tx, now, limit, self._hold, root=self.root)
            for d in due:
                notify_ops.start_attempt(tx, d, self.holder, now)
        return due

    def deliver_ids(self, ids: Sequence[int]) -> list[int]:
        """Deliver these notifications now if due, lease or not (rows this process wrote, a
        resend). Returns the ids claimed."""
        due = self._claim_ids(ids)
        self._deliver_all(due)
        return [d.id for d in due]

    def _claim_ids(self, ids: Sequence[int]) -> list[Delivery]:
        if not ids:
            return []
        now = self.clock()
        with self.store.tx() as tx:
            due = notify_ops.claim_due(tx, now, len(ids), self._hold, ids=ids)
            for d in due:
                notify_ops.start_attempt(tx, d, self.holder, now)
        return due

    def _deliver_fresh(self, *, wait: bool = True) -> None:
        """Claim and deliver the rows this process wrote; without `wait`, each try on a thread
        of its own (at most FRESH_WORKERS at once), so none waits for another's receiver."""
        mono = time.monotonic()
        for i in notify_ops.take_fresh(self.store):
            self._fresh.setdefault(i, mono)
        room = len(self._fresh) if wait else FRESH_WORKERS - self._busy["fresh"]
        if not self._fresh or room <= 0:
            return
        looked = sorted(self._fresh)[:room]
        due = self._claim_ids(looked)
        for d in due:
            del self._fresh[d.id]
        if wait:
            self._deliver_all(due)
        else:
            self._start_tries("fresh", due)
        # Not visible yet (the writer has not committed) or rolled back: look again for a
        # while; the lease holder sends whatever is left.
        self._fresh = {i: t for i, t in self._fresh.items()
                       if i not in looked or mono - t < FRESH_FOR}

    def _deliver_due_async(self) -> None:
        """As the lease holder: claim what is due, as many as WORKERS threads have room for,
        and try each on its own thread."""
        room = WORKERS - self._busy["due"]
        if room <= 0:
            return
        self._start_tries("due", self._claim_due(room))
        with self.store.read() as tx:
            self.next_due = notify_ops.next_due(tx, self.root)

    def _start_tries(self, kind: str, due: Sequence[Delivery]) -> None:
        for d in due:
            with self._busy_lock:
                self._busy[kind] += 1
            threading.Thread(target=self._try_on_thread, args=(kind, d),
                             name=f"taskplan-notify-{d.id}", daemon=True).start()

    def _try_on_thread(self, kind: str, d: Delivery) -> None:
        try:
            self._deliver_and_drop(d)
        except Exception:  # channels.send never raises; recording may, for a real bug
            log.exception("notifications: delivery %d failed inside taskplan", d.id)
        finally:
            with self._busy_lock:
                self._busy[kind] -= 1
            self._ended.set()
            self._kick.set()

    def _tries_under_way(self) -> int:
        with self._busy_lock:
            return sum(self._busy.values())

    def _deliver_all(self, due: Sequence[Delivery]) -> None:
        if len(due) == 1:
            self._deliver(due[0])
        elif due:
            with ThreadPoolExecutor(min(WORKERS, len(due)),
                                    thread_name_prefix="taskplan-notify") as pool:
                list(pool.map(self._deliver_and_drop, due))

    def _hold(self, channel: Channel) -> float:
        """How long a claimed try keeps other senders off it: its timeout plus one lease
        (a sender that dies mid-try is replaced within a lease, then the try is due again)."""
        limit = channels.COMMAND_TIMEOUT if channel.kind == "command" else \
            channels.DEFAULT_TIMEOUT
        return (channel.timeout or limit) + self.lease

    def _deliver(self, d: Delivery) -> None:
        sent = channels.send(d.channel, d.payload, self.smtp)
        self._record(d, sent)

    def _deliver_and_drop(self, d: Delivery) -> None:
        """`_deliver` on a thread that ends afterwards: the store keeps each thread's
        connection until told to drop it (on PostgreSQL, a server session per try)."""
        try:
            self._deliver(d)
        finally:
            self.store.drop_connection()

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
        # A partial delivery (e-mail to some of its addresses): what is left is the channel
        # of every later try.
        narrowed = None if not sent.left else replace(d.channel, target=sent.left)

        def record() -> None:
            with self.store.tx() as tx:
                notify_ops.end_attempt(tx, d, now, ok=sent.ok, status=sent.status,
                                       error=sent.error, retry_at=retry_at, channel=narrowed)

        try:  # the outcome is worth a short wait for the store
            retrying(record, what="recording a notification's delivery",
                     give_up_after=RECORD_WAIT)
        except StoreUnavailableError:
            log.warning("notifications: the outcome of delivery %d was not recorded (store"
                        " unavailable)", d.id)

    # -- the thread -------------------------------------------------------------------------
    def run(self) -> None:
        """Until stop(): deliver own rows at once, and as the lease holder what is due."""
        renew_every = max(0.2, self.lease)
        next_renew = 0.0
        outage: Outage | None = None
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_renew:
                    if self.root is None:
                        self.try_lead()
                    else:
                        with self.store.read() as tx:
                            self.next_due = notify_ops.next_due(tx, self.root)
                    next_renew = time.monotonic() + renew_every
                self._deliver_fresh(wait=False)
                retries = self.leader or self.root is not None
                if retries and self._ended.is_set():
                    # A try ended (its retry, if any, is due later): what is due next?
                    self._ended.clear()
                    with self.store.read() as tx:
                        self.next_due = notify_ops.next_due(tx, self.root)
                if retries and self.next_due is not None and self.next_due <= self.clock():
                    self._deliver_due_async()
                timeout = next_renew - time.monotonic()
                if self._fresh:
                    timeout = min(timeout, 0.2)
                if (retries and self.next_due is not None
                        and self._busy["due"] < WORKERS):  # else a try's end wakes the loop
                    timeout = min(timeout, self.next_due - self.clock())
                if outage is not None:
                    outage.back()
                    outage = None
            except StoreUnavailableError as exc:
                if outage is None:
                    outage = Outage(exc, log, "notifications: ")
                timeout = outage.backoff.next()
            except Exception:  # the sender must outlive any surprise; say so and go on
                log.exception("notifications: sender error")
                timeout = 1.0
            if self._kick.wait(max(0.0, timeout)):
                self._kick.clear()
                # Set inside the writing transaction: let it commit before looking.
                self._stop.wait(0.05)
        for last_try in (False, True):
            # A connection the server dropped while this sender idled fails once, and is
            # replaced by the next transaction.
            try:
                self._deliver_fresh()  # what this process wrote just before stopping
                self.release()
                break
            except StoreUnavailableError as exc:
                if last_try:
                    log.warning("notifications: could not release the sender lease: %s", exc)
            except Exception:
                log.exception("notifications: sender could not finish cleanly")
                break

    def start(self) -> Sender:
        self._thread = threading.Thread(target=self.run, name="taskplan-notify", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = channels.DEFAULT_TIMEOUT + 2.0) -> None:
        """Stop the thread, giving the tries under way until `timeout` to end (one cut short
        is tried again later, as `interrupted`)."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._kick.set()
        if self._thread is not None:
            self._thread.join(timeout)
            while self._tries_under_way() and time.monotonic() < deadline:
                time.sleep(0.02)

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


def start_sender(store: Store, settings: Settings, root: int | None = None) -> Sender:
    """A sender thread configured from taskplan.toml (for a foreground run: `root`)."""
    return Sender(store, smtp=Smtp.from_settings(settings.smtp),
                  lease=settings.lease_seconds, root=root).start()
