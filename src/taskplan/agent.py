"""An agent: N slots, a dispatcher that claims ready task runs, leases kept alive by heartbeats.

One dispatcher thread owns the hot path: each turn it records every attempt that ended and
claims work for every free slot in ONE transaction, then sleeps until a slot frees up, another
process commits, or a timer (retry, heartbeat) is due. Slot threads only execute.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import IO, Any
from zoneinfo import ZoneInfo

from taskplan.attempt_log import AttemptLog, wait_for_late_output
from taskplan.engine import Claim, Engine, Outcome, StepResult
from taskplan.errors import StoreConflictError, StoreUnavailableError, TaskplanError
from taskplan.executors import AttemptContext, Cancellation, ExecRequest, executor_for
from taskplan.executors.base import LazyResults, SqlSetupError
from taskplan.model import JobSpec, TaskRunKind, TaskSpec, TaskState
from taskplan.redact import mask_url
from taskplan.spec import templating
from taskplan.spec.templating import error_line, is_template, render, render_value
from taskplan.store import ops
from taskplan.store.db import retrying
from taskplan.store.resilience import Outage

log = logging.getLogger(__name__)
StepObserver = Callable[[list[tuple[Claim, Outcome]], StepResult], None]

FOREACH_CHUNK = 5000  # items read and inserted per executemany
CANCEL_CHECK_EVERY = 0.1  # seconds between checks that running attempts were not cancelled
GIVE_UP_WHEN_CANCELLED = 5.0  # s of store outage after which a cancelled agent just exits
# s a cancelled agent waits for killed attempts to end; an in-process python function cannot
# be killed, so past this it is recorded cancelled and left behind
CANCEL_GRACE = 1.0
FLUSH_GIVE_UP = 60.0  # s an exiting agent keeps trying to record its last outcomes
HOLD_CHECK_EVERY = 1.0  # s between looks for a sign of life of agents holding work
# s at most between two calls of run()'s `until` while idle: what it watches (a run ended by
# another process) may change with no wake-up here, and a beat can be 10 s away
UNTIL_CHECK_EVERY = 0.25
# s before an agent whose claim left out a run another step held (PostgreSQL) looks again
CONTENDED_RETRY = 0.05
CLOCK_JUMP = 2.0  # s of wall clock gained or lost against the monotonic clock between beats
CLOCK_JUMP_HOLD = 30.0  # s without reaping after a jump (the default lease)


class UpstreamResults(LazyResults):
    """Results of the tasks a task waits for (by edge or by stage), by task name.

    Read from the store only when a task asks for them. Only tasks that succeeded have one; a
    foreach's is the list of its items' results, in item order.
    """

    def __init__(self, engine: Engine, run_id: int, names: tuple[str, ...]) -> None:
        super().__init__(names)
        self._engine = engine
        self._run_id = run_id

    def _fetch(self) -> dict[str, Any]:
        if not self.waits_for:
            return {}

        def read() -> dict[str, Any]:
            with self._engine.store.read() as tx:
                return ops.upstream_results(tx, self._run_id, self.waits_for)

        return retrying(read, what="reading upstream results", give_up_after=300.0)


class TaskResultsView(Mapping[str, Any]):
    """`tasks.<name>.result` for templates, loaded only if a template reads it.

    A foreach item must not parse its upstream's 100,000-element result just to render a
    command that never mentions it.
    """

    def __init__(self, results: UpstreamResults) -> None:
        self._results = results

    def __getitem__(self, key: str) -> dict[str, Any]:
        return {"result": self._results[key]}

    def __iter__(self) -> Any:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)


class Agent:
    def __init__(self, engine: Engine, *, slots: int, name: str | None = None,
                 root_run_id: int | None = None, lease: float = 30.0,
                 exit_when_idle: float | None = None, labels: Iterable[str] = ()) -> None:
        if slots < 1:
            raise ValueError("an agent needs at least one slot")
        self.engine = engine
        self.store = engine.store
        self.slots = slots
        self.host = socket.gethostname()
        self.name = name or f"{self.host}:{os.getpid()}"
        self.root_run_id = root_run_id
        # Routing: a task run is claimed only by an agent with all its labels (docs/routing.md).
        self.labels = agent_labels(labels, self.host)
        self.lease = lease
        self.exit_when_idle = exit_when_idle
        # Told, on the dispatcher thread, what each committed step recorded and claimed: the
        # foreground runner's progress (which sets it) comes from here, not from reading the
        # store back.
        self.on_step: StepObserver | None = None
        self.agent_id: int | None = None
        self._done: queue.SimpleQueue[tuple[Claim, Outcome]] = queue.SimpleQueue()
        self._active: dict[int, tuple[Claim, Cancellation]] = {}
        self._active_lock = threading.Lock()
        # Slot threads, started as claims need them (an idle agent has none), each taking
        # one attempt at a time from this queue; None tells one to leave.
        self._jobs: queue.SimpleQueue[tuple[Claim, Cancellation] | None] = queue.SimpleQueue()
        self._slot_threads: list[threading.Thread] = []
        self._draining = threading.Event()
        self._cancel_all = threading.Event()
        self._stopped = threading.Event()
        self.finished_runs: dict[int, str] = {}
        self.max_concurrency = 0
        # Dispatcher-only state: outcomes not yet committed, task runs claimed and not yet
        # recorded, and when other agents may be declared lost by their lease again (after
        # a fresh start, an outage or a clock jump).
        self._unrecorded: list[tuple[Claim, Outcome]] = []
        self._claimed: set[int] = set()
        self._reap_after = 0.0
        self._clock_offset: float | None = None
        self._upstream_names: dict[tuple[int, str], tuple[str, ...]] = {}
        self._lower_stages: dict[tuple[int, int], tuple[str, ...]] = {}

    # -- control from other threads (signal handlers, the CLI) -----------------------------
    def drain(self) -> None:
        """Finish running attempts, claim nothing new, then return from run()."""
        self._draining.set()
        self.store.waker.notify()

    def cancel_running(self) -> None:
        """Kill running attempts now; they are recorded cancelled."""
        self._draining.set()
        self._cancel_all.set()
        self.store.waker.notify()

    @property
    def cancelled(self) -> bool:
        """cancel_running() was called: running attempts were killed, not waited for."""
        return self._cancel_all.is_set()

    @property
    def busy(self) -> int:
        with self._active_lock:
            return len(self._active)

    # -- the dispatcher ---------------------------------------------------------------------
    def register(self) -> int:
        """Register in the store (run() does it if not done yet); returns the agent id."""
        if self.agent_id is None:
            self.agent_id = self.engine.register_agent(self.name, self.host, os.getpid(),
                                                       self.slots, self.lease, self.labels)
        return self.agent_id

    def prepare(self, job: JobSpec) -> None:
        """Load the executors the job's tasks need now, before its run exists: otherwise its
        first task pays for the import inside the run (a few ms; SQLAlchemy's for SQL)."""
        for kind in sorted({t.kind for t in job.tasks} - {"job"}):
            executor_for(kind)

    def sign_off(self) -> None:
        """Record a registered agent stopped without running (its command failed first)."""
        if self.agent_id is not None:
            self.engine.agent_stopped(self.agent_id)

    def run(self, until: Callable[[Agent], bool] | None = None) -> None:
        """Dispatch until `until(self)` is true, or drained and idle, or idle too long."""
        self.register()
        try:
            self._loop(until)
        finally:
            # Leaving while attempts run: kill those the store no longer has running (a run
            # cancelled by another process just before `until` held), or we would wait them out.
            try:
                self._check_cancelled()
            except StoreUnavailableError as exc:
                # An outage, not a bug: one line, no traceback.
                log.warning("cannot check for cancelled attempts on exit: %s", exc)
            except Exception:
                log.exception("cannot check for cancelled attempts on exit")
            self._stop_slots(wait=not self._cancel_all.is_set())
            if self._cancel_all.is_set():
                # Attempts that did not stop in time (a python function cannot be killed):
                # record them cancelled now rather than leave them running for nobody.
                time.sleep(0.05)
                with self._active_lock:
                    left = [c for c, _ in self._active.values()]
                    self._active.clear()
                self._unrecorded.extend((c, Outcome(TaskState.CANCELLED,
                                                    error="cancelled: agent stopped"))
                                        for c in left)
            try:
                self._flush_done()
                patience = FLUSH_GIVE_UP if not self._cancel_all.is_set() else 5.0
                if not wait_for_late_output(patience):
                    log.error("store still unavailable: output that waited for it is lost")
                agent_id = self.register()
                retrying(lambda: self.engine.agent_stopped(agent_id), what="signing off",
                         give_up_after=patience)
            except StoreUnavailableError as exc:
                log.error("store still unavailable, leaving unrecorded outcomes to lease"
                          " expiry: %s", exc)
            finally:
                self._stopped.set()

    def _loop(self, until: Callable[[Agent], bool] | None) -> None:
        assert self.agent_id is not None
        gen = self.store.waker.generation
        beat_every = max(0.5, self.lease / 3)
        # The first beat is now: it reaps at once the agents of this machine whose process
        # died (a killed `taskplan run`), so their work is not left for a lease to expire.
        next_beat = time.monotonic()
        # Leases, though, wait for one beat of other agents (a third of the default lease, or
        # of ours if longer, and the jump allowance): a clock that jumped forward just before
        # we started makes every lease look expired, and we have no earlier reading to see
        # the jump by. Live agents renew theirs meanwhile; the dead stay expired.
        self._reap_after = next_beat + max(self.lease, CLOCK_JUMP_HOLD) / 3 + CLOCK_JUMP
        # A read: retries already due are promoted by the first turn, after its step, so a
        # run's first claim does not wait for a write transaction that is usually empty.
        next_retry = self.engine.next_retry_due()
        last_cancel_check = 0.0
        idle_since = time.monotonic()
        cancel_sent = False
        give_up_at = 0.0
        outage: Outage | None = None
        while True:
            try:
                if outage is not None:
                    self._recover(outage)
                    outage = None
                    next_beat = time.monotonic() + beat_every
                # Every wake before this point is answered by this turn's reads.
                turn_gen = gen = self.store.waker.generation
                # Outcomes stay here until a step that records them commits: an attempt that
                # ends while the store is away is recorded once it is back.
                self._unrecorded.extend(self._drain_done())
                finished = list(self._unrecorded)
                free = 0 if self._draining.is_set() else self.slots - self.busy
                result = None
                if finished or free > 0:
                    result = self.engine.step(self.agent_id, finished, free, self.root_run_id)
                    if finished and self.store.waker.generation == turn_gen + 1:
                        # The one wake since the turn began is this step's own commit, which
                        # is for other threads: do not spend a turn (a transaction) on it.
                        gen = turn_gen + 1
                    self._unrecorded.clear()
                    for claim, _ in finished:
                        self._claimed.discard(claim.task_run_id)
                    for claim in result.claims:
                        self._claimed.add(claim.task_run_id)
                        self._start(claim)
                    for run_id, state in result.finished_runs:
                        self.finished_runs[run_id] = state
                    if self.on_step is not None and (
                            finished or result.claims or result.ends):
                        self.on_step(finished, result)
                    if result.next_due is not None and (next_retry is None
                                                        or result.next_due < next_retry):
                        next_retry = result.next_due
                    if result.claims:
                        # Under the GIL a slot that the queue woke runs only once this thread
                        # lets go: now, rather than when this loop next blocks. A short task
                        # is then often done when the loop looks at the queue below.
                        time.sleep(0)
                if self._cancel_all.is_set() and not cancel_sent:
                    self._cancel_mine()
                    cancel_sent = True
                    give_up_at = time.monotonic() + CANCEL_GRACE
                now_m = time.monotonic()
                if now_m >= next_beat:
                    self._heartbeat()
                    self._watch_clock()
                    # While leases are not to be trusted, processes of this machine that
                    # are gone are still recovered: that needs no clock.
                    if self.engine.reap(by_lease=now_m >= self._reap_after):
                        gen = -1  # recovered work may be ours to claim: go round again
                        idle_since = now_m
                    # Retries other agents scheduled: a read; promoted below only when due
                    # (an idle agent's beat wrote a transaction for nothing).
                    next_retry = self.engine.next_retry_due()
                    next_beat = now_m + beat_every
                if next_retry is not None and next_retry <= self.engine.clock():
                    next_retry = self.engine.promote_retries()
                    continue
                busy = self.busy
                if busy or finished or (result is not None and result.claims):
                    # A turn that recorded or claimed work is not idle, even when its tasks
                    # already ended (the slots may finish one before this line): an agent
                    # told to exit when idle must first record and claim what follows.
                    idle_since = now_m
                if busy and ((result is not None and result.finished_runs)
                             or now_m - last_cancel_check >= CANCEL_CHECK_EVERY):
                    self._check_cancelled()
                    last_cancel_check = now_m
                if until is not None and until(self):
                    return
                if (self._draining.is_set() and busy == 0 and self._done.empty()
                        and not self._unrecorded):
                    return
                if cancel_sent and now_m >= give_up_at:
                    return  # what still runs cannot be killed: run()'s exit records it
                holding = False
                if self.exit_when_idle is not None and busy == 0 and (
                        now_m - idle_since >= self.exit_when_idle):
                    # Not idle while other agents hold work and have not heartbeated since we
                    # became idle: if they are dead, their work comes back when their lease
                    # ends, and we are there to reap and run it. Nor while a task waits for
                    # its retry: leaving then left its run running with nobody to retry it.
                    now = self.engine.clock()
                    due = self.engine.recovery_due(self.agent_id, now - (now_m - idle_since))
                    if due is None and next_retry is None:
                        return
                    holding = True
                    if due is not None:
                        # (not before leases may be reaped again: beating sooner reaps nothing)
                        reap_at = max(now_m + max(0.0, due - now), self._reap_after)
                        next_beat = min(next_beat, reap_at + 0.05)
                if (result is not None and result.claims and len(result.claims) >= free
                        and self.busy < self.slots):
                    # Every free slot got work: there may be more ready than one round took.
                    # (Fewer claims than slots means the ready work ran out; new work wakes us.)
                    continue
                if not self._done.empty():
                    continue
                timeout = next_beat - now_m
                if next_retry is not None:
                    timeout = min(timeout, next_retry - self.engine.clock())
                if busy:
                    timeout = min(timeout, CANCEL_CHECK_EVERY)
                if result is not None and result.contended:
                    timeout = min(timeout, CONTENDED_RETRY)
                if holding:
                    timeout = min(timeout, HOLD_CHECK_EVERY)
                elif self.exit_when_idle is not None and busy == 0:
                    timeout = min(timeout, self.exit_when_idle - (now_m - idle_since))
                if until is not None:
                    timeout = min(timeout, UNTIL_CHECK_EVERY)
                gen = self.store.wait(gen, max(0.0, timeout))
            except StoreConflictError as exc:
                # A deadlock or serialization failure wrote nothing and left the connection
                # usable: go round again (outcomes wait in _unrecorded), no outage to recover.
                log.info("store conflict, retrying the turn: %s", exc)
                gen = -1
                if time.monotonic() >= next_beat:
                    # Turns that keep meeting conflicts never reach the beat below the step:
                    # renew the lease here, or others declare this live agent lost.
                    # (The store gone meanwhile: the next turn's step meets it as an outage.)
                    with contextlib.suppress(StoreConflictError, StoreUnavailableError):
                        self._heartbeat()
                        next_beat = time.monotonic() + beat_every
            except StoreUnavailableError as exc:
                if outage is None:
                    outage = Outage(exc, log)
                if self._cancel_all.is_set() and outage.seconds() > GIVE_UP_WHEN_CANCELLED:
                    raise  # told to stop now: leave the rest to lease expiry
                outage.sleep()
                gen = -1

    def _heartbeat(self) -> None:
        """Renew the lease; if another agent already declared us lost, register anew."""
        assert self.agent_id is not None
        if self.engine.heartbeat(self.agent_id, self.lease,
                                 "draining" if self._draining.is_set() else None):
            return
        log.warning("agent %s (id %s) was declared lost (lease expired); its running"
                    " attempts were recovered elsewhere; registering again",
                    self.name, self.agent_id)
        self.agent_id = self.engine.register_agent(self.name, self.host, os.getpid(),
                                                   self.slots, self.lease, self.labels)

    def _watch_clock(self) -> None:
        """A wall-clock jump (NTP step, VM resume, an operator) shifts every lease at once:
        forward, every other agent's lease looks expired. Reap nobody for a while after a
        jump (one lease, at least the default 30 s, as others' leases may be longer than
        ours), so that live agents renew theirs on the new clock first."""
        # Both clocks read now: the loop's monotonic reading predates the heartbeat, which
        # can take seconds on a loaded machine and would look like a jump.
        offset = self.engine.clock() - time.monotonic()
        last, self._clock_offset = self._clock_offset, offset
        if last is not None and abs(offset - last) > CLOCK_JUMP:
            hold = max(self.lease, CLOCK_JUMP_HOLD)
            self._reap_after = time.monotonic() + hold
            log.warning("the clock jumped by %+.0fs; not reaping other agents for %.0fs",
                        offset - last, hold)

    def _recover(self, outage: Outage) -> None:
        """First turn after the store came back: lease, then claims we never learnt of."""
        # A step sent just before the cut may still be running on the server and commit
        # claims we never hear of: end that session first, then look.
        self.store.fence_orphans()
        self._heartbeat()
        assert self.agent_id is not None
        with self._active_lock:
            keep = set(self._active) | self._claimed
        released = self.engine.release_unstarted(self.agent_id, keep)
        # Others were cut off too and need a moment to renew their leases: do not reap
        # them for one lease.
        self._reap_after = time.monotonic() + self.lease
        log.warning("store back after %.1fs; %d claim(s) lost in flight given back",
                    outage.seconds(), released)

    def _drain_done(self) -> list[tuple[Claim, Outcome]]:
        out: list[tuple[Claim, Outcome]] = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    def _flush_done(self) -> None:
        self._unrecorded.extend(self._drain_done())
        finished = list(self._unrecorded)
        agent_id = self.agent_id
        if finished and agent_id is not None:
            result = retrying(lambda: self.engine.step(agent_id, finished, 0, self.root_run_id),
                              what="recording finished attempts", give_up_after=FLUSH_GIVE_UP)
            self._unrecorded.clear()
            if self.on_step is not None:
                self.on_step(finished, result)

    def _start(self, claim: Claim) -> None:
        if log.isEnabledFor(logging.INFO):
            log.info("claim: run %s task %s attempt %s/%s", claim.run_id, claim.task,
                     claim.attempt, claim.max_attempts, extra=_fields(claim, "claim"))
        try:
            # Read once here on the dispatcher's connection (cached afterwards), rather than
            # in every slot thread, each of which would first open a connection of its own.
            self.engine.run_meta(claim.run_id)
        except StoreUnavailableError:
            pass  # the slot reads it itself, riding out the outage
        cancel = Cancellation()
        with self._active_lock:
            self._active[claim.task_run_id] = (claim, cancel)
            self.max_concurrency = max(self.max_concurrency, len(self._active))
        self._jobs.put((claim, cancel))
        if len(self._slot_threads) < min(self.slots, self.busy):
            thread = threading.Thread(target=self._slot, daemon=True,
                                      name=f"taskplan-slot-{len(self._slot_threads)}")
            self._slot_threads.append(thread)
            thread.start()

    def _stop_slots(self, *, wait: bool) -> None:
        for _ in self._slot_threads:
            self._jobs.put(None)
        if wait:
            for thread in self._slot_threads:
                thread.join()

    def _check_cancelled(self) -> None:
        with self._active_lock:
            tokens = [(c.task_run_id, c.attempt) for c, _ in self._active.values()]
        if not tokens:
            return
        alive = self.engine.still_running(tokens)
        with self._active_lock:
            gone = [cancel for tr, (_, cancel) in self._active.items() if tr not in alive]
        for cancel in gone:
            cancel.cancel()

    def _cancel_mine(self) -> None:
        with self._active_lock:
            active = list(self._active.values())
        for _, cancel in active:
            cancel.cancel()

    # -- a slot ------------------------------------------------------------------------------
    def _slot(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._work(*job)

    def _work(self, claim: Claim, cancel: Cancellation) -> None:
        talk = log.isEnabledFor(logging.INFO)
        if talk:
            log.info("task start: run %s task %s attempt %s", claim.run_id, claim.task,
                     claim.attempt, extra=_fields(claim, "task_start"))
        began = time.monotonic()
        try:
            outcome = self._execute(claim, cancel)
        except templating.TemplateError as exc:  # looked up (Jinja loaded) only on an error
            # A template that renders badly (an undefined name, a bad filter argument) is the
            # job's mistake: one line in the attempt's log and its error, no traceback.
            message = f"template error: {exc.message or exc}".splitlines()[0]
            self._log_line(claim, f"taskplan: {message}\n")
            outcome = Outcome(TaskState.FAILED, error=message)
        except Exception as exc:  # a bug or a bad definition must not kill the slot
            log.error("attempt %s/%s failed inside taskplan: %s: %s", claim.task, claim.attempt,
                      type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            outcome = Outcome(TaskState.FAILED, error=f"{type(exc).__name__}: {exc}")
        if cancel.is_set() and self._cancel_all.is_set():
            outcome = Outcome(TaskState.CANCELLED, error="cancelled: agent stopped")
        if outcome.ended_at is None or outcome.error:  # (replace() costs ~10x this)
            # An error is stored masked: a Python task's exception quoting a URL with its
            # password reached `status`, the API and notifications in clear.
            outcome = Outcome(outcome.state, outcome.exit_code, outcome.result,
                              mask_url(outcome.error) if outcome.error else None,
                              outcome.retry_now, outcome.expanded,
                              outcome.ended_at or self.engine.clock())
        if talk:
            took = time.monotonic() - began
            log.info("task end: run %s task %s attempt %s %s exit %s in %.3fs%s", claim.run_id,
                     claim.task, claim.attempt, outcome.state, outcome.exit_code, took,
                     f": {outcome.error}" if outcome.error else "",
                     extra={**_fields(claim, "task_end"), "state": str(outcome.state),
                            "exit_code": outcome.exit_code, "seconds": round(took, 3),
                            "error": outcome.error})
        with self._active_lock:
            self._active.pop(claim.task_run_id, None)
        self._done.put((claim, outcome))
        self.store.waker.notify()

    def _log_line(self, claim: Claim, text: str) -> None:
        sink = AttemptLog(self.store, claim.task_run_id, claim.attempt)
        try:
            sink.write(text)
        finally:
            sink.close()

    def _execute(self, claim: Claim, cancel: Cancellation) -> Outcome:
        job, task, meta = retrying(
            lambda: (self.engine.job_spec(claim.version_id),
                     self.engine.task_spec(claim.version_id, claim.task),
                     self.engine.run_meta(claim.run_id)),
            what="reading a task's definition", stop=self._cancel_all.is_set)
        results = UpstreamResults(self.engine, claim.run_id,
                                  self._waits_for(claim.version_id, job, task))
        params = meta.params
        fire_time = datetime.fromtimestamp(meta.fire_at,
                                           ZoneInfo(job.timezone or self.engine.default_tz))
        context = AttemptContext(run_id=claim.run_id, task=claim.task, attempt=claim.attempt,
                                 params=params, item=claim.item, results=results,
                                 fire_time=fire_time.isoformat())
        values = {"params": params, "item": claim.item,
                  "run": {"id": claim.run_id, "job": job.name, "attempt": claim.attempt,
                          "fire_time": fire_time},
                  "tasks": TaskResultsView(results)}
        if claim.kind == TaskRunKind.FOREACH:
            return self._expand(claim, job, task, values, results)
        if task.kind == "job":
            return self._start_child(claim, task, values)
        command = task.command
        if task.kind == "sql":
            # The sql executor renders the text itself: `ident` quotes per target dialect.
            request = ExecRequest(
                context=context, spec=task, command=command, base_dir=job.base_dir,
                timeout=task.timeout, template_values=values,
                connection_url=self._connection(job, task.connection or ""))
        else:
            if isinstance(command, str):
                command = render(command, values) if is_template(command) else command
            else:
                command = tuple(render(a, values) if is_template(a) else a for a in command)
            request = ExecRequest(context=context, spec=_rendered_spec(task, values),
                                  command=command, base_dir=job.base_dir, timeout=task.timeout)
        sink = AttemptLog(self.store, claim.task_run_id, claim.attempt)
        try:
            res = executor_for(task.kind).execute(request, sink, cancel)
            # The attempt ends here: its last output may then wait for a store that is away
            # (up to a minute), which is no part of how long the task took.
            ended = self.engine.clock()
        finally:
            sink.close()
        if res.ok:
            return Outcome(TaskState.SUCCEEDED, exit_code=res.exit_code, result=res.result,
                           ended_at=ended)
        if res.cancelled:
            return Outcome(TaskState.CANCELLED, exit_code=res.exit_code, error=res.error,
                           ended_at=ended)
        return Outcome(TaskState.FAILED, exit_code=res.exit_code, error=res.error,
                       ended_at=ended)

    def _waits_for(self, version_id: int, job: JobSpec, task: TaskSpec) -> tuple[str, ...]:
        """Every task `task` waits for: its depends_on, its foreach source, lower stages."""
        key = (version_id, task.name)
        names = self._upstream_names.get(key)
        if names is None:
            found = set(task.depends_on)
            if task.foreach is not None and task.foreach.from_task:
                found.add(task.foreach.from_task)
            lower = () if task.stage is None else self._below(version_id, job, task.stage)
            names = tuple(sorted(found.union(lower))) if found else lower
            self._upstream_names[key] = names
        return names

    def _below(self, version_id: int, job: JobSpec, stage: int) -> tuple[str, ...]:
        """The tasks of stages lower than `stage`, sorted: the same for every task of a stage,
        so found once per stage rather than by a scan of the job for each of its tasks (a
        1,000-task staged job spent a third of its run in those scans)."""
        key = (version_id, stage)
        names = self._lower_stages.get(key)
        if names is None:
            names = self._lower_stages[key] = tuple(sorted(
                t.name for t in job.tasks if t.stage is not None and t.stage < stage))
        return names

    def _connection(self, job: JobSpec, name: str) -> str | None:
        """A connection's URL as written (references unresolved): the job's own, else
        taskplan.toml's [connections], else an applied connections file's."""
        url = job.connections.get(name) or self.engine.shared_connections.get(name)
        if url is not None or not name:
            return url
        from taskplan.store import connection_ops

        def read() -> str | None:
            with self.store.read() as tx:
                return connection_ops.url_of(tx, name)

        return retrying(read, what="reading a shared connection", stop=self._cancel_all.is_set)

    def _start_child(self, claim: Claim, task: TaskSpec, values: dict[str, Any]) -> Outcome:
        """A `job` task: start the child run; the engine ends this task when the child ends,
        so no slot waits for it (a one-slot agent can run a parent and its child)."""
        params = {k: render_value(v, values) for k, v in task.params.items()}
        sink = AttemptLog(self.store, claim.task_run_id, claim.attempt)
        try:
            # Through a store outage: a start whose commit reply was lost is found, not redone.
            child = retrying(lambda: self.engine.start_child_run(claim, str(task.command),
                                                                 params),
                             what="starting a child run", stop=self._cancel_all.is_set)
        except TaskplanError as exc:
            sink.write(f"taskplan: {exc}\n")
            sink.close()
            return Outcome(TaskState.FAILED, error=str(exc))
        if child is None:
            sink.close()
            return Outcome(TaskState.CANCELLED, error="cancelled")
        sink.write(f"taskplan: started run {child} of job {task.command}\n")
        sink.close()
        return Outcome(TaskState.SUCCEEDED, expanded=True)

    def _expand(self, claim: Claim, job: JobSpec, task: TaskSpec, values: dict[str, Any],
                 results: Mapping[str, Any]) -> Outcome:
        """A claimed foreach parent: read its items and have the engine insert them."""
        fe = task.foreach
        assert fe is not None
        sink = AttemptLog(self.store, claim.task_run_id, claim.attempt)
        spool: IO[bytes] | None = None
        try:
            chunks: Callable[[], Iterable[Sequence[Any]]]
            if fe.values is not None:
                values_ = fe.values
                chunks = lambda: _chunks(values_)  # noqa: E731
            elif fe.from_task is not None and fe.from_task not in results:
                # Its source did not succeed (skipped: `enabled: false`, a trigger rule; or
                # failed, under all_done): it made no list, so there is nothing to run.
                sink.write(f"taskplan: foreach from {fe.from_task!r}: it did not succeed, so"
                           " there are no items\n")
                chunks = lambda: iter(())  # noqa: E731
            elif fe.from_task is not None:
                items = results.get(fe.from_task)
                if not isinstance(items, list):
                    raise SqlSetupError(f"foreach from {fe.from_task!r}: its result is not a"
                                        f" list (got {type(items).__name__})")
                chunks = lambda: _chunks(items)  # noqa: E731
            else:
                # Only a foreach over a SQL query pays for SQLAlchemy's import.
                from taskplan.executors.sql import engine_for, expand_url, stream_rows

                assert fe.sql is not None
                name = fe.connection or ""
                raw = self._connection(job, name)
                if raw is None:
                    raise SqlSetupError(f"no connection {name!r}: neither the job nor the"
                                        " shared connections declare it")
                url = expand_url(raw, name)
                quote = engine_for(url).dialect.identifier_preparer.quote
                query = render(fe.sql, values, quote_ident=quote)
                # The rows are read into a temporary file before the store's transaction
                # that inserts them, which then never waits on the user's server (a slow
                # query, a hung one): it holds the store's write lock on SQLite, the run's row
                # on PostgreSQL. Memory stays flat however many rows come.
                spool = _spool(stream_rows(url, query, values["params"], FOREACH_CHUNK))
                rows = spool
                chunks = lambda: _unspool(rows)  # noqa: E731
            # Through a store outage the items are read again and inserted in a new
            # transaction; one whose commit reply was lost is found, not redone.
            n = retrying(lambda: self.engine.expand_foreach(claim, chunks()),
                         what="inserting foreach items", stop=self._cancel_all.is_set)
        except Exception as exc:
            if spool is not None:
                spool.close()
            message = mask_url(str(exc) if isinstance(exc, SqlSetupError)
                               else error_line(exc)
                               or f"{type(exc).__name__}: {exc}".splitlines()[0])
            sink.write(f"taskplan: foreach items: {message}\n")
            sink.close()
            return Outcome(TaskState.FAILED, error=f"foreach items: {message}")
        if spool is not None:
            spool.close()
        if n is None:
            sink.close()
            return Outcome(TaskState.CANCELLED, error="cancelled before its items started")
        sink.write(f"taskplan: {n} item(s)\n")
        sink.close()
        if n == 0:
            return Outcome(TaskState.SUCCEEDED, result=[])
        return Outcome(TaskState.SUCCEEDED, expanded=True)


def agent_labels(labels: Iterable[str], host: str) -> tuple[str, ...]:
    """An agent's labels: those given plus `host=<hostname>`, sorted, without duplicates."""
    return tuple(sorted({*labels, f"host={host}"}))


def _fields(claim: Claim, event: str) -> dict[str, Any]:
    """The JSON log fields of an event about one claimed task run."""
    return {"event": event, "run_id": claim.run_id, "task": claim.task,
            "task_run_id": claim.task_run_id, "attempt": claim.attempt}


def _spool(chunks: Iterable[Sequence[Any]]) -> IO[bytes]:
    """Chunks of rows, pickled one after the other into a temporary file without a name (gone
    once closed; no other process can reach it), so they cost no memory meanwhile."""
    import pickle  # (here: only a foreach over a query pays for these imports)
    import tempfile

    spool = tempfile.TemporaryFile()  # noqa: SIM115 (the caller closes it)
    try:
        for chunk in chunks:
            pickle.dump(list(chunk), spool, protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException:
        spool.close()
        raise
    return spool


def _unspool(spool: IO[bytes]) -> Iterator[list[Any]]:
    """The spooled chunks, from the first."""
    import pickle

    spool.seek(0)
    while True:
        try:
            yield pickle.load(spool)  # (our own file, written just before)
        except EOFError:
            return


def _chunks(items: Iterable[Any]) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, FOREACH_CHUNK)):
        yield chunk


def _rendered_spec(task: TaskSpec, values: Mapping[str, Any]) -> TaskSpec:
    """The task with its `env` values and `cwd` rendered (they are templates too)."""
    env = task.env
    if any(is_template(v) for v in env.values()):
        env = {k: render(v, values) for k, v in env.items()}
    cwd = task.cwd
    if cwd is not None and is_template(cwd):
        cwd = render(cwd, values)
    if env is task.env and cwd == task.cwd:
        return task
    return dataclasses.replace(task, env=env, cwd=cwd)
