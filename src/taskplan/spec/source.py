"""Read YAML 1.2 into plain data while remembering where every key and value sits.

The round-trip loader gives positions (``.lc``); we turn its objects into plain JSON-ready data
(dates as ISO strings) because that plain form is what gets stored, hashed and validated.
Duplicate keys are recorded as problems instead of aborting, so the rest of the file is still
checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from taskplan.errors import Problem

Path = tuple[str | int, ...]
Pos = tuple[int, int]


def dotted(path: Path) -> str:
    """``('tasks', 'load', 'shell', 2)`` -> ``tasks.load.shell[2]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


@dataclass
class Positions:
    """1-based positions of keys and values by path; unknown paths fall back to a parent."""

    keys: dict[Path, Pos] = field(default_factory=dict)
    values: dict[Path, Pos] = field(default_factory=dict)

    def value(self, path: Path) -> Pos:
        for n in range(len(path), -1, -1):
            pos = self.values.get(path[:n])
            if pos is not None:
                return pos
        return (0, 0)

    def key(self, path: Path) -> Pos:
        """Where the key of `path` is written; for list items, where the item starts."""
        pos = self.keys.get(path)
        return pos if pos is not None else self.value(path)

    def container(self, path: Path) -> Pos:
        """Where to point for something missing inside the mapping at `path`."""
        if not path:
            return self.values.get((), (1, 1))
        return self.key(path)


class _Constructor(RoundTripConstructor):
    """Keeps the first of duplicate keys and notes where each later one is."""

    duplicates: list[tuple[Any, int, int, int | None]]

    def check_mapping_key(
        self, node: Any, key_node: Any, mapping: Any, key: Any, value: Any
    ) -> bool:
        if key in mapping:
            mark = key_node.start_mark
            first = None
            try:
                first = mapping.lc.key(key)[0] + 1
            except (KeyError, TypeError, AttributeError):
                pass
            self.duplicates.append((key, mark.line + 1, mark.column + 1, first))
            return False
        return True


    def construct_yaml_timestamp(self, node: Any, values: Any = None) -> Any:
        # An impossible date (2026-02-30) stays text, for the schema to reject with a position.
        try:
            return super().construct_yaml_timestamp(node, values)
        except ValueError:
            return str(node.value)


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _Constructor.construct_yaml_timestamp)


@dataclass
class Loaded:
    data: Any
    positions: Positions
    problems: list[Problem]


def load_yaml(text: str, filename: str) -> Loaded:
    yaml = YAML(typ="rt")
    yaml.Constructor = _Constructor
    yaml.version = (1, 2)
    constructor = yaml.constructor
    assert isinstance(constructor, _Constructor)
    constructor.duplicates = []
    try:
        raw = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        what = exc.problem or exc.context or "invalid YAML"
        return Loaded(None, Positions(), [Problem(filename, line, col, f"YAML syntax: {what}")])
    except (YAMLError, ValueError, TypeError) as exc:
        return Loaded(None, Positions(), [Problem(filename, 1, 1, f"YAML syntax: {exc}")])
    problems = [
        Problem(filename, line, col, f"duplicate key {key!r}: already defined"
                + (f" at line {first}" if first else " above"))
        for key, line, col, first in constructor.duplicates
    ]
    positions = Positions()
    positions.values[()] = (1, 1)
    data = _plain(raw, (), positions, problems, filename)
    return Loaded(data, positions, problems)


def _plain(obj: Any, path: Path, pos: Positions, problems: list[Problem], filename: str) -> Any:
    if isinstance(obj, CommentedMap):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            key = _plain_key(k)
            child: Path = (*path, key if key is not None else str(k))
            lc = _lc(obj, k, "key")
            if lc is not None:
                pos.keys[child] = lc
            # An empty value has no text of its own: ruamel places it on the next line.
            vlc = _lc(obj, k, "value") if v is not None else None
            if vlc is not None:
                pos.values[child] = vlc
            elif lc is not None:
                pos.values[child] = lc
            if key is None:
                where = pos.key(child)
                problems.append(
                    Problem(filename, *where, f"{dotted(path)}: expected a simple key, got {k!r}")
                )
                continue
            out[key] = _plain(v, child, pos, problems, filename)
        return out
    if isinstance(obj, CommentedSeq):
        items = []
        for i, v in enumerate(obj):
            child = (*path, i)
            try:
                line, col = obj.lc.item(i)
                pos.values[child] = (line + 1, col + 1)
            except (KeyError, TypeError, AttributeError):
                pass
            items.append(_plain(v, child, pos, problems, filename))
        return items
    return plain_scalar(obj)


def _lc(mapping: CommentedMap, key: Any, which: str) -> Pos | None:
    # Keys brought in by a merge (`<<: *anchor`) have no position of their own.
    try:
        line, col = getattr(mapping.lc, which)(key)
    except (KeyError, TypeError, AttributeError):
        return None
    return (line + 1, col + 1)


def _plain_key(key: Any) -> str | None:
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, str | int | float) or key is None:
        return "null" if key is None else str(key)
    if isinstance(key, date):
        return key.isoformat()
    return None


def plain_scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, datetime | date | time):
        return _iso(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict):
        return {str(k): plain_scalar(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_scalar(v) for v in value]
    return str(value)


def _iso(value: datetime | date | time) -> str:
    if isinstance(value, datetime):
        # ruamel's TimeStamp keeps the offset in a side attribute; rebuild a clean datetime.
        tz = value.tzinfo
        clean = datetime(
            value.year, value.month, value.day, value.hour, value.minute, value.second,
            value.microsecond, tzinfo=tz,
        )
        return clean.isoformat()
    return value.isoformat()
