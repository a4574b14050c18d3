"""From job-file text (or stored plain data) to a JobSpec, reporting every problem at once."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path
from typing import Any

from taskplan.dataclass import dataclass
from taskplan.errors import DefinitionError, Problem
from taskplan.model import BusinessCalendar, HolidaySource, JobSpec
from taskplan.spec import build, checks
from taskplan.spec.connections import analyse_connections, is_connections_file
from taskplan.spec.report import Reporter, describe
from taskplan.spec.schema import (
    CalendarFile,
    ExceptionModel,
    Header,
    NotifyModel,
    ScheduleModel,
    Settings,
    TaskModel,
    TriggerModel,
)
from taskplan.spec.shared import SHARED
from taskplan.spec.source import Path as KeyPath
from taskplan.spec.source import Positions, load_yaml
from taskplan.timing.business import check_holiday_source
from taskplan.timing.checks import check_exception, check_schedule

JOB_FILE_SUFFIXES = (".yaml", ".yml")


@dataclass
class Outcome:
    spec: JobSpec | None
    problems: list[Problem]
    data: Any
    positions: Positions
    calendar: BusinessCalendar | None = None
    connections: dict[str, str] | None = None  # a connections file's name -> URL


def is_calendar_file(data: Any) -> bool:
    """A file with a top-level `calendar:` and no `job:` defines a business calendar."""
    return isinstance(data, dict) and "calendar" in data and "job" not in data


def analyse_calendar(data: dict[str, Any], positions: Positions, filename: str,
                     source_path: str) -> Outcome:
    r = Reporter(filename, positions, data)
    model: CalendarFile | None = r.validate(CalendarFile, data, ())
    if model is not None:
        for i, h in enumerate(model.holidays):
            problem = check_holiday_source(HolidaySource(h.country, h.subdiv))
            if problem is not None:
                r.at_value(("holidays", i) if isinstance(data.get("holidays"), list)
                           else ("holidays",), problem)
        if len(set(model.weekends)) == 7:
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
            checks.schedule_rules(r, i, s[0], names)
    exceptions = _each(r, data, "exceptions", ExceptionModel)
    triggers = _each(r, data, "triggers", TriggerModel)
    _each(r, data, "notify", NotifyModel)  # checked here, read by the store (notify_ops)
    if semantic:
        all_names = list(raw_tasks) if isinstance(raw_tasks, dict) else []
        checks.semantics(r, header, defaults, tasks, all_names)
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
            if isinstance(piece, tuple):
                reasons = check_schedule(build.schedule(i, *piece))
            elif isinstance(piece, ExceptionModel):
                reasons = check_exception(build.calendar(piece))
            else:
                reasons = []
            for reason in reasons:
                r.at_value(path, reason)
    return out


def _analyse_text(text: str, filename: str, source_path: str, base_dir: str) -> Outcome:
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


def load_job_text(text: str, filename: str, base_dir: str) -> JobSpec:
    """Parse and validate a job file's text; raise DefinitionError with every problem."""
    out = _analyse_text(text, filename, filename, os.path.abspath(base_dir))
    if out.spec is None:
        raise DefinitionError(out.problems)
    return out.spec


def _analyse_file(path: str | Path) -> Outcome:
    shown = str(path)
    absolute = os.path.abspath(path)
    try:
        with open(absolute, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return Outcome(None, [Problem(shown, 1, 1, f"cannot read the file: {reason}")], None,
                       Positions())
    return _analyse_text(text, shown, absolute, os.path.dirname(absolute))


def load_job_file(path: str | Path) -> JobSpec:
    """Load one job file; raise DefinitionError listing every problem with file:line:col."""
    return _job_of(_analyse_file(path), path)


def load_job_file_text(path: str | Path, text: str) -> JobSpec:
    """As load_job_file, for the text the caller has read from `path`."""
    absolute = os.path.abspath(path)
    return _job_of(_analyse_text(text, str(path), absolute, os.path.dirname(absolute)), path)


def _job_of(out: Outcome, path: str | Path) -> JobSpec:
    if out.spec is None:
        if out.calendar is not None:
            raise DefinitionError([Problem(str(path), 1, 1, "this file defines a calendar, "
                                           "not a job (apply it with taskplan apply)")])
        raise DefinitionError(out.problems)
    return out.spec


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given; a directory stands for its *.yaml and *.yml files (not recursive)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(c for c in p.iterdir()
                                if c.suffix in JOB_FILE_SUFFIXES and c.is_file()))
        else:
            files.append(p)
    return files


