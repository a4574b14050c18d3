"""Drive runs through the real engine on a settable clock, with attempt durations decided in
advance: histories for forecasts, written exactly as agents would write them, in no real time.

An attempt "runs" from its claim to claim time + its duration; nothing executes. Foreach
parents expand into their literal `values`. Job tasks are not supported.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

from taskplan.engine import Claim, Engine, Outcome
from taskplan.model import TaskState

# (claim) -> (seconds the attempt takes, whether it succeeds)
Attempts = Callable[[Claim], tuple[float, bool]]


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Replay:
    def __init__(self, engine: Engine, clock: Clock, slots: int, attempts: Attempts) -> None:
        self.engine = engine
        self.clock = clock
        self.slots = slots
        self.attempts = attempts
        # A lease that never runs out on this clock: the agent counts as alive throughout.
        self.agent_id = engine.register_agent("replay", "replay", 0, slots, 1e12)
        self.running: list[tuple[float, int, Claim, bool]] = []
        self.seq = itertools.count()
        self.retry_due: float | None = None

    def _step(self, finished: list[tuple[Claim, Outcome]]) -> None:
        while True:
            free = self.slots - len(self.running)
            result = self.engine.step(self.agent_id, finished, free)
            finished = []
            if result.next_due is not None:
                self.retry_due = min(self.retry_due or result.next_due, result.next_due)
            expanded = False
            for claim in result.claims:
                if claim.kind == "foreach":
                    spec = self.engine.task_spec(claim.version_id, claim.task)
                    values = list(spec.foreach.values or []) if spec.foreach else []
                    n = self.engine.expand_foreach(claim, [values])
                    if n == 0:
                        finished.append((claim, Outcome(TaskState.SUCCEEDED)))
                    expanded = True
                    continue
                seconds, ok = self.attempts(claim)
                heapq.heappush(self.running, (self.clock.t + seconds, next(self.seq), claim, ok))
            if not expanded and not finished:
                return

    def start(self) -> None:
        """Claim what is ready now."""
        self._step([])

    def next_instant(self) -> float | None:
        ends = [self.running[0][0]] if self.running else []
        if self.retry_due is not None:
            ends.append(self.retry_due)
        return min(ends, default=None)

    def advance_to(self, t: float) -> None:
        """Play every end and retry due up to and including `t`, then set the clock to `t`."""
        while True:
            nxt = self.next_instant()
            if nxt is None or nxt > t:
                self.clock.t = max(self.clock.t, t)
                return
            self.clock.t = nxt
            if self.retry_due is not None and self.retry_due <= nxt:
                self.retry_due = self.engine.promote_retries()
            done: list[tuple[Claim, Outcome]] = []
            while self.running and self.running[0][0] <= nxt:
                end, _, claim, ok = heapq.heappop(self.running)
                state = TaskState.SUCCEEDED if ok else TaskState.FAILED
                done.append((claim, Outcome(state, exit_code=0 if ok else 1, ended_at=end)))
            self._step(done)

    def finish(self, run_id: int) -> float:
        """Play on until the run ends; returns when it did."""
        while self.engine.run_state(run_id) in ("queued", "running", "stopping"):
            nxt = self.next_instant()
            if nxt is None:
                raise AssertionError(f"run {run_id} cannot progress")
            self.advance_to(nxt)
        with self.engine.store.read() as tx:
            return float(tx.scalar("SELECT finished_at FROM runs WHERE id = :r", {"r": run_id}))
