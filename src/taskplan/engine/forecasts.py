"""Forecasts from the store: read the history and the present, hand them to the pure simulator.

`forecast_for_run` predicts a running run together with every other run that takes slots now
(they share the agents' slots by the same fair shares); `forecast_job` predicts a run not
created yet, alone on a given number of slots.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskplan.forecast import DurationModel, History, Node, RunForecast, SimRun, simulate
from taskplan.forecast.durations import SAMPLES
from taskplan.forecast.plan import barrier_node, forecast_plan, task_node, to_forecast
from taskplan.forecast.simulate import MAX_ITEMS
from taskplan.model import JobSpec, TaskRunKind, TaskSpec
from taskplan.rules import plan_upstreams
from taskplan.store import history as hist
from taskplan.store import ops
from taskplan.store.db import Store, Tx

RUNS_READ = SAMPLES  # past runs of a job read for its duration model
SpecOf = Callable[[int], JobSpec]


def read_history(tx: Tx, job_id: int | None, spec: JobSpec,
                 params: dict[str, Any] | None = None) -> History:
    """The bounded history of a job. With `params`, only past runs that had those parameter
    values, when there are any (a full load and an incremental one differ)."""
    history = History()
    if job_id is not None:
        past = hist.recent_runs(tx, job_id, RUNS_READ * 3 if params else RUNS_READ)
        if params:
            same = [r for r in past
                    if all(str(r.params.get(k)) == str(v) for k, v in params.items())]
            past = same or past
        ids = [r.run_id for r in past[:RUNS_READ]]
        history.runs = len(ids)
        history.tasks = hist.task_durations(tx, ids)
        history.items = hist.item_durations(tx, ids)
        history.item_counts = hist.item_counts(tx, ids)
    for child in sorted({str(t.command) for t in spec.tasks if t.kind == "job"}):
        history.jobs[child] = hist.run_durations(tx, child, RUNS_READ)
    return history


def spec_loader(store: Store) -> SpecOf:
    """Definitions by version id, each parsed once per loader."""
    from taskplan.spec import job_from_definition

    cache: dict[int, JobSpec] = {}

    def spec_of(version_id: int) -> JobSpec:
        if version_id not in cache:
            with store.read() as tx:
                row = ops.version_row(tx, version_id)
            if row is None:
                raise KeyError(version_id)
            cache[version_id] = job_from_definition(ops.loads(row.definition), row.source_path,
                                                    row.base_dir)
        return cache[version_id]

    return spec_of


def _run_nodes(spec: JobSpec, rows: list[hist.TaskRunState], crowded: list[hist.ReadyItems],
               model: DurationModel) -> list[Node]:
    ups = plan_upstreams(spec)
    by_name = {t.name: t for t in spec.tasks}
    nodes: list[Node] = []
    for ready in crowded:
        nodes.extend(_grouped_items(ready, by_name, model))
    for row in rows:
        common: dict[str, object] = {"state": row.state, "started_at": row.started_at,
                                     "ready_at": row.ready_at}
        task = by_name.get(row.task)
        if row.kind == TaskRunKind.BARRIER:
            nodes.append(barrier_node(row.task, ups.get(row.task, []), **common))
        elif task is None:  # not in the pinned definition: keep the graph whole anyway
            nodes.append(Node(key=row.task, task=row.task, kind=TaskRunKind.TASK,
                              state=row.state,
                              seconds=model.default, started_at=row.started_at,
                              ready_at=row.ready_at))
        elif row.parent_id is not None:
            nodes.append(Node(key=f"{row.task}[{row.item_index}]", task=row.task,
                              kind=TaskRunKind.ITEM,
                              state=row.state, parent=row.task, seconds=model.task(task).seconds,
                              started_at=row.started_at, ready_at=row.ready_at,
                              priority=row.priority, pool=row.pool, stage=row.stage))
        else:
            nodes.append(task_node(task, model, ups=tuple(ups.get(row.task, [])),
                                   child_run=row.child_run_id, priority=row.priority,
                                   **common))
    return nodes


def _grouped_items(ready: hist.ReadyItems, by_name: dict[str, TaskSpec],
                   model: DurationModel) -> list[Node]:
    """Ready items of one foreach, past MAX_ITEMS of them, as MAX_ITEMS interchangeable
    groups: the finish barely moves, the cost of simulating 100,000 items goes."""
    first = ready.first
    task = by_name.get(first.task)
    seconds = model.task(task).seconds if task is not None else model.default
    groups = MAX_ITEMS
    per = ready.count / groups
    return [Node(key=f"{first.task}[group {k}]", task=first.task, kind=TaskRunKind.ITEM,
                 state="ready",
                 parent=first.task, seconds=seconds * per, priority=first.priority,
                 pool=first.pool, stage=first.stage, ready_at=first.ready_at, shown=False)
            for k in range(groups)]


def forecast_runs(store: Store, now: float, spec_of: SpecOf | None = None,
                  only: int | None = None) -> dict[int, RunForecast]:
    """Forecasts of the runs taking slots now (or of `only`, if it is one of them), simulated
    together on the slots of the agents alive now. Empty when no agent is alive."""
    spec_of = spec_of or spec_loader(store)
    with store.read() as tx:
        runs = hist.active_runs(tx)
        slots = hist.alive_slots(tx, now)
        pools = hist.pool_sizes(tx)
    if slots <= 0 or (only is not None and only not in {r.run_id for r in runs}):
        return {}
    specs = {r.run_id: spec_of(r.version_id) for r in runs}
    models: dict[int, DurationModel] = {}
    sims: list[SimRun] = []
    with store.read() as tx:
        histories: dict[int, History] = {}
        for r in runs:
            spec = specs[r.run_id]
            if r.job_id not in histories:
                histories[r.job_id] = read_history(tx, r.job_id, spec)
            model = models[r.run_id] = DurationModel(histories[r.job_id])
            rows, crowded = hist.run_task_states(tx, r.run_id, MAX_ITEMS)
            nodes = _run_nodes(spec, rows, crowded, model)
            sims.append(SimRun(r.run_id, nodes, priority=r.priority,
                               max_parallel=r.max_parallel, on_failure=r.on_failure,
                               halt=r.halt, halt_stage=r.halt_stage))
    for spec in specs.values():
        for name, size in spec.pools.items():
            pools.setdefault(name, size)
    predictions = simulate(sims, now, slots, pools)
    out: dict[int, RunForecast] = {}
    for run_id, pred in predictions.items():
        if only is not None and run_id != only:
            continue
        forecast = to_forecast(pred, models[run_id].basis(slots))
        if forecast is not None:
            out[run_id] = forecast
    return out


def forecast_for_run(store: Store, run_id: int, now: float,
                     spec_of: SpecOf | None = None) -> RunForecast | None:
    """The forecast of a running (or stopping) run; None when it is not running or no agent
    is alive to run it."""
    return forecast_runs(store, now, spec_of, only=run_id).get(run_id)


def forecast_job(store: Store, spec: JobSpec, start: float, slots: int,
                 params: dict[str, Any] | None = None) -> RunForecast | None:
    """A run of `spec` created at `start`, alone on `slots` slots, from the job's history."""
    with store.read() as tx:
        job_id = hist.job_id(tx, spec.name)
        history = read_history(tx, job_id, spec, params)
        pools = hist.pool_sizes(tx)
    return forecast_plan(spec, DurationModel(history), start, slots, pools)


def alive_slots(store: Store, now: float) -> int:
    with store.read() as tx:
        return hist.alive_slots(tx, now)
