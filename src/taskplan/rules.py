"""Pure decisions of dispatch: trigger rules, retry delays, fair shares of slots, and
the task-run graph (with one barrier node per stage) a run is created with."""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence

from taskplan import dag
from taskplan.dataclass import dataclass
from taskplan.errors import UsageError
from taskplan.model import (
    JobSpec,
    TaskRunKind,
    TaskSpec,
    TaskState,
    TriggerRule,
)


def resolve_trigger(kind: str, rule: str, failed_up: int) -> TaskState:
    """The state a task run takes once all its upstreams have finished."""
    if kind == TaskRunKind.BARRIER:
        return TaskState.UPSTREAM_FAILED if failed_up else TaskState.SUCCEEDED
    if rule == TriggerRule.ALL_DONE:
        return TaskState.READY
    if rule == TriggerRule.ONE_FAILED:
        return TaskState.READY if failed_up else TaskState.SKIPPED
    return TaskState.UPSTREAM_FAILED if failed_up else TaskState.READY


# The longest wait before a retry, however the backoff grows: `retry_backoff: 1e200` made the
# third try's wait overflow (OverflowError in the engine) and the second's a date no `status`
# could print.
LONGEST_RETRY_WAIT = 366 * 86400.0


def retry_delay(spec: TaskSpec, failures: int) -> float:
    """Delay before the retry that follows the `failures`-th failed try (1-based) of a round
    (since the run started, or since the last `taskplan retry`): delay * backoff^(n-1), at
    most LONGEST_RETRY_WAIT."""
    if spec.retry_delay <= 0:
        return 0.0
    try:
        wait = spec.retry_delay * (spec.retry_backoff ** max(0, failures - 1))
    except OverflowError:
        return LONGEST_RETRY_WAIT
    return float(min(wait, LONGEST_RETRY_WAIT))


@dataclass(frozen=True, hot=True)
class RunShare:
    run_id: int
    priority: int
    running: int
    ready: int
    max_parallel: int | None


def fair_shares(runs: Sequence[RunShare], slots: int) -> dict[int, int]:
    """Split free slots: higher job priority first, then the run with the fewest running tasks,
    then the one with the fewest ready task runs left (then the lowest id).

    A run with 10,000 ready tasks therefore cannot starve one with 10 that started later:
    with one slot (or no more slots than busy runs), the slot each of its tasks frees would
    otherwise go back to it, both runs having none running, for every one of its tasks.
    """
    heap = [(-r.priority, r.running, r.ready, r.run_id) for r in runs if r.ready > 0]
    heapq.heapify(heap)
    by_id = {r.run_id: r for r in runs}
    given: dict[int, int] = {}
    while heap and slots > 0:
        neg_prio, load, left, run_id = heapq.heappop(heap)
        share = by_id[run_id]
        n = given.get(run_id, 0)
        if n >= share.ready:
            continue
        if share.max_parallel is not None and share.running + n >= share.max_parallel:
            continue
        given[run_id] = n + 1
        slots -= 1
        heapq.heappush(heap, (neg_prio, load + 1, left - 1, run_id))
    return given



def pool_has_room(pool: str | None, sizes: Mapping[str, int], used: Mapping[str, int]) -> bool:
    """May a task of `pool` start? Yes with no pool, with a pool nobody declared (unlimited),
    or while fewer of the pool's tasks run than its size."""
    return pool is None or pool not in sizes or used.get(pool, 0) < sizes[pool]


def plan_upstreams(spec: JobSpec) -> dict[str, list[str]]:
    """Upstream names of every task run to create, with one barrier node per stage.

    A staged task waits for the barrier of the stage below it; a barrier waits for every task
    of its own stage. This keeps stage barriers O(tasks) edges instead of O(n*m).
    """
    explicit = dag.upstreams(spec.tasks)
    stages = sorted({t.stage for t in spec.tasks if t.stage is not None})
    previous = {s: (stages[i - 1] if i else None) for i, s in enumerate(stages)}
    ups: dict[str, list[str]] = {}
    for t in spec.tasks:
        names = sorted(explicit.get(t.name, set()))
        if t.stage is not None and previous[t.stage] is not None:
            names.append(f"@stage{previous[t.stage]}")
        ups[t.name] = names
    for s in stages:
        members = [t for t in spec.tasks if t.stage == s]
        ups[f"@stage{s}"] = [t.name for t in members]
        if previous[s] is not None and not any(t.enabled for t in members):
            # Its tasks, all `enabled: false`, end skipped at creation and wait for nothing:
            # the barrier passes the one below it on instead, or the next stage would start
            # before the lower stages end.
            ups[f"@stage{s}"].append(f"@stage{previous[s]}")
    return ups


