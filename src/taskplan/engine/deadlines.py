"""The deadline checker: once per run, `deadline_at_risk` when the forecast first says the run
will finish after its deadline; `deadline_missed` when the deadline passes with the run
unfinished. It runs in the scheduler's leader loop (so also in `serve`) and in the process of
a foreground `taskplan run`; a run's state moves under a guarded UPDATE, so two checkers
never record one event twice."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from taskplan.engine.forecasts import forecast_runs
from taskplan.forecast import RunForecast
from taskplan.forecast.deadlines import AT_RISK, MISSED, deadline_at
from taskplan.shapes import iso
from taskplan.store import deadlines as ops

if TYPE_CHECKING:
    from taskplan.engine.facade import Engine

log = logging.getLogger(__name__)

CHECK_EVERY = 15.0  # seconds between two looks at the forecasts of runs with deadlines


def detail(deadline: float, forecast: RunForecast | None) -> str:
    """The JSON an event carries: the deadline, the predicted finish, the critical path."""
    return json.dumps({
        "deadline_at": iso(deadline),
        "predicted_finish_at": iso(forecast.finish_at) if forecast else None,
        "critical_path": list(forecast.critical_path) if forecast else [],
    })


class DeadlineWatch:
    def __init__(self, engine: Engine, *, default_tz: str = "UTC",
                 every: float = CHECK_EVERY, clock: Callable[[], float] | None = None,
                 only: int | None = None) -> None:
        self.engine = engine
        self.store = engine.store
        self.default_tz = default_tz
        self.every = every
        self.clock = clock or engine.clock
        self.only = only  # a foreground `taskplan run` watches its own run
        self.next_at = 0.0
        self.newest = -1  # the highest run id the last look saw

    def poll(self) -> list[tuple[int, str]]:
        """Look if it is time (every `every` seconds, at each deadline), or if a run was
        created since the last look (a new run is judged at once, not up to `every` later)."""
        if self.clock() < self.next_at:
            with self.store.read() as tx:
                if ops.newest_run(tx) <= self.newest:
                    return []
        return self.check()

    def check(self) -> list[tuple[int, str]]:
        """One look: returns the (run id, at_risk | missed) recorded now."""
        now = self.clock()
        with self.store.read() as tx:
            self.newest = ops.newest_run(tx)
            watched = [w for w in ops.watched(tx) if self.only in (None, w.run_id)]
        recorded: list[tuple[int, str]] = []
        forecasts: dict[int, RunForecast] | None = None
        upcoming: list[float] = []
        for w in watched:
            at = w.deadline_at
            if at is None:  # counted from the start: fixed once the run has started
                spec = self.engine.job_spec(w.version_id)
                if spec.deadline is None or w.started_at is None:
                    continue
                at = deadline_at(spec.deadline, spec.timezone or self.default_tz,
                                 w.fired_at, w.started_at)
                if at is None:
                    continue
                with self.store.tx() as tx:
                    ops.set_deadline(tx, w.run_id, at, None)
            if now < at and w.deadline_state is not None:
                upcoming.append(at)
                continue
            if forecasts is None:
                forecasts = forecast_runs(self.store, now, self.engine.job_spec)
            forecast = forecasts.get(w.run_id)
            if now >= at:
                state = MISSED
            elif forecast is not None and forecast.finish_at > at:
                state = AT_RISK
                upcoming.append(at)
            else:
                upcoming.append(at)
                continue
            with self.store.tx() as tx:
                if ops.mark(tx, w.run_id, state, now, detail(at, forecast)):
                    recorded.append((w.run_id, state))
                    if state == MISSED:
                        log.warning("run %s: deadline %s missed", w.run_id, iso(at))
                    else:
                        assert forecast is not None
                        log.warning("run %s: deadline %s at risk: predicted to finish at %s"
                                    " (critical path: %s)", w.run_id, iso(at),
                                    iso(forecast.finish_at), " -> ".join(forecast.critical_path))
        self.next_at = min([now + self.every, *upcoming])
        return recorded
