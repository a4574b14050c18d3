"""The duration model: medians of recent history, foreach items scaled by their count, a job
task from its child job's runs, and a documented default for what was never seen."""

from __future__ import annotations

from taskplan.forecast import DEFAULT_SECONDS, DurationModel, History, forecast_plan
from taskplan.forecast.durations import SAMPLES, estimate
from taskplan.spec import load_job_text

JOB = """
job: parent
tasks:
  plain: {shell: "true"}
  listed: {shell: "true", foreach: {values: [a, b, c, d]}, depends_on: plain}
  queried: {shell: "true", foreach: {from: plain}}
  child: {job: other, depends_on: [listed, queried]}
"""


def test_estimate_is_the_median_of_the_newest_samples() -> None:
    got = estimate([10.0, 12.0, 11.0, 500.0, 9.0])
    assert got.seconds == 11.0 and got.samples == 5
    old_slow = [1.0] * SAMPLES + [1000.0] * 50  # newest first: only the newest SAMPLES count
    assert estimate(old_slow).seconds == 1.0
    assert estimate([]).seconds == DEFAULT_SECONDS and estimate([]).samples == 0


def test_each_kind_of_task_takes_its_own_history() -> None:
    spec = load_job_text(JOB, "job.yaml", ".")
    history = History(tasks={"plain": [5.0, 7.0, 6.0], "child": [999.0]},
                      items={"listed": [2.0], "queried": [3.0, 3.0]},
                      item_counts={"queried": [10, 12, 11]}, jobs={"other": [40.0, 50.0]},
                      runs=3)
    model = DurationModel(history)
    tasks = {t.name: t for t in spec.tasks}
    assert model.task(tasks["plain"]).seconds == 6.0
    assert model.task(tasks["listed"]).seconds == 2.0  # per item
    assert model.item_count(tasks["listed"]) == 4  # the literal list
    assert model.item_count(tasks["queried"]) == 11  # the median of past runs
    assert model.task(tasks["child"]).seconds == 45.0  # the child job's runs come first
    assert model.unknown == []
    # On 100 slots: plain 6; listed 4 items of 2 s and queried 11 of 3 s in parallel; child 45.
    forecast = forecast_plan(spec, model, 0.0, slots=100)
    assert forecast is not None
    assert forecast.finish_at == 6 + 3 + 45
    assert forecast.critical_path == ["plain", "queried", "child"]
    assert forecast.tasks["queried"] == (6.0, 9.0)


def test_never_seen_tasks_take_the_default_and_say_so() -> None:
    spec = load_job_text(JOB, "job.yaml", ".")
    model = DurationModel(History())
    forecast = forecast_plan(spec, model, 0.0, slots=1)
    assert forecast is not None
    # plain, then 4 listed items and 1 queried item (no history: one item), then child: 7 x 60.
    assert forecast.finish_at == 7 * DEFAULT_SECONDS
    assert model.unknown == ["plain", "listed", "queried", "child"]
    assert "never seen, 60s each: plain, listed, queried, child" in forecast.basis


def test_a_child_job_never_run_falls_back_to_the_task_own_attempts() -> None:
    spec = load_job_text(JOB, "job.yaml", ".")
    model = DurationModel(History(tasks={"child": [30.0]}, jobs={"other": []}))
    child = next(t for t in spec.tasks if t.name == "child")
    assert model.task(child).seconds == 30.0