@dataclass
class Definitions:
    """What a set of files defines: jobs and business calendars."""

    jobs: list[JobSpec]
    calendars: list[BusinessCalendar]
    # Shared connections from connections files: name -> (URL as written, file).
    connections: dict[str, tuple[str, str]] = field(default_factory=dict)


def _load_many(paths: Sequence[str | Path]) -> tuple[Definitions, list[Problem]]:
    found, problems = _load_once(paths)
    if found.connections and problems:
        # Jobs may use the connections of a connections file given with them: check again
        # knowing those names.
        token = SHARED.set(SHARED.get() | set(found.connections))
        try:
            found, problems = _load_once(paths)
        finally:
            SHARED.reset(token)
    return found, problems


def _load_once(paths: Sequence[str | Path]) -> tuple[Definitions, list[Problem]]:
    specs: list[JobSpec] = []
    calendars: list[BusinessCalendar] = []
    problems: list[Problem] = []
    owners: dict[str, str] = {}
    calendar_owners: dict[str, str] = {}
    connections: dict[str, tuple[str, str]] = {}
    for given in map(Path, paths):
        files = expand_paths([given])
        if not files:
            problems.append(Problem(str(given), 1, 1,
                                    "no job files (*.yaml, *.yml) in this folder"))
        for path in files:
            out = _analyse_file(path)
            problems.extend(sorted(out.problems, key=lambda p: (p.line, p.col)))
            if is_connections_file(out.data):
                for cname, url in (out.connections or {}).items():
                    if cname in connections:
                        line, col = out.positions.key(("connections", cname))
                        problems.append(Problem(str(path), line, col, f"connection {cname!r}"
                                                f" is already defined in {connections[cname][1]}"))
                    else:
                        connections[cname] = (url, str(path))
                continue
            if is_calendar_file(out.data):
                cal_name = out.data.get("calendar")
                if isinstance(cal_name, str) and cal_name in calendar_owners:
                    line, col = out.positions.value(("calendar",))
                    problems.append(Problem(str(path), line, col, f"calendar: {cal_name!r} is "
                                            f"already defined in {calendar_owners[cal_name]}"))
                    continue
                if isinstance(cal_name, str):
                    calendar_owners[cal_name] = str(path)
                if out.calendar is not None:
                    calendars.append(out.calendar)
                continue
            name = out.data.get("job") if isinstance(out.data, dict) else None
            if isinstance(name, str):
                if name in owners:
                    line, col = out.positions.value(("job",))
                    message = f"job: {name!r} is already defined in {owners[name]}"
                    problems.append(Problem(str(path), line, col, message))
                    continue
                owners[name] = str(path)
            if out.spec is not None:
                specs.append(out.spec)
    return Definitions(specs, calendars, connections), problems


def validate_files(paths: Sequence[str | Path]) -> list[Problem]:
    """Every problem across the files (directories expanded), including job names defined
    by two files."""
    return _load_many(paths)[1]


def load_job_files(paths: Sequence[str | Path]) -> list[JobSpec]:
    """All jobs of the files, or DefinitionError with every problem of every file."""
    return load_definitions(paths).jobs


def load_definitions(paths: Sequence[str | Path]) -> Definitions:
    """All jobs and calendars of the files, or DefinitionError with every problem."""
    found, problems = _load_many(paths)
    if problems:
        raise DefinitionError(problems)
    return found


def calendar_from_definition(definition: dict[str, Any], source_path: str) -> BusinessCalendar:
    """Rebuild a business calendar from its stored plain data."""
    out = analyse_calendar(definition, Positions(), source_path or "<calendar>", source_path)
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
