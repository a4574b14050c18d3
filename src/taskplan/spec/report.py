"""Collects problems with positions, and turns pydantic errors into plain-worded problems."""

from __future__ import annotations

import difflib
import typing
from dataclasses import field
from typing import Any

from pydantic import BaseModel, ValidationError

from taskplan.dataclass import dataclass
from taskplan.errors import Problem
from taskplan.spec.fields import ERROR_TYPE
from taskplan.spec.source import Path, Positions, dotted


def describe(value: Any) -> str:
    """How to show what we got, short enough for one line."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class Reporter:
    filename: str
    positions: Positions
    data: Any
    problems: list[Problem] = field(default_factory=list)

    def at_key(self, path: Path, message: str, named: Path | None = None) -> None:
        """At the key of `path`; the message names `named` (a mapping whose key is wrong is
        named by the mapping, not by a key that may not print well)."""
        self._add(self.positions.key(path), path if named is None else named, message)

    def at_value(self, path: Path, message: str) -> None:
        self._add(self.positions.value(path), path, message)

    def at_container(self, path: Path, message: str) -> None:
        self._add(self.positions.container(path), path, message)

    def _add(self, pos: tuple[int, int], path: Path, message: str) -> None:
        prefix = f"{dotted(path)}: " if path else ""
        self.problems.append(Problem(self.filename, pos[0], pos[1], prefix + message))

    def validate(self, model: type[BaseModel], raw: Any, prefix: Path) -> Any:
        """Validate one piece; on failure report every error and return None."""
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                self._pydantic(model, dict(err), prefix)
            return None

    def _pydantic(self, model: type[BaseModel], err: dict[str, Any], prefix: Path) -> None:
        loc = tuple(err["loc"])
        kind = err["type"]
        is_key = bool(loc) and loc[-1] == "[key]"
        if is_key:
            loc = loc[:-1]
        path = self._walk((*prefix, *loc))
        if kind == "missing":
            self.at_container(path, f"missing required key {loc[-1]!r}")
        elif kind == "extra_forbidden":
            self.at_key(path, self._unknown_key(model, loc))
        elif is_key:
            # A bad mapping key: name the mapping, point at the key.
            self._add(self.positions.key(path), path[:-1],
                      f"{err['msg']}, got {describe(err['input'])}")
        elif kind == ERROR_TYPE:
            self.at_value(path, f"{err['msg']}, got {describe(err['input'])}")
        elif kind in ("model_type", "dict_type", "model_attributes_type"):
            self.at_value(path, f"expected a mapping, got {describe(err['input'])}")
        elif kind == "list_type":
            self.at_value(path, f"expected a list, got {describe(err['input'])}")
        else:
            self.at_value(path, f"{err['msg']}, got {describe(err['input'])}")

    def _walk(self, loc: tuple[Any, ...]) -> Path:
        """Keep the parts of a pydantic loc that exist in the data; union tags and the keys of
        missing fields drop out."""
        node = self.data
        path: list[str | int] = []
        for part in loc:
            in_map = isinstance(node, dict) and isinstance(part, str) and part in node
            in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
            if in_map or in_list:
                node = node[part]
                path.append(part)
        return tuple(path)

    def _unknown_key(self, model: type[BaseModel], loc: tuple[Any, ...]) -> str:
        key = str(loc[-1])
        owner = _model_at(model, loc[:-1])
        allowed = _field_names(owner)
        elsewhere = _misplaced(owner, key)
        if elsewhere is not None:
            return f"unknown key {key!r} here: {elsewhere}"
        meant = _SYNONYMS.get(key)
        if meant is not None and meant not in allowed:
            moved = _misplaced(owner, meant)  # `schedule:` in a task: a job's `schedules:`
            if moved is not None:
                return f"unknown key {key!r} here: did you mean {meant!r}? {moved}"
        guess = [meant] if meant in allowed else difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean {guess[0]!r}? " if guess else ""
        return f"unknown key {key!r}; {hint}expected one of: {', '.join(allowed)}"


# What other schedulers call these keys (Airflow, cron, CI files): the close-spelling guess
# named `triggers` for `retries` and nothing for `upstream` or `bash_command`.
_SYNONYMS = {
    "upstream": "depends_on", "upstreams": "depends_on", "dependencies": "depends_on",
    "depends": "depends_on", "deps": "depends_on", "needs": "depends_on",
    "bash_command": "shell", "command": "shell", "cmd": "shell", "script": "shell",
    "run": "shell", "execution_timeout": "timeout", "trigger_rule": "trigger",
    "schedule_interval": "schedules", "schedule": "schedules", "cron": "schedules",
    "steps": "tasks", "jobs": "tasks", "name": "job", "dag_id": "job",
}


def _misplaced(owner: type[BaseModel], key: str) -> str | None:
    """Where `key` belongs when it is a task key at the job's level (`retries: 2` beside
    `tasks:`), or a job key inside a task."""
    from taskplan.spec.schema import Header, Settings, TaskModel

    if owner is Header and key in Settings.model_fields:
        return (f"{key} is a task key: put it under defaults: (for every task) or under a"
                " task")
    if owner is TaskModel and key in Header.model_fields and key not in TaskModel.model_fields:
        return f"{key} is a job key: put it at the top level of the file, not in a task"
    return None


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel]:
    for part in loc:
        info = next(
            (f for n, f in model.model_fields.items() if part in (n, f.alias)), None
        )
        if info is None:
            continue
        candidates = [info.annotation, *typing.get_args(info.annotation)]
        sub = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if sub is not None:
            model = sub
    return model


def _field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]
