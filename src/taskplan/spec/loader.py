"""Job, calendar and connections files to JobSpecs and calendars, every problem of every file at
once. Checking a document is spec/analysis.py's, imported here only when a file must be checked
(the cache of checked files answers an unchanged job file without it)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any

from taskplan.dataclass import dataclass
from taskplan.errors import DefinitionError, Problem
from taskplan.model import BusinessCalendar, JobSpec
from taskplan.rules import child_param_problem
from taskplan.spec import checked
from taskplan.spec.outcome import Outcome, is_calendar_file, is_connections_file
from taskplan.spec.reading import read_source
from taskplan.spec.shared import SHARED
from taskplan.spec.source import Positions
from taskplan.spec.templating import is_template

JOB_FILE_SUFFIXES = (".yaml", ".yml")


def load_job_text(text: str, filename: str, base_dir: str) -> JobSpec:
    """Parse and validate a job file's text; raise DefinitionError with every problem."""
    from taskplan.spec.analysis import analyse_text

    out = analyse_text(text, filename, filename, os.path.abspath(base_dir))
    if out.spec is None:
        raise DefinitionError(out.problems)
    return out.spec


def _analyse_file(path: str | Path, *, use_cache: bool = False) -> Outcome:
    """A file's outcome. With use_cache, a job file whose bytes checked cleanly before is
    answered from the cache of checked files (spec/checked.py) with no positions (the caller
    analyses it again if it must point into it), and a job file that checks cleanly is kept."""
    shown = str(path)
    absolute = os.path.abspath(path)
    try:
        raw, text = read_source(absolute, shown)
    except DefinitionError as exc:
        return Outcome(None, exc.problems, None, Positions())

    def analyse() -> Outcome:
        from taskplan.spec.analysis import analyse_text

        return analyse_text(text, shown, absolute, os.path.dirname(absolute))

    return checked.outcome_of(path, raw, analyse) if use_cache else analyse()


def load_job_file(path: str | Path) -> JobSpec:
    """Load one job file; raise DefinitionError listing every problem with file:line:col."""
    return _job_of(_analyse_file(path), path)


def load_job_file_text(path: str | Path, text: str) -> JobSpec:
    """As load_job_file, for the text the caller has read from `path`."""
    from taskplan.spec.analysis import analyse_text

    absolute = os.path.abspath(path)
    return _job_of(analyse_text(text, str(path), absolute, os.path.dirname(absolute)), path)


def _job_of(out: Outcome, path: str | Path) -> JobSpec:
    if out.spec is None:
        if out.calendar is not None:
            raise DefinitionError([Problem(str(path), 1, 1, "this file defines a calendar, "
                                           "not a job (apply it with taskplan apply)")])
        if not out.problems:  # a connections file: `run` said nothing and exited 2
            raise DefinitionError([Problem(str(path), 1, 1, "this file defines shared "
                                           "connections, not a job (apply it with taskplan"
                                           " apply)")])
        raise DefinitionError(out.problems)
    return out.spec


def calendar_references(path: str | Path, shown: str) -> list[tuple[str, int, int]]:
    """Each business calendar a job file names (a schedule's `calendar:`, an exception's, a
    schedule's exception's), with the line and column of its `calendar:` key."""
    from taskplan.spec.source import load_yaml

    loaded = load_yaml(read_source(path, shown)[1], shown)
    data, found = loaded.data, []
    if not isinstance(data, dict):
        return []

    def entries(value: Any) -> list[tuple[int, Any]]:
        return list(enumerate(value)) if isinstance(value, list) else []

    where: list[tuple[tuple[str | int, ...], Any]] = [
        (("exceptions", i), e) for i, e in entries(data.get("exceptions"))]
    for i, sched in entries(data.get("schedules")):
        where.append((("schedules", i), sched))
        if isinstance(sched, dict):
            where += [(("schedules", i, "exceptions", j), e)
                      for j, e in entries(sched.get("exceptions"))]
    for at, entry in where:
        name = entry.get("calendar") if isinstance(entry, dict) else None
        if isinstance(name, str):
            line, col = loaded.positions.key((*at, "calendar"))
            found.append((name, line, col))
    return found


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given; a directory stands for its *.yaml and *.yml files (not recursive),
    hidden ones left out as a shell's `*.yaml` leaves them: an editor's lock file
    (`.#nightly.yaml`) or a Mac's `._nightly.yaml` is no job file."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            # A named pipe or a broken link named *.yaml is kept, for the reader to refuse
            # with its reason, rather than the folder silently applying without it.
            files.extend(sorted(c for c in p.iterdir()
                                if c.suffix in JOB_FILE_SUFFIXES and not c.name.startswith(".")
                                and not c.is_dir()))
        else:
            files.append(p)
    return files


