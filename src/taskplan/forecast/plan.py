"""A run not started yet, as simulator nodes: the same task-run graph `create_run` lays down
(`rules.plan_upstreams`, one barrier per stage), every task ready or pending."""

from __future__ import annotations

from taskplan.dataclass import dataclass
from taskplan.forecast.durations import DurationModel
from taskplan.forecast.simulate import Node, Prediction, SimRun, simulate
from taskplan.model import JobSpec, TaskRunKind, TaskSpec, TriggerRule
from taskplan.rules import initial_states, plan_upstreams

PLANNED_RUN = 0  # the run id the simulator knows a planned run by


@dataclass(frozen=True)
class RunForecast:
    """A run's predicted finish (epoch seconds), the chain of task names that decides it, each
    unfinished task run's predicted (start, finish) by name (foreach items as "name[i]"), and
    one line saying what it rests on."""

    finish_at: float
    critical_path: list[str]
    tasks: dict[str, tuple[float, float]]
    basis: str


def task_kind(spec: TaskSpec) -> TaskRunKind:
    if spec.foreach is not None:
        return TaskRunKind.FOREACH
    return TaskRunKind.JOB if spec.kind == "job" else TaskRunKind.TASK


def task_node(spec: TaskSpec, model: DurationModel, **state: object) -> Node:
    """A node for one task run of `spec`; `state` sets the fields the store knows."""
    node = Node(key=spec.name, task=spec.name, kind=task_kind(spec),
                seconds=model.task(spec).seconds, priority=spec.priority, pool=spec.pool,
                stage=spec.stage, trigger=str(spec.trigger))
    if spec.foreach is not None:
        node.items = model.item_count(spec)
    for name, value in state.items():
        setattr(node, name, value)
    return node


def barrier_node(name: str, ups: list[str], **state: object) -> Node:
    node = Node(key=name, task=name, kind=TaskRunKind.BARRIER, ups=tuple(ups),
                stage=int(name[len("@stage"):]), trigger=str(TriggerRule.ALL_DONE))
    for key, value in state.items():
        setattr(node, key, value)
    return node


def planned_nodes(spec: JobSpec, model: DurationModel, start: float) -> list[Node]:
    by_name = {t.name: t for t in spec.tasks}
    nodes: list[Node] = []
    plan = plan_upstreams(spec)
    for name, (initial, _) in initial_states(spec, plan).items():
        state = str(initial)
        ups = plan[name]
        task = by_name.get(name)
        if task is None:
            nodes.append(barrier_node(name, ups, state=state))
            continue
        if state not in ("ready", "pending"):  # disabled, or resolved at creation by one
            nodes.append(Node(key=name, task=name, kind=task_kind(task), state=state,
                              ups=tuple(ups)))
            continue
        nodes.append(task_node(task, model, ups=tuple(ups), state=state,
                               ready_at=start if state == "ready" else None))
    return nodes


def forecast_plan(spec: JobSpec, model: DurationModel, start: float, slots: int,
                  pools: dict[str, int] | None = None) -> RunForecast | None:
    """A run of `spec` created at `start` and alone on `slots` slots. None: no slot at all."""
    nodes = planned_nodes(spec, model, start)
    # As claims read them: the store's sizes (taskplan.toml's win over a job's), the job's
    # own for pools the store does not size yet (a file not applied).
    sizes = {**spec.pools, **(pools or {})}
    run = SimRun(PLANNED_RUN, nodes, priority=spec.priority, max_parallel=spec.max_parallel,
                 on_failure=str(spec.on_failure))
    pred = simulate([run], start, slots, sizes)[PLANNED_RUN]
    return to_forecast(pred, model.basis(slots))


def to_forecast(pred: Prediction, basis: str) -> RunForecast | None:
    if pred.finish_at is None:
        return None
    return RunForecast(pred.finish_at, pred.critical_path, pred.spans, basis)
