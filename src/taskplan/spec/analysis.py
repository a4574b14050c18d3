"""Checking one document: the pydantic schema, the rules between keys and tasks, and the
JobSpec or calendar built from it, every problem reported at once with its position. Imported
only when a document must be checked: a file found in the cache of checked files, or a command
that reads no job file, never loads the schema."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from taskplan.errors import DefinitionError
from taskplan.model import BusinessCalendar, HolidaySource, JobSpec
from taskplan.spec import build, checks
from taskplan.spec.connections import analyse_connections
from taskplan.spec.outcome import Outcome, is_calendar_file, is_connections_file
from taskplan.spec.report import Reporter, describe
from taskplan.spec.schema import (
    CalendarFile,
    ExceptionModel,
    Header,
    HolidaysModel,
    NotifyModel,
    ScheduleModel,
    Settings,
    TaskModel,
    TriggerModel,
)
from taskplan.spec.source import Path as KeyPath
from taskplan.spec.source import Positions, load_yaml
from taskplan.timing.business import check_holiday_source
from taskplan.timing.checks import check_exception, check_schedule


def analyse_calendar(data: dict[str, Any], positions: Positions, filename: str,
                     source_path: str, *, semantic: bool = True) -> Outcome:
    r = Reporter(filename, positions, data)
    if not semantic and isinstance(data.get("weekends"), list) and -1 in data["weekends"]:
        # Stored before -1 was refused: it closed no day (no weekday is -1), so it is dropped
        # and the calendar keeps loading as it behaved.
        data = {**data, "weekends": [d for d in data["weekends"] if d != -1]}
    model: CalendarFile | None = r.validate(CalendarFile, data, ())
    if model is not None and semantic:
        checks.calendar_name_length(r, model.calendar)
    # Each holiday source is checked on its own, also when other keys are wrong, so that
    # validate reports every problem of the file at once.
    raw = data.get("holidays")
    for i, entry in enumerate(raw if isinstance(raw, list) else [raw] if raw else []):
        try:
            h = HolidaysModel.model_validate(entry)
        except ValidationError:
            continue  # reported with the file's
        problem = check_holiday_source(HolidaySource(h.country, h.subdiv))
        if problem is not None:
            r.at_value(("holidays", i) if isinstance(raw, list) else ("holidays",), problem)
    if model is not None and len(set(model.weekends)) == 7:
        r.at_value(("weekends",), "expected at most six weekend days (a calendar closed "
                   "every day has no business days)")
    if r.problems or model is None:
        return Outcome(None, r.problems, data, positions)
    cal = build.business_calendar(model, data, source_path)
    return Outcome(None, [], data, positions, calendar=cal)


def analyse(data: Any, positions: Positions, filename: str, source_path: str, base_dir: str,
            *, semantic: bool = True) -> Outcome:
    r = Reporter(filename, positions, data)
    if not isinstance(data, dict):
        got = "an empty file" if data is None else describe(data)
        r.at_value((), f"expected a mapping with at least job: and tasks:, got {got}")
        return Outcome(None, r.problems, data, positions)
    # Top-level `x-...` keys hold YAML anchors for reuse (as in compose files); they are kept
    # in the definition but mean nothing to taskplan.
    own = {k: v for k, v in data.items() if not k.startswith("x-")}
    header: Header | None = r.validate(Header, own, ())
    if isinstance(data.get("deadline"), dict):
        checks.deadline_shape(r, data["deadline"])
    raw_defaults = data.get("defaults")
    defaults: Settings | None = (
        r.validate(Settings, raw_defaults, ("defaults",))
        if isinstance(raw_defaults, dict) else Settings() if raw_defaults is None else None
    )
    raw_tasks = data.get("tasks")
    tasks: dict[str, TaskModel] = {}
    if raw_tasks is None and "tasks" in data:
        # `tasks:` with nothing after it is an empty mapping to YAML, not a missing key.
        r.at_value(("tasks",), "expected at least one task")
    if isinstance(raw_tasks, dict):
        if not raw_tasks:
            r.at_value(("tasks",), "expected at least one task")
        for name, raw in raw_tasks.items():
            if not isinstance(raw, dict):
                r.at_value(("tasks", name), "expected a mapping with one of sql, shell, "
                           f"python, job, got {describe(raw)}")
                continue
            checks.task_shape(r, name, raw)
            model = r.validate(TaskModel, raw, ("tasks", name))
            if model is not None:
                tasks[name] = model
    schedules = _each(r, data, "schedules", ScheduleModel)
    names: dict[str, int] = {}
    for i, s in enumerate(schedules):
        if s is not None:
            checks.schedule_rules(r, i, s[0], names, header.timezone if header else None)
    exceptions = _each(r, data, "exceptions", ExceptionModel)
    triggers = _each(r, data, "triggers", TriggerModel)
    if semantic:
        # Checked here, read by the store (notify_ops). Not re-judged once stored: a version
        # applied under looser rules must keep loading (the sender reports what fails).
        _each(r, data, "notify", NotifyModel)
        if "notify" in data and data["notify"] is None:
            # Entries all commented out: none, or the defaults? Said, not guessed.
            r.at_value(("notify",), "expected a list of notification rules ([] for none;"
                       " leave the key out for taskplan.toml's defaults), got nothing")
        all_names = list(raw_tasks) if isinstance(raw_tasks, dict) else []
        checks.semantics(r, header, defaults, tasks, all_names)
        checks.schedule_name_lengths(r, [s[0] if s is not None else None for s in schedules])
    if r.problems:
        return Outcome(None, r.problems, data, positions)
    assert header is not None and defaults is not None
    spec = build.job(
        header, defaults, tasks, [s for s in schedules if s is not None],
        [e for e in exceptions if e is not None], [t for t in triggers if t is not None],
        data, source_path, base_dir,
    )
    return Outcome(spec, r.problems, data, positions)


def _each(r: Reporter, data: dict[str, Any], key: str, model: type[Any],
          prefix: KeyPath = ()) -> list[Any]:
    raw_list = data.get(key)
    if not isinstance(raw_list, list):
        return []
    out: list[Any] = []
    for i, raw in enumerate(raw_list):
        path: KeyPath = (*prefix, key, i)
        if not isinstance(raw, dict):
            r.at_value(path, f"expected a mapping, got {describe(raw)}")
            out.append(None)
            continue
        before = len(r.problems)
        if model is ScheduleModel:
            checks.schedule_shape(r, i, raw)
        elif model is ExceptionModel:
            checks.exception_shape(r, path, raw)
        piece = r.validate(model, raw, path)
        if model is ScheduleModel:  # its own exceptions, checked even if the rest is wrong
            own = _each(r, raw, "exceptions", ExceptionModel, path)
            piece = None if piece is None or None in own else (piece, own)
        out.append(piece)
        if piece is not None and len(r.problems) == before:
            # The timing layer's own rules, so a file that validates always compiles.
            if isinstance(piece, tuple) and (piece[0].every or 0) > checks.MAX_EVERY:
                # (check_schedule's sums overflow on it: validate died with a traceback)
                reasons: list[str] = []
                r.at_value((*path, "every"), "expected a duration of at most 36500d (100"
                           f" years), got {raw['every']!r}")
            elif isinstance(piece, tuple) and 0 < (piece[0].every or 1) < checks.MIN_EVERY:
                # Firings closer than the scheduler's misfire grace (1 s) are a typo (10ms for
                # 10m): they filled schedule_firings with a row every few milliseconds.
                reasons = []
                r.at_value((*path, "every"), "expected a duration of at least 1s, got"
                           f" {raw['every']!r}")
            elif isinstance(piece, tuple):
                reasons = check_schedule(build.schedule(i, *piece))
            elif isinstance(piece, ExceptionModel):
                reasons = check_exception(build.calendar(piece))
            else:
                reasons = []
            for reason in reasons:
                r.at_value(path, reason)
    return out


def analyse_text(text: str, filename: str, source_path: str, base_dir: str) -> Outcome:
    loaded = load_yaml(text, filename)
    if loaded.problems and loaded.data is None:
        return Outcome(None, loaded.problems, None, loaded.positions)
    if is_calendar_file(loaded.data):
        out = analyse_calendar(loaded.data, loaded.positions, filename, source_path)
    elif is_connections_file(loaded.data):
        found, problems = analyse_connections(loaded.data, loaded.positions, filename)
        out = Outcome(None, problems, loaded.data, loaded.positions, connections=found)
    else:
        out = analyse(loaded.data, loaded.positions, filename, source_path, base_dir)
    if loaded.problems:
        out.problems = loaded.problems + out.problems
        out.spec = None
        out.calendar = None
        out.connections = None
    return out


def calendar_from_definition(definition: dict[str, Any], source_path: str) -> BusinessCalendar:
    """Rebuild a business calendar from its stored plain data."""
    out = analyse_calendar(definition, Positions(), source_path or "<calendar>", source_path,
                           semantic=False)
    if out.calendar is None:
        raise DefinitionError(out.problems)
    return out.calendar


def job_from_definition(definition: dict[str, Any], source_path: str, base_dir: str) -> JobSpec:
    """Rebuild a JobSpec from its stored plain data. Cross-task rules are not re-checked: the
    definition was validated when applied, and must keep loading as the rules evolve."""
    out = analyse(definition, Positions(), source_path or "<definition>", source_path, base_dir,
                  semantic=False)
    if out.spec is None:
        raise DefinitionError(out.problems)
    return out.spec
