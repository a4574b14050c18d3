"""Forecasts against what really happens: runs driven through the real engine on a settable
clock with fixed durations, so the forecast of a run must equal its real finish exactly."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.replay import Clock, Replay

from taskplan.engine import Claim, Engine
from taskplan.engine.forecasts import forecast_for_run, forecast_job
from taskplan.forecast import DEFAULT_SECONDS
from taskplan.spec import load_job_text
from taskplan.store.db import Store

T0 = 1_800_000_000.0

NIGHTLY = """
job: nightly
tasks:
  extract_orders: {shell: "true"}
  extract_users: {shell: "true"}
  load: {shell: "true", depends_on: [extract_orders, extract_users]}
  fan: {shell: "true", depends_on: load, foreach: {values: [1, 2, 3, 4, 5]}}
  report: {shell: "true", depends_on: fan}
"""
NIGHTLY_SECONDS = {"extract_orders": 30.0, "extract_users": 10.0, "load": 20.0, "fan": 7.0,
                   "report": 5.0}

# Stages, a pool, max_parallel, priorities, a trigger rule that skips, a foreach in a pool.
BUSY = """
job: busy
max_parallel: 3
pools: {db: 1}
tasks:
  a: {shell: "true", stage: 1, priority: 5}
  b: {shell: "true", stage: 1, pool: db}
  c: {shell: "true", stage: 1, pool: db}
  d: {shell: "true", stage: 1}
  e: {shell: "true", stage: 2, depends_on: [a]}
  f: {shell: "true", stage: 2, foreach: {values: [1, 2, 3, 4]}, pool: db}
  g: {shell: "true", stage: 2, trigger: one_failed, depends_on: [e]}
  h: {shell: "true", depends_on: [e, f, g], trigger: all_done}
  solo: {shell: "true", priority: -1}
"""
BUSY_SECONDS = {"a": 11.0, "b": 4.0, "c": 6.0, "d": 9.0, "e": 13.0, "f": 2.5, "g": 1.0,
                "h": 3.0, "solo": 17.0}

# Pooled tasks at the head of the claim order: their pool admits one at a time, and the
# tasks behind them take the other slot meanwhile.
POOLED_HEAD = """
job: pooled_head
pools: {p: 1}
tasks:
  a: {shell: "true", pool: p, priority: 9}
  b: {shell: "true", pool: p, priority: 8}
  c: {shell: "true", pool: p, priority: 7}
  d: {shell: "true", priority: 2}
  e: {shell: "true", priority: 1}
