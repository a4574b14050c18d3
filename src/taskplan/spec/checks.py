"""Rules that span keys or tasks, each reported with the position of what is wrong.

Shape rules ("exactly one of ...") read the raw mappings so they run even when pydantic
rejected another field of the same piece. Semantic rules read the pieces that did validate.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from taskplan import dag
from taskplan.model import Foreach, TaskSpec
from taskplan.rules import kind_problem
from taskplan.spec import templating
from taskplan.spec.report import Reporter
from taskplan.spec.schema import (
    CALENDAR_KEYS,
    TASK_KINDS,
    Header,
    ScheduleModel,
    Settings,
    TaskModel,
)
from taskplan.spec.shared import SHARED
from taskplan.spec.source import Path

# What exec accepts as a name: anything but '=' and NUL, and not empty (it refused the others
# only when the attempt started). Programs read names a shell cannot expand (`a.b`, `A-B`),
# so those stay allowed. Checked when a file is validated, not when a stored definition is
# loaded, so versions applied before keep loading.
ENV_NAME_RE = re.compile(r"[^=\0]+")
SCHEDULE_KINDS = ("cron", "every", "once")


# What each kind of task, and each source of a foreach, holds: said when one is left empty.
TASK_KIND_VALUES = {
    "sql": "a SQL statement or script",
    "shell": "a command (a string, or a list of arguments)",
    "python": "a callable as module.path:function",
    "job": "the name of a job to run",
}
FOREACH_SOURCE_VALUES = {
    "sql": "a SQL query",
    "values": "a list of values",
    "from": "the name of an upstream task",
}


def _one_of(r: Reporter, path: Path, raw: dict[str, Any], keys: Mapping[str, str],
            what: str) -> None:
    """Report unless exactly one of `keys` is present in `raw`, with a value: `shell:` with
    nothing after it names the kind but holds none (keys maps each to what it holds)."""
    present = [k for k in raw if k in keys]
    if not present:
        r.at_container(path, f"expected exactly one of {what}, found none")
    elif len(present) > 1:
        r.at_key((*path, present[1]),
                 f"expected exactly one of {what}, found both {present[0]} and {present[1]}")
    elif raw[present[0]] is None:
        r.at_value((*path, present[0]), f"expected {keys[present[0]]}, got nothing")


def task_shape(r: Reporter, name: str, raw: dict[str, Any]) -> None:
    path: Path = ("tasks", name)
    _one_of(r, path, raw, TASK_KIND_VALUES, "sql, shell, python, job")
    kinds = [k for k in TASK_KINDS if k in raw]
    kind = kinds[0] if len(kinds) == 1 else None
    if "params" in raw and kind is not None and kind != "job":
        r.at_key((*path, "params"), f"only job tasks take params (this is a {kind} task)")
    if "connection" in raw and kind is not None and kind != "sql":
        r.at_key((*path, "connection"),
                 f"only sql tasks use a connection (this is a {kind} task)")
    foreach = raw.get("foreach")
    if isinstance(foreach, dict):
        fpath = (*path, "foreach")
        _one_of(r, fpath, foreach, FOREACH_SOURCE_VALUES, "sql, values, from")
        if "connection" in foreach and "sql" not in foreach:
            r.at_key((*fpath, "connection"), "a connection only applies to a foreach sql")


def schedule_shape(r: Reporter, index: int, raw: dict[str, Any]) -> None:
    path: Path = ("schedules", index)
    present = [k for k in SCHEDULE_KINDS if k in raw]
    calendar = [k for k in (*CALENDAR_KEYS, "business_day") if k in raw]
    if calendar:
        present.append(calendar[0])
    what = "cron, every, once or calendar keys (" + ", ".join(CALENDAR_KEYS) + ")"
    if not present:
        r.at_container(path, f"expected exactly one of {what}, found none")
    elif len(present) > 1:
        second = sorted(present, key=lambda k: list(raw).index(k))[1]
        r.at_key((*path, second), f"expected exactly one of {what}, "
                 f"found {' and '.join(sorted(present, key=list(raw).index))}")
    for key in ("shift", "business_day"):
        if key in raw and "calendar" not in raw:
            r.at_key((*path, key), f"{key} needs calendar: naming a business calendar")


def deadline_shape(r: Reporter, raw: dict[str, Any]) -> None:
    path: Path = ("deadline",)
    _one_of(r, path, raw, {"finish_by": "a time of day as HH:MM", "within": "a duration"},
            "finish_by, within")
    if "timezone" in raw and "finish_by" not in raw:
        r.at_key((*path, "timezone"), "a timezone only applies to finish_by")
    if "of" in raw and "within" not in raw:
        r.at_key((*path, "of"), "of: (firing or start) only applies to within")


_TIME_KEYS = ("at", "hours", "minutes")


def exception_shape(r: Reporter, path: Path, raw: dict[str, Any]) -> None:
    calendar = [k for k in CALENDAR_KEYS if k in raw]
    if "calendar" in raw:
        others = [k for k in raw if k != "calendar"]
        if others:
            r.at_key((*path, others[0]), "a calendar: exception takes no other keys "
                     "(it skips every closed day of that calendar)")
        return
    if "dates" not in raw and not calendar:
        r.at_container(path, "expected dates: or calendar keys ("
                       + ", ".join(CALENDAR_KEYS) + ") or calendar: NAME, found none")
    elif "dates" in raw and (days := [k for k in calendar if k not in _TIME_KEYS]):
        # dates may take times (only those firings of those days); day filters would be moot.
        r.at_key((*path, days[0]), "expected either dates: or the day keys weekdays, "
                 "monthdays, months, not both (dates may take at, hours, minutes)")


def _loose_spec(name: str, t: TaskModel, known: set[str]) -> TaskSpec:
    """A TaskSpec good enough for graph checks, keeping only edges to known tasks."""
    deps = tuple(d for d in t.depends_on if d in known and d != name)
    source = t.foreach.from_ if t.foreach else None
    foreach = Foreach(from_task=source) if source in known and source != name else None
    return TaskSpec(name=name, kind="shell", command="", depends_on=deps, stage=t.stage,
                    foreach=foreach)


def semantics(r: Reporter, header: Header | None, defaults: Settings | None,
              tasks: Mapping[str, TaskModel], all_names: list[str]) -> None:
    _hints_left.set(_HINT_BUDGET)
    known = set(all_names)
    for name, t in tasks.items():
        path: Path = ("tasks", name)
        for i, dep in enumerate(t.depends_on):
            if dep == name:
                r.at_value((*path, "depends_on", i), f"task {name!r} cannot depend on itself")
            elif dep not in known:
                r.at_value((*path, "depends_on", i), f"unknown task {dep!r}{_hint(dep, known)}")
        source = t.foreach.from_ if t.foreach else None
        if source == name:
            r.at_value((*path, "foreach", "from"), "a task cannot take its items from itself")
        elif source is not None and source not in known:
            r.at_value((*path, "foreach", "from"), f"unknown task {source!r}{_hint(source, known)}")
        if header is not None and t.job == header.job:
            r.at_value((*path, "job"), f"job {t.job!r} cannot start itself")
    _connections(r, defaults, tasks)
    _kind_keys(r, tasks)
    _task_durations(r, defaults, tasks)
    _param_names(r)
    _param_kinds(r)
    _env_names(r, defaults, tasks)
    _name_lengths(r, header, defaults, tasks)
    specs = [_loose_spec(n, tasks[n], known) for n in all_names if n in tasks]
    cycle = dag.find_cycle(specs)
    if cycle is not None:
        r.at_key(("tasks", cycle[0]), "dependency cycle: " + dag.describe_cycle(specs, cycle))
    _templates(r, defaults, tasks, specs, _declared_params(r.data))
    if header is not None:
        _header_rules(r, header)


# The store keeps names in columns of this many characters: a longer one passed here and was
# refused by PostgreSQL in the middle of an apply. Checked on files only (like env names), so
# a version kept by a SQLite store before still loads.
MAX_NAME = 200


def _name_lengths(r: Reporter, header: Header | None, defaults: Settings | None,
                  tasks: Mapping[str, TaskModel]) -> None:
    def check(path: Path, name: str | None, what: str, at_key: bool = False) -> None:
        if name is None or len(name) <= MAX_NAME:
            return
        message = (f"expected {what} of at most {MAX_NAME} characters (the store keeps no"
                   f" more), got one of {len(name)}")
        if at_key:
            r.at_key(path, message)
        else:
            r.at_value(path, message)

    if header is not None:
        check(("job",), header.job, "a job name")
        for pool in header.pools:
            check(("pools", pool), pool, "a pool name", at_key=True)
    if defaults is not None:
        check(("defaults", "pool"), defaults.pool, "a pool name")
    for name, t in tasks.items():
        check(("tasks", name), name, "a task name", at_key=True)
        check(("tasks", name, "pool"), t.pool, "a pool name")
    _label_sets(r, header, tasks)


# A task's labels, its job's included, are kept sorted and comma-joined in a column of this
# many characters (label_sets.labels): a longer set failed every run on PostgreSQL.
MAX_LABEL_SET = 2000


def _label_sets(r: Reporter, header: Header | None, tasks: Mapping[str, TaskModel]) -> None:
    job_labels = set(header.agent_labels) if header is not None else set()
    sets: list[tuple[Path, set[str]]] = [(("agent_labels",), job_labels)]
    sets += [(("tasks", name, "agent_labels"), job_labels | set(t.agent_labels))
             for name, t in tasks.items() if t.agent_labels]
    for path, labels in sets:
        size = len(",".join(labels))
        if size > MAX_LABEL_SET:
            r.at_key(path, f"expected agent labels of at most {MAX_LABEL_SET} characters in all"
                           f" (the job's and the task's, comma-joined: the store keeps no more),"
                           f" got {size}")


def calendar_name_length(r: Reporter, name: str) -> None:
    """As _name_lengths, for a calendar file's name (files only)."""
    if len(name) > MAX_NAME:
        r.at_value(("calendar",), f"expected a calendar name of at most {MAX_NAME} characters"
                   f" (the store keeps no more), got one of {len(name)}")