def _identity(path: Path) -> str:
    """What tells a file named twice from two files: the path with every link followed."""
    try:
        return os.path.realpath(path, strict=True)
    except OSError:
        # Missing, or a link loop (Path.resolve raises RuntimeError for one on Python 3.11):
        # it is no other file, and reading it says why it cannot be read. Not normalised, so
        # `gone/../a.yaml` (which cannot be opened) is not taken for an existing `a.yaml`.
        return str(path.absolute())


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
    # A file named twice (`apply jobs jobs/sched.yaml`, or through a link) is one file, not
    # a second definition of its job.
    seen: set[str] = set()
    files_of: dict[str, Path] = {}
    for given in map(Path, paths):
        files = expand_paths([given])
        if not files:
            problems.append(Problem(str(given), 1, 1,
                                    "no job files (*.yaml, *.yml) in this folder"))
        for path in files:
            same = _identity(path)
            if same in seen:
                continue
            seen.add(same)
            out = _analyse_file(path, use_cache=True)
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
                    if out.spec is not None and not out.positions.values:  # from the cache
                        out = _analyse_file(path)
                    line, col = out.positions.value(("job",))
                    message = f"job: {name!r} is already defined in {owners[name]}"
                    problems.append(Problem(str(path), line, col, message))
                    continue
                owners[name] = str(path)
            if out.spec is not None:
                specs.append(out.spec)
                files_of[out.spec.name] = path
    problems.extend(_call_cycles(specs, files_of))
    problems.extend(_trigger_cycles(specs, files_of))
    problems.extend(_child_params(specs, files_of))
    return Definitions(specs, calendars, connections), problems


def _call_cycles(specs: list[JobSpec], files_of: dict[str, Path]) -> list[Problem]:
    """Jobs of the same command whose job tasks lead back to where they began (a -> b -> a):
    each cycle once, at the job task of its first job (by name) that starts the next one.
    (A job starting itself is its own file's problem; cycles through jobs already stored are
    the store's to find when the command applies.)"""
    calls = {spec.name: sorted((str(t.command), t.name) for t in spec.tasks
                               if t.kind == "job" and t.command != spec.name)
             for spec in specs}
    problems: list[Problem] = []
    for start, path in _rings(calls):
        task = path[0][1]
        out = _analyse_file(files_of[start])  # positions: a cached check keeps none
        line, col = out.positions.value(("tasks", task, "job"))
        cycle = " -> ".join([start, *(name for name, _ in path)])
        problems.append(Problem(str(files_of[start]), line, col,
                                f"tasks.{task}.job: job cycle: {cycle}"))
    return problems


def _child_params(specs: list[JobSpec], files_of: dict[str, Path]) -> list[Problem]:
    """A job task's params against its child job of the same command: a name the child does
    not declare, or a value of another kind than its default, fails every run of the task.
    (A child already stored is the store's to check: apply warns.)"""
    by_name = {spec.name: spec for spec in specs}
    problems: list[Problem] = []
    for spec in specs:
        for task in spec.tasks:
            child = by_name.get(str(task.command)) if task.kind == "job" else None
            if child is None:
                continue
            for name, value in task.params.items():
                problem = child_param_problem(child, name, value,
                                              typed=not has_template(value))
                if problem is None:
                    continue
                out = _analyse_file(files_of[spec.name])
                line, col = out.positions.value(("tasks", task.name, "params", name))
                problems.append(Problem(str(files_of[spec.name]), line, col,
                                        f"tasks.{task.name}.params.{name}: {problem}"))
    return problems


def has_template(value: object) -> bool:
    """Whether a param value is or holds a template (rendered when the task runs)."""
    if isinstance(value, str):
        return is_template(value)
    if isinstance(value, list):
        return any(has_template(v) for v in value)
    if isinstance(value, dict):
        return any(has_template(v) for v in value.values())
    return False


def _trigger_cycles(specs: list[JobSpec], files_of: dict[str, Path]) -> list[Problem]:
    """Jobs of the same command whose triggers wait for each other in a ring (q after r, r
    after q): each run of one starts the next, for ever. Each ring once, at the `after` entry
    of its first job (by name) that names the next one. (A job after itself is its own
    file's problem; rings through stored jobs are the store's to find.)"""
    waits = {spec.name: sorted((job, f"{t.index}.{k}") for t in spec.triggers
                               for k, job in enumerate(t.after) if job != spec.name)
             for spec in specs}
    problems: list[Problem] = []
    for start, path in _rings(waits):
        index, k = (int(n) for n in path[0][1].split("."))
        out = _analyse_file(files_of[start])
        line, col = out.positions.value(("triggers", index, "after", k))
        ring = " after ".join([start, *(name for name, _ in path)])
        problems.append(Problem(str(files_of[start]), line, col,
                                f"triggers[{index}].after[{k}]: trigger cycle: {ring} (each"
                                " run of one would start the next, for ever)"))
    return problems


def _rings(calls: dict[str, list[tuple[str, str]]]
           ) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """Each ring of `calls` once: (its first job by name, the way from it back to it)."""
    for start in sorted(calls):
        path = _path_back(calls, start)
        if path is not None and min(name for name, _ in path) == start:
            yield start, path


def _path_back(calls: dict[str, list[tuple[str, str]]], start: str
               ) -> list[tuple[str, str]] | None:
    """(job, the task of the job before it that starts it) along a way from `start` back to
    it through the jobs of `calls`, or None."""
    seen = {start}
    stack: list[tuple[str, list[tuple[str, str]]]] = [(start, [])]
    while stack:
        name, path = stack.pop()
        for callee, task in calls.get(name, ()):
            step = [*path, (callee, task)]
            if callee == start:
                return step
            if callee in calls and callee not in seen:
                seen.add(callee)
                stack.append((callee, step))
    return None


def check_definitions(paths: Sequence[str | Path]) -> tuple[Definitions, list[Problem]]:
    """What the files define that is valid, and every problem across them."""
    return _load_many(paths)


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