"""
POOLED_HEAD_SECONDS = {"a": 10.0, "b": 10.0, "c": 10.0, "d": 10.0, "e": 20.0}


def _setup(store: Store, text: str) -> tuple[Engine, Clock, int]:
    clock = Clock(T0)
    engine = Engine(store, clock=clock)
    spec = load_job_text(textwrap.dedent(text), "job.yaml", ".")
    version_id, _, _ = engine.apply(spec)
    return engine, clock, version_id


def _fixed(seconds: dict[str, float]) -> Any:
    def attempt(claim: Claim) -> tuple[float, bool]:
        return seconds[claim.task], True
    return attempt


def _history(engine: Engine, replay: Replay, version_id: int, runs: int) -> None:
    for _ in range(runs):
        run_id = engine.create_run(version_id)
        replay.start()
        replay.finish(run_id)


@pytest.mark.parametrize(("text", "seconds", "slots"), [
    (NIGHTLY, NIGHTLY_SECONDS, 2), (BUSY, BUSY_SECONDS, 4), (BUSY, BUSY_SECONDS, 2),
    (POOLED_HEAD, POOLED_HEAD_SECONDS, 2),
])
def test_forecast_of_a_running_run_equals_its_real_finish(
        store: Store, text: str, seconds: dict[str, float], slots: int) -> None:
    engine, clock, version_id = _setup(store, text)
    replay = Replay(engine, clock, slots, _fixed(seconds))
    _history(engine, replay, version_id, 2)
    run_id = engine.create_run(version_id)
    start = clock.t
    replay.start()
    predicted = []
    for offset in (0.0, 5.0, 12.5, 31.0, 44.0):
        replay.advance_to(start + offset)
        if engine.run_state(run_id) != "running":
            break
        forecast = forecast_for_run(store, run_id, clock.t)
        assert forecast is not None
        predicted.append(forecast.finish_at)
    actual = replay.finish(run_id)
    assert predicted and all(p == pytest.approx(actual, abs=1e-6) for p in predicted)
    if text is POOLED_HEAD:  # a+d, then b+e, then c beside e: no slot idles
        assert actual - start == pytest.approx(30.0)


def test_forecast_gives_the_critical_path_and_every_unfinished_span(store: Store) -> None:
    engine, clock, version_id = _setup(store, NIGHTLY)
    replay = Replay(engine, clock, 2, _fixed(NIGHTLY_SECONDS))
    _history(engine, replay, version_id, 3)
    run_id = engine.create_run(version_id)
    start = clock.t
    replay.start()
    forecast = forecast_for_run(store, run_id, clock.t)
    assert forecast is not None
    # 2 slots: orders 0-30 | users 0-10; load 30-50; 5 items of 7 s on 2 slots 50-71; report.
    assert forecast.finish_at - start == pytest.approx(76.0)
    assert forecast.critical_path == ["extract_orders", "load", "fan", "report"]
    spans = {k: (round(s - start, 6), round(e - start, 6)) for k, (s, e) in forecast.tasks.items()}
    assert spans == {"extract_orders": (0, 30), "extract_users": (0, 10), "load": (30, 50),
                     "fan": (50, 71), "report": (71, 76)}
    assert "3 run(s)" in forecast.basis or "4 run(s)" in forecast.basis

    replay.advance_to(start + 55.0)  # load done, fan expanded, two items running
    forecast = forecast_for_run(store, run_id, clock.t)
    assert forecast is not None
    assert forecast.critical_path == ["fan", "report"]
    assert {k for k in forecast.tasks} == {"fan", "fan[0]", "fan[1]", "fan[2]", "fan[3]",
                                            "fan[4]", "report"}
    assert forecast.tasks["fan[4]"][0] - start == pytest.approx(64.0)


def test_an_overdue_task_is_expected_to_end_now(store: Store) -> None:
    engine, clock, version_id = _setup(store, NIGHTLY)
    replay = Replay(engine, clock, 2, _fixed(NIGHTLY_SECONDS))
    _history(engine, replay, version_id, 1)
    slow = dict(NIGHTLY_SECONDS, extract_orders=100.0)
    replay.attempts = _fixed(slow)
    run_id = engine.create_run(version_id)
    start = clock.t
    replay.start()
    replay.advance_to(start + 40.0)
    forecast = forecast_for_run(store, run_id, clock.t)
    assert forecast is not None
    assert forecast.finish_at - start == pytest.approx(40.0 + 46.0)


def test_no_forecast_for_a_finished_run_or_without_agents(store: Store) -> None:
    engine, clock, version_id = _setup(store, NIGHTLY)
    run_id = engine.create_run(version_id)
    assert forecast_for_run(store, run_id, clock.t) is None  # no agent alive
    replay = Replay(engine, clock, 2, _fixed(NIGHTLY_SECONDS))
    replay.start()
    replay.finish(run_id)
    assert forecast_for_run(store, run_id, clock.t) is None


def test_a_job_never_run_takes_the_default_per_task(store: Store) -> None:
    spec = load_job_text(textwrap.dedent(NIGHTLY), "job.yaml", ".")
    forecast = forecast_job(store, spec, T0, slots=8)
    assert forecast is not None
    # a foreach never seen with literal values: 5 items of the default each, in parallel.
    assert forecast.finish_at - T0 == pytest.approx(4 * DEFAULT_SECONDS)
    assert "never seen" in forecast.basis


def test_a_planned_run_with_more_workers_is_shorter(store: Store) -> None:
    engine, clock, version_id = _setup(store, NIGHTLY)
    replay = Replay(engine, clock, 2, _fixed(NIGHTLY_SECONDS))
    _history(engine, replay, version_id, 2)
    spec = engine.job_spec(version_id)
    two = forecast_job(store, spec, T0, slots=2)
    many = forecast_job(store, spec, T0, slots=16)
    assert two is not None and many is not None
    assert two.finish_at - T0 == pytest.approx(76.0)
    assert many.finish_at - T0 == pytest.approx(30 + 20 + 7 + 5)
    assert many.critical_path == ["extract_orders", "load", "fan", "report"]


def test_params_prefer_the_history_of_runs_with_the_same_values(store: Store) -> None:
    engine, clock, version_id = _setup(store, """
        job: modes
        params: {mode: incremental}
        tasks:
          work: {shell: "true"}
    """)
    for mode, took in (("full", 100.0), ("incremental", 10.0), ("incremental", 10.0)):
        replay = Replay(engine, clock, 1, _fixed({"work": took}))
        run_id = engine.create_run(version_id, {"mode": mode})
        replay.start()
        replay.finish(run_id)
    spec = engine.job_spec(version_id)
    full = forecast_job(store, spec, T0, 1, {"mode": "full"})
    usual = forecast_job(store, spec, T0, 1)
    assert full is not None and usual is not None
    assert full.finish_at - T0 == pytest.approx(100.0)
    assert usual.finish_at - T0 == pytest.approx(10.0)


def test_many_ready_items_are_simulated_in_groups(store: Store,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import taskplan.engine.forecasts as forecasts

    items = ", ".join(str(i) for i in range(26))
    engine, clock, version_id = _setup(store, f"""
        job: many
        tasks:
          fan: {{shell: "true", foreach: {{values: [{items}]}}}}
          after: {{shell: "true", depends_on: fan}}
    """)
    replay = Replay(engine, clock, 2, _fixed({"fan": 1.0, "after": 3.0}))
    _history(engine, replay, version_id, 1)
    run_id = engine.create_run(version_id)
    replay.start()
    replay.advance_to(clock.t + 0.5)  # 2 items running, 24 ready
    exact = forecast_for_run(store, run_id, clock.t)
    monkeypatch.setattr(forecasts, "MAX_ITEMS", 6)  # 24 ready items > 6: 6 groups of 4
    grouped = forecast_for_run(store, run_id, clock.t)
    assert exact is not None and grouped is not None
    assert grouped.finish_at == pytest.approx(exact.finish_at)
    assert len(exact.tasks) == 2 + 26 and set(grouped.tasks) == {"fan", "fan[0]", "fan[1]",
                                                                 "after"}
    assert replay.finish(run_id) == pytest.approx(exact.finish_at)
