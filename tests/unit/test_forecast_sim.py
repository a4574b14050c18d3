"""Properties of the forecast simulator on random graphs: it never beats the critical path,
reaches it with unlimited slots, and keeps Graham's bound for greedy list scheduling."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from taskplan import dag
from taskplan.forecast import DurationModel, History, forecast_plan
from taskplan.model import JobSpec, TaskSpec


@st.composite
def jobs(draw: st.DrawFn) -> tuple[JobSpec, dict[str, float]]:
    n = draw(st.integers(min_value=1, max_value=12))
    tasks: list[TaskSpec] = []
    seconds: dict[str, float] = {}
    top = 0  # stages never go down along the file, or stage barriers could make a cycle
    for i in range(n):
        ups = draw(st.sets(st.integers(min_value=0, max_value=i - 1), max_size=3)) if i else set()
        stage = None
        if draw(st.booleans()):
            top = stage = max(1, top + draw(st.integers(min_value=0, max_value=1)))
        name = f"t{i}"
        tasks.append(TaskSpec(name=name, kind="shell", command="true",
                              depends_on=tuple(f"t{u}" for u in sorted(ups)), stage=stage,
                              priority=draw(st.integers(min_value=-2, max_value=2))))
        seconds[name] = float(draw(st.integers(min_value=0, max_value=50)))
    return JobSpec(name="j", tasks=tuple(tasks)), seconds


def _forecast(spec: JobSpec, seconds: dict[str, float], slots: int) -> float:
    model = DurationModel(History(tasks={k: [v] for k, v in seconds.items()}, runs=1))
    got = forecast_plan(spec, model, 0.0, slots)
    assert got is not None
    return got.finish_at


@settings(max_examples=150, deadline=None)
@given(jobs(), st.integers(min_value=1, max_value=4))
def test_makespan_is_bounded_by_the_critical_path_and_graham(
        job: tuple[JobSpec, dict[str, float]], slots: int) -> None:
    spec, seconds = job
    length, _ = dag.critical_path(spec.tasks, seconds)
    finish = _forecast(spec, seconds, slots)
    assert finish >= length - 1e-9
    assert finish <= sum(seconds.values()) / slots + length + 1e-9


@settings(max_examples=150, deadline=None)
@given(jobs())
def test_unlimited_slots_reach_the_critical_path(job: tuple[JobSpec, dict[str, float]]) -> None:
    spec, seconds = job
    length, _ = dag.critical_path(spec.tasks, seconds)
    model = DurationModel(History(tasks={k: [v] for k, v in seconds.items()}, runs=1))
    got = forecast_plan(spec, model, 0.0, slots=len(spec.tasks))
    assert got is not None
    assert got.finish_at == length
    # The reported path is a chain of waits whose durations add up to the finish.
    ups = dag.upstreams(spec.tasks)
    stage = {t.name: t.stage for t in spec.tasks}
    total = sum(seconds[name] for name in got.critical_path)
    assert total == length or (not got.critical_path and length == 0)
    for a, b in zip(got.critical_path, got.critical_path[1:], strict=False):
        assert a in ups[b] or (stage[b] is not None and stage[a] is not None
                               and stage[a] < stage[b])


def test_a_running_job_task_ends_with_its_simulated_child_run() -> None:
    from taskplan.forecast import Node, SimRun, simulate

    parent = SimRun(1, [
        Node(key="sub", task="sub", kind="job", state="running", started_at=0.0,
             seconds=999.0, child_run=2),
        Node(key="after", task="after", kind="task", ups=("sub",), seconds=5.0),
    ])
    child = SimRun(2, [
        Node(key="x", task="x", kind="task", state="running", started_at=5.0, seconds=20.0),
        Node(key="y", task="y", kind="task", ups=("x",), seconds=10.0),
    ])
    got = simulate([parent, child], now=10.0, slots=1)
    assert got[2].finish_at == 35.0  # x ends at 25, y 25-35
    assert got[1].finish_at == 40.0  # sub ends with its child, then after
    assert got[1].spans["sub"] == (0.0, 35.0)
    assert got[1].critical_path == ["sub", "after"]


def test_a_stopping_run_ends_when_what_runs_has_ended() -> None:
    from taskplan.forecast import Node, SimRun, simulate

    run = SimRun(1, [
        Node(key="a", task="a", kind="task", state="running", started_at=0.0, seconds=30.0),
        Node(key="b", task="b", kind="task", state="ready", seconds=30.0),
    ], halt="stop")
    got = simulate([run], now=10.0, slots=4)
    assert got[1].finish_at == 30.0
    assert "b" not in got[1].spans


def test_fair_shares_between_runs_follow_job_priority() -> None:
    from taskplan.forecast import Node, SimRun, simulate

    low = SimRun(1, [Node(key=f"l{i}", task=f"l{i}", kind="task", state="ready", seconds=10.0)
                     for i in range(2)])
    high = SimRun(2, [Node(key=f"h{i}", task=f"h{i}", kind="task", state="ready",
                           seconds=10.0) for i in range(2)], priority=5)
    got = simulate([low, high], now=0.0, slots=1)
    assert got[2].finish_at == 20.0 and got[1].finish_at == 40.0


def test_a_disabled_task_is_skipped_in_a_planned_run() -> None:
    from taskplan.spec import load_job_text

    spec = load_job_text("""
job: demo
tasks:
  a: {shell: "true"}
  b: {shell: "true", depends_on: a, enabled: false}
  c: {shell: "true", depends_on: b}
""", "x.yaml", ".")
    model = DurationModel(History(tasks={"a": [10.0], "c": [4.0]}, runs=1))
    got = forecast_plan(spec, model, 0.0, 2)
    assert got is not None
    # b ends skipped at creation, so c is ready at once, beside a.
    assert got.tasks == {"a": (0.0, 10.0), "c": (0.0, 4.0)} and got.finish_at == 10.0
    assert model.unknown == []


def test_a_foreach_over_no_values_is_not_named_never_seen() -> None:
    from taskplan.spec import load_job_text

    spec = load_job_text("""
job: demo
tasks:
  none: {foreach: {values: []}, shell: "echo {{ item }}"}
  after: {shell: "true", depends_on: none}
""", "x.yaml", ".")
    model = DurationModel(History(tasks={"after": [4.0]}, runs=1))
    got = forecast_plan(spec, model, 0.0, 2)
    assert got is not None and got.finish_at == 4.0
    assert model.unknown == [] and "never seen" not in model.basis(2)  # it said 60s each: none
