"""forecast_accuracy: how far the finish forecast of a running run is from its real finish.

A realistic nightly job (three stages: four extracts; a 24-item transform and three loads that
share a pool of two; an aggregate and two reports) runs on 4 slots, driven through the real
engine on a settable clock (benchmarks.replay): every attempt's duration is its task's base
times log-normal noise (sigma 0.25, and one night in ten everything is 30 % slower), and an
attempt fails now and then (3 %; retried after 30 s). After `HISTORY` nights of history, each
of `NIGHTS` further nights is forecast every 1 % of the usual makespan; the error at 10, 25,
50 and 75 % of a night is |predicted finish - real finish| / the night's real duration, taken
from the last forecast made by then. Figures: the median (and 90th percentile) over nights.

Seeded, so a rerun gives the same figures; `python -m benchmarks forecast_accuracy`.
"""

from __future__ import annotations

import random
import statistics
import textwrap
from typing import Any

from benchmarks.replay import Clock, Replay
from benchmarks.targets import Target
from taskplan.engine import Claim, Engine
from taskplan.engine.forecasts import forecast_for_run
from taskplan.spec import load_job_text
from taskplan.store.db import Store

JOB = """
job: nightly_dwh
pools: {warehouse: 2}
defaults: {retries: 2, retry_delay: 30s}
tasks:
  extract_orders: {shell: "true", stage: 1}
  extract_customers: {shell: "true", stage: 1}
  extract_products: {shell: "true", stage: 1}
  extract_events: {shell: "true", stage: 1}
  transform: {shell: "true", stage: 2, foreach: {values: ITEMS}}
  load_orders: {shell: "true", stage: 2, pool: warehouse}
  load_customers: {shell: "true", stage: 2, pool: warehouse}
  load_events: {shell: "true", stage: 2, pool: warehouse, depends_on: load_orders}
  aggregate: {shell: "true", stage: 3}
  report_sales: {shell: "true", stage: 3, depends_on: aggregate}
  report_ops: {shell: "true", stage: 3, depends_on: aggregate}
""".replace("ITEMS", str(list(range(24))))

BASE = {  # seconds
    "extract_orders": 600, "extract_customers": 240, "extract_products": 120,
    "extract_events": 900, "transform": 45, "load_orders": 420, "load_customers": 300,
    "load_events": 540, "aggregate": 780, "report_sales": 300, "report_ops": 180,
}
SLOTS = 4
HISTORY = 15
NIGHTS = 25
SIGMA = 0.25
SLOW_NIGHT = (0.1, 1.3)  # one night in ten, everything takes 30 % longer
FAIL = 0.03
FRACTIONS = (0.10, 0.25, 0.50, 0.75)
T0 = 1_800_000_000.0


def _night(rng: random.Random) -> Any:
    slow = SLOW_NIGHT[1] if rng.random() < SLOW_NIGHT[0] else 1.0

    def attempt(claim: Claim) -> tuple[float, bool]:
        seconds = BASE[claim.task] * slow * rng.lognormvariate(0.0, SIGMA)
        if rng.random() < FAIL:
            return seconds * rng.uniform(0.1, 0.9), False
        return seconds, True

    return attempt


def measure(url: str, seed: int = 7) -> dict[str, float]:
    rng = random.Random(seed)
    store = Store(url)
    try:
        clock = Clock(T0)
        engine = Engine(store, clock=clock)
        spec = load_job_text(textwrap.dedent(JOB), "nightly_dwh.yaml", ".")
        version_id, _, _ = engine.apply(spec)
        replay = Replay(engine, clock, SLOTS, _night(rng))
        makespans: list[float] = []
        for _ in range(HISTORY):
            replay.attempts = _night(rng)
            run_id = engine.create_run(version_id)
            start = clock.t
            replay.start()
            makespans.append(replay.finish(run_id) - start)
            clock.t += 3600
        step = statistics.median(makespans) / 100
        errors: dict[float, list[float]] = {f: [] for f in FRACTIONS}
        for _ in range(NIGHTS):
            replay.attempts = _night(rng)
            run_id = engine.create_run(version_id)
            start = clock.t
            replay.start()
            made: list[tuple[float, float]] = []  # (when, predicted finish)
            while engine.run_state(run_id) == "running":
                forecast = forecast_for_run(store, run_id, clock.t, engine.job_spec)
                if forecast is not None:
                    made.append((clock.t, forecast.finish_at))
                replay.advance_to(clock.t + step)
            end = replay.finish(run_id)
            took = end - start
            for f in FRACTIONS:
                seen = [p for when, p in made if when <= start + f * took]
                if seen:
                    errors[f].append(abs(seen[-1] - end) / took * 100)
            clock.t += 3600
    finally:
        store.close()
    figures: dict[str, float] = {}
    for f, values in errors.items():
        pct = round(f * 100)
        ordered = sorted(values)
        figures[f"err{pct}_median_pct"] = statistics.median(ordered)
        figures[f"err{pct}_p90_pct"] = ordered[min(len(ordered) - 1, round(0.9 * len(ordered)))]
    figures["makespan_median_s"] = statistics.median(makespans)
    return figures


def forecast_accuracy(target: Target) -> dict[str, float]:
    with target.fresh("forecast") as url:
        return measure(url)