def initial_states(spec: JobSpec, ups: dict[str, list[str]]) -> dict[str, tuple[TaskState, int]]:
    """Each task run's state at creation and its count of upstreams not yet finished.

    A disabled task (`enabled: false`) ends `skipped` at creation. Its dependants see an
    upstream that already ended skipped, so one whose upstreams are all like that is resolved at
    creation by its trigger rule (ready; skipped for one_failed; a stage barrier succeeds), and
    the resolution carries on downstream.
    """
    pending = {name: len(up) for name, up in ups.items()}
    states = {name: TaskState.READY if not up else TaskState.PENDING
              for name, up in ups.items()}
    disabled = [t.name for t in spec.tasks if not t.enabled]
    if not disabled:
        return {name: (states[name], pending[name]) for name in ups}
    by_name = {t.name: t for t in spec.tasks}
    downs: dict[str, list[str]] = {}
    for name, up in ups.items():
        for u in up:
            downs.setdefault(u, []).append(name)
    ended = list(disabled)
    for name in disabled:
        states[name], pending[name] = TaskState.SKIPPED, 0
    while ended:
        for down in downs.get(ended.pop(), []):
            if states[down] != TaskState.PENDING:
                continue
            pending[down] -= 1
            if pending[down]:
                continue
            task = by_name.get(down)
            kind = TaskRunKind.BARRIER if task is None else TaskRunKind.TASK
            rule = str(task.trigger) if task is not None else str(TriggerRule.ALL_DONE)
            states[down] = resolve_trigger(kind, rule, 0)
            if states[down] != TaskState.READY:
                ended.append(down)
    return {name: (states[name], pending[name]) for name in ups}


def declared_params(spec: JobSpec, given: Mapping[str, object]) -> dict[str, object]:
    """A run's params from `given`: each must be a param the job declares (in `params:`, or a
    schedule's or trigger's), since a run's params override the job's and do not add to them
    (a misspelt `--param dya=...` would otherwise be kept and silently ignored by every
    template). A job without a `params:` key declares none and takes whatever is given.

    Text given for a param whose default is not text (`--param n=7`, `--param on=false`) is
    read as JSON, so the run sees the type its templates and functions expect."""
    names = param_names(spec)
    if names is None:
        return dict(given)
    unknown = sorted(k for k in given if k not in names)
    if unknown:
        import difflib

        guess = difflib.get_close_matches(unknown[0], sorted(names), n=1)
        hint = f"; did you mean {guess[0]!r}?" if guess else ""
        known = ", ".join(sorted(names)) or "none"
        raise UsageError(f"unknown param {unknown[0]!r} (the job declares: {known}){hint}")
    defaults = _param_defaults(spec)
    return {k: _typed(k, v, defaults.get(k)) for k, v in given.items()}


def child_param_problem(child: JobSpec, name: str, value: object, *, typed: bool = True
                        ) -> str | None:
    """Why a job task's `params: {name: value}` cannot start a run of `child` (as
    `declared_params` will refuse it when the task runs), or None. `typed=False` (a value
    holding a template, known once rendered) checks the name only."""
    names = param_names(child)
    if names is None:
        return None
    if name not in names:
        import difflib

        guess = difflib.get_close_matches(name, sorted(names), n=1)
        hint = f"; did you mean {guess[0]!r}?" if guess else ""
        known = ", ".join(sorted(names)) or "none"
        return f"job {child.name!r} declares no param {name!r}{hint} (it declares: {known})"
    if typed:
        try:
            _typed(name, value, _param_defaults(child).get(name))
        except UsageError as exc:
            return str(exc)
    return None


def param_names(spec: JobSpec) -> set[str] | None:
    """The params a run of the job may be given; None when the job has no `params:` key."""
    if "params" not in spec.definition:
        return None
    names = set(spec.params)
    for schedule in spec.schedules:
        names.update(schedule.params)
    for trigger in spec.triggers:
        names.update(trigger.params)
    return names


_JSON_TYPES = {bool: "true or false", int: "a whole number", float: "a number",
               list: "a JSON list", dict: "a JSON object"}


def _param_defaults(spec: JobSpec) -> dict[str, object]:
    """Each param's default: the job's, else the first schedule's or trigger's that sets it."""
    defaults: dict[str, object] = {}
    for source in (*(s.params for s in spec.schedules), *(t.params for t in spec.triggers)):
        defaults.update(source)
    defaults.update(spec.params)
    return defaults


def _typed(name: str, value: object, default: object) -> object:
    """`value` as the run keeps it: text read as JSON where the default is not text, and any
    value checked to be of the default's kind (so the API and the console are held to what
    `--param` is)."""
    if default is None or isinstance(default, str):
        return value
    import json

    parsed: object = value
    if isinstance(value, str):
        try:
            parsed = json.loads(value, parse_constant=_no_constant)
        except ValueError:
            parsed = _NOT_JSON
    want = type(default)
    if parsed is _NOT_JSON or not _same_kind(parsed, want):
        shown = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
        raise UsageError(f"param {name!r} takes {_JSON_TYPES.get(want, 'JSON')}, as its default"
                         f" {json.dumps(default)} is; got {shown}")
    return parsed


def kind_problem(name: str, value: object, default: object) -> str | None:
    """Why a value written in the job file (a schedule's or trigger's `params:`) cannot stand
    for a param whose default is `default`, or None. YAML has typed it already: text is not
    read as JSON here, so `n: "5"` for a default 3 is refused (write `n: 5`)."""
    if default is None or isinstance(default, str):
        return None
    want = type(default)
    if isinstance(value, str) or not _same_kind(value, want):
        import json

        shown = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
        return (f"param {name!r} takes {_JSON_TYPES.get(want, 'JSON')}, as its default"
                f" {json.dumps(default)} is; got {shown}")
    return None


def _no_constant(word: str) -> object:
    raise ValueError(f"{word} is not a number JSON can hold")


_NOT_JSON = object()


def _same_kind(value: object, want: type) -> bool:
    if want is float:  # 7 is a fine value for a param whose default is 2.5; NaN is none
        return (isinstance(value, int | float) and not isinstance(value, bool)
                and math.isfinite(value))
    if want is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, want)