def schedule_name_lengths(r: Reporter, schedules: Sequence[ScheduleModel | None]) -> None:
    """As _name_lengths, for schedule names (files only)."""
    for i, s in enumerate(schedules):
        if s is not None and s.name is not None and len(s.name) > MAX_NAME:
            r.at_value(("schedules", i, "name"), f"expected a schedule name of at most"
                       f" {MAX_NAME} characters (the store keeps no more), got one of"
                       f" {len(s.name)}")


# Task keys that only some kinds use: the others ignored them without a word (a python
# task's env never reached os.environ, a job task's timeout never stopped its child run).
# Refused where a task sets them; a default (`defaults:`) applies to the tasks that use it.
# Checked on files only, so versions applied before keep loading.
_KINDS_USING = {"env": ("shell",), "cwd": ("shell",), "in_process": ("python",),
                "timeout": ("shell", "python", "sql")}
_WHY_NOT = {
    ("python", "env"): "its function runs in a worker with the agent's environment",
    ("python", "cwd"): "its function runs in the agent's folder and is imported from the job"
                       " file's",
    ("job", "timeout"): "its child run's tasks take their own timeouts",
}


# A task's timeout and its wait before a retry: past a year they are no plan but a typo, and
# past about 290 years (1e308s...) the attempt failed "inside taskplan" with an OverflowError
# and `status` of the run died on the retry's date. Files only, like the other such rules.
MAX_TASK_DURATION = 366 * 86400.0
# `every:` may be long (firings past year 9999 are simply none), but not past the sums of the
# timing checks: 1e308s overflowed them.
MAX_EVERY = 36500 * 86400.0
MIN_EVERY = 1.0  # the scheduler's misfire grace: closer firings would all be "late"


def _task_durations(r: Reporter, defaults: Settings | None,
                    tasks: Mapping[str, TaskModel]) -> None:
    scopes: list[tuple[Path, Settings | None]] = [(("defaults",), defaults)]
    scopes += [(("tasks", name), t) for name, t in tasks.items()]
    for path, settings in scopes:
        for key in ("timeout", "retry_delay"):
            seconds = getattr(settings, key, None)
            if (settings is not None and key in settings.model_fields_set
                    and seconds is not None and seconds > MAX_TASK_DURATION):
                r.at_value((*path, key), f"expected a duration of at most 366d, got"
                           f" {_raw(r.data, (*path, key))!r}")


def _raw(data: Any, path: Path) -> Any:
    for key in path:
        data = data[key]
    return data


def _kind_keys(r: Reporter, tasks: Mapping[str, TaskModel]) -> None:
    for name, t in tasks.items():
        kind = next((k for k in TASK_KINDS if getattr(t, k) is not None), None)
        if kind is None:
            continue
        for key in sorted(t.model_fields_set & _KINDS_USING.keys()):
            kinds = _KINDS_USING[key]
            if kind in kinds:
                continue
            why = _WHY_NOT.get((kind, key))
            who = ", ".join(kinds[:-1]) + " and " + kinds[-1] if len(kinds) > 1 else kinds[0]
            r.at_key(("tasks", name, key), f"only {who} tasks take {key} (this is a {kind}"
                     f" task{': ' + why if why else ''})")


def _env_names(r: Reporter, defaults: Settings | None,
               tasks: Mapping[str, TaskModel]) -> None:
    scopes: list[tuple[Path, Settings | None]] = [(("defaults",), defaults)]
    scopes += [(("tasks", name), t) for name, t in tasks.items()]
    for path, settings in scopes:
        for key in settings.env if settings is not None else ():
            if not ENV_NAME_RE.fullmatch(key):
                r.at_key((*path, "env", key), f"{key!r} is not an environment variable name:"
                         " expected a non-empty name without '=' or NUL (e.g. DB_HOST)",
                         named=(*path, "env"))


# Names compared for "did you mean" per file (a comparison costs ~7 us): a file with many
# unknown names among thousands of tasks gets its first hints, not minutes of comparing.
_HINT_BUDGET = 50_000
_hints_left: ContextVar[int] = ContextVar("hints_left", default=_HINT_BUDGET)


def _hint(name: str, known: set[str]) -> str:
    left = _hints_left.get()
    if len(known) > left:
        return ""
    _hints_left.set(left - len(known))
    # (Ties between equally close names go to the same one whatever the set's order.)
    guess = difflib.get_close_matches(name, known, n=1)
    if not guess:  # `depends_on: [Load]` for load: difflib weighs case as any other letter
        folded = {k.casefold(): k for k in sorted(known, reverse=True)}
        guess = [folded[name.casefold()]] if name.casefold() in folded else []
    return f"; did you mean {guess[0]!r}?" if guess else ""


def _connections(r: Reporter, defaults: Settings | None,
                 tasks: Mapping[str, TaskModel]) -> None:
    raw = r.data.get("connections") if isinstance(r.data, dict) else None
    if raw is not None and not isinstance(raw, dict):
        return
    for name, url in (raw or {}).items():
        # A typo here failed every run at its first sql task: refused now, unless a ${VAR}
        # may hold the URL (read when the task runs).
        if isinstance(url, str) and url and "://" not in url and "${" not in url:
            r.at_value(("connections", name), "expected a URL such as postgresql://user@host/db"
                       f" or ${{VAR}} holding one, got {url!r}")
    declared = set(raw or ()) | SHARED.get()
    words = ("declared connections: " + ", ".join(sorted(declared))) if declared \
        else "the job declares no connections:"
    fallback = defaults.connection if defaults is not None else None
    if fallback is not None and fallback not in declared:
        r.at_value(("defaults", "connection"), f"unknown connection {fallback!r} ({words})")
    for name, t in tasks.items():
        path: Path = ("tasks", name)
        if t.connection is not None and t.connection not in declared:
            r.at_value((*path, "connection"), f"unknown connection {t.connection!r} ({words})")
        if t.sql is not None and t.connection is None and fallback is None:
            r.at_key(path, "a sql task needs a connection: set connection: on the task or "
                     "in defaults:")
        fe = t.foreach
        if fe is not None and fe.connection is not None and fe.connection not in declared:
            r.at_value((*path, "foreach", "connection"),
                       f"unknown connection {fe.connection!r} ({words})")
        if (fe is not None and fe.sql is not None and fe.connection is None
                and t.connection is None and fallback is None):
            r.at_key((*path, "foreach"), "a foreach sql needs a connection: set connection: "
                     "on the foreach, the task or in defaults:")


def template_fields(t: TaskModel) -> Iterator[tuple[Path, str, bool]]:
    """(path below the task, text, may use item) for every templated text of a task."""
    if t.sql is not None:
        yield ("sql",), t.sql, True
    if isinstance(t.shell, str):
        yield ("shell",), t.shell, True
    elif t.shell is not None:
        for i, arg in enumerate(t.shell):
            yield ("shell", i), arg, True
    if t.foreach is not None and t.foreach.sql is not None:
        yield ("foreach", "sql"), t.foreach.sql, False
    for key, value in t.env.items():
        yield ("env", key), value, True
    if t.cwd is not None:
        yield ("cwd",), t.cwd, True
    for key, value in t.params.items():
        yield from _texts_in(("params", key), value)


def _texts_in(path: Path, value: Any) -> Iterator[tuple[Path, str, bool]]:
    """A job task's param: each text it is or holds (in lists and mappings, as rendered)."""
    if isinstance(value, str):
        yield path, value, True
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _texts_in((*path, i), v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _texts_in((*path, k), v)


def _param_names(r: Reporter) -> None:
    """A param `--param NAME=VALUE` can give: not empty, no '=' and no surrounding spaces
    (`--param` strips them); `params: {"a=b": 1}` was kept, and no run could ever set it."""
    data = r.data
    if not isinstance(data, dict):
        return
    places: list[tuple[Path, Any]] = [(("params",), data.get("params"))]
    for key in ("schedules", "triggers"):
        entries = data.get(key)
        for i, entry in enumerate(entries if isinstance(entries, list) else ()):
            if isinstance(entry, dict):
                places.append(((key, i, "params"), entry.get("params")))
    for path, params in places:
        for name in params if isinstance(params, dict) else ():
            text = str(name)
            if not text.strip() or "=" in text or text != text.strip():
                r.at_key((*path, name), f"{text!r} is not a param name --param can give:"
                         " expected a name without '=' or surrounding spaces (e.g. day)",
                         named=path)


def _param_kinds(r: Reporter) -> None:
    """A schedule's or trigger's param must be of its default's kind, as `--param` is held
    to: `n: abc` for a default 3 was stored, and every run it made failed in its templates."""
    data = r.data
    defaults = data.get("params") if isinstance(data, dict) else None
    if not isinstance(defaults, dict):
        return
    for key in ("schedules", "triggers"):
        entries = data.get(key)
        for i, entry in enumerate(entries if isinstance(entries, list) else ()):
            params = entry.get("params") if isinstance(entry, dict) else None
            for name, value in params.items() if isinstance(params, dict) else ():
                if isinstance(value, str) and templating.is_template(value):
                    # Kept as this text by every run: `{{ run.fire_time }}` here is no date.
                    what = "schedule" if key == "schedules" else "trigger"
                    r.at_value((key, i, "params", name), f"a {what}'s params are values:"
                               f" nothing renders {value!r} (read run.fire_time, params or"
                               " tasks in the task's own text)")
                elif name in defaults:
                    problem = kind_problem(str(name), value, defaults[name])
                    if problem is not None:
                        r.at_value((key, i, "params", name), problem)


def _declared_params(data: Any) -> set[str] | None:
    """Parameter names a run of the job can have: the job's `params:` and those schedules and
    triggers add. None (nothing checked) for a job without `params:`, which takes whatever
    `--param` gives, or when `params:` is not a mapping (reported elsewhere)."""
    if not isinstance(data, dict) or "params" not in data:
        return None
    params = data.get("params")
    if not isinstance(params, dict):
        return None
    names = {str(k) for k in params}
    for key in ("schedules", "triggers"):
        entries = data.get(key)
        for entry in entries if isinstance(entries, list) else ():
            extra = entry.get("params") if isinstance(entry, dict) else None
            if isinstance(extra, dict):
                names.update(str(k) for k in extra)
    return names


def _check_names(r: Reporter, path: Path, text: str, declared: set[str] | None) -> None:
    """params.X against the declared params, run.X and tasks.T.X against what they offer."""
    for root, name, sub in templating.attribute_uses(text):
        if root == "params" and declared is not None and name not in declared:
            have = ", ".join(sorted(declared)) if declared else "none"
            r.at_value(path, f"template reads params.{name}, which the job does not declare"
                       f"{_hint(name, declared)} (declared params: {have})")
        elif root == "run" and name not in templating.RUN_KEYS:
            r.at_value(path, f"template reads run.{name}; run has "
                       f"{', '.join(sorted(templating.RUN_KEYS))}"
                       f"{_hint(name, set(templating.RUN_KEYS))}")
        elif root == "tasks" and sub is not None and sub not in templating.TASK_KEYS:
            r.at_value(path, f"template reads tasks.{name}.{sub}; a task offers only "
                       f"tasks.{name}.result{_hint(sub, set(templating.TASK_KEYS))}")


def _templates(r: Reporter, defaults: Settings | None, tasks: Mapping[str, TaskModel],
               specs: list[TaskSpec], declared: set[str] | None) -> None:
    graph = dag.waits_for(specs)
    for name, t in tasks.items():
        ancestors: set[str] | None = None
        for sub, text, item_ok in template_fields(t):
            path = ("tasks", name, *sub)
            used = _check_template(r, path, text)
            if used is None:
                continue
            _check_names(r, path, text, declared)
            if "item" in used and (t.foreach is None or not item_ok):
                why = "a foreach source" if t.foreach is not None else "a task without foreach"
                r.at_value(path, f"{{{{ item }}}} is not available in {why}")
            if "tasks" in used:
                if ancestors is None:
                    ancestors = _ancestors(graph, name)
                for other in sorted(templating.referenced_task_results(text)):
                    if other not in ancestors:
                        r.at_value(path, f"tasks.{other} is not an upstream of task {name!r}; "
                                   "a template can only read results of tasks it waits for"
                                   f"{_hint(other, ancestors)}")
    if defaults is not None:
        fields: list[tuple[Path, str]] = [(("defaults", "env", key), value)
                                          for key, value in defaults.env.items()]
        if defaults.cwd is not None:
            fields.append((("defaults", "cwd"), defaults.cwd))
        for path, text in fields:
            if _check_template(r, path, text) is not None:
                _check_names(r, path, text, declared)


def _check_template(r: Reporter, path: Path, text: str) -> set[str] | None:
    if not templating.is_template(text):
        return None
    from jinja2 import TemplateSyntaxError  # only text that is a template loads Jinja

    try:
        used = templating.referenced_roots(text)
    except TemplateSyntaxError as exc:
        r.at_value(path, f"template syntax error: {exc.message} (template line {exc.lineno})")
        return None
    for root in sorted(used - templating.ALLOWED_ROOTS):
        r.at_value(path, f"template uses unknown name {root!r}; templates can use "
                   + ", ".join(sorted(templating.ALLOWED_ROOTS)))
    return used


def _ancestors(graph: dict[dag.Node, list[dag.Node]], name: str) -> set[str]:
    seen: set[dag.Node] = set()
    todo: list[dag.Node] = list(graph.get(name, []))
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, []))
    return {n for n in seen if isinstance(n, str)}


# A deadline past year 9999 passed validate, then broke `runs`, `status` and `forecast` of the
# job's runs; past a year it is no plan but a typo. Files only, like the other such rules.
MAX_DEADLINE_WITHIN = 366 * 86400.0


def _header_rules(r: Reporter, header: Header) -> None:
    for sub, job in _after_lists(r.data):
        if job == header.job:
            r.at_value(("triggers", *sub), f"job {job!r} cannot trigger itself")
    within = header.deadline.within if header.deadline is not None else None
    if within is not None and within > MAX_DEADLINE_WITHIN:
        got = _raw(r.data, ("deadline", "within"))
        r.at_value(("deadline", "within"), "expected a duration of at most 366d (a deadline"
                   f" falls within a year of its run), got {got!r}")


def _after(end: datetime, start: datetime, timezone: str | None) -> bool:
    """Whether `end` is after `start`, or cannot be said to be not: one without an offset is a
    wall time in the job's zone, unknown here when the job names none (the config's applies)."""
    if (end.tzinfo is None) != (start.tzinfo is None):
        if timezone is None:
            return True
        from taskplan.timing.zones import spec_instant

        zone = ZoneInfo(timezone)
        return spec_instant(end, zone) > spec_instant(start, zone)
    return end > start


def _after_lists(data: Any) -> Iterator[tuple[Any, ...]]:
    triggers = data.get("triggers") if isinstance(data, dict) else None
    if not isinstance(triggers, list):
        return
    for i, trig in enumerate(triggers):
        after = trig.get("after") if isinstance(trig, dict) else None
        items = after if isinstance(after, list) else [after]
        for j, job in enumerate(items):
            yield (i, "after", j), job


def schedule_rules(r: Reporter, index: int, s: ScheduleModel, names: dict[str, int],
                   timezone: str | None = None) -> None:
    """`timezone`: the job's, which reads a start or end without an offset."""
    path: Path = ("schedules", index)
    if s.start is not None and s.end is not None and not _after(s.end, s.start, timezone):
        r.at_value((*path, "end"), "expected an end after start")
    if s.name is not None:
        if s.name.isdigit():
            r.at_value((*path, "name"), "expected a name that is not a number "
                       "(numbers stand for schedules without a name)")
        elif s.name in names:
            r.at_value((*path, "name"),
                       f"schedule name {s.name!r} is already used by schedule {names[s.name]}")
        else:
            names[s.name] = index
