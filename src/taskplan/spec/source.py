"""Read YAML 1.2 into plain data while remembering where every key and value sits.

The round-trip loader gives positions (``.lc``); we turn its objects into plain JSON-ready data
(dates as ISO strings) because that plain form is what gets stored, hashed and validated.
Duplicate keys are recorded as problems instead of aborting, so the rest of the file is still
checked.

A job file may come from anyone (an upload, a shared folder), so the reader bounds what a small
file can cost: its size, its nesting depth and the number of nodes it expands to once every
alias is followed (a "billion laughs" file is a few KB of anchors that expand exponentially).
The bounds are checked while the document is composed, before anything is expanded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.scanner import RoundTripScanner

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


# Far above any real job file (a 1000-task file is ~100 KB and ~10,000 nodes), and low enough
# that reaching a bound costs about a second of parsing at most.
MAX_DOCUMENT_CHARS = 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 50_000


class LimitExceeded(Exception):
    def __init__(self, line: int, col: int, message: str) -> None:
        super().__init__(message)
        self.line, self.col, self.message = line, col, message


class _BoundedScanner(RoundTripScanner):
    """Stops deep flow nesting (`[[[[...`) while scanning: the scanner's work per token grows
    with the flow depth, so it would be quadratic before the composer sees a node."""

    def fetch_flow_collection_start(self, TokenClass: Any, to_push: str) -> None:
        if len(self.flow_context) >= MAX_DEPTH:
            mark = self.reader.get_mark()
            raise LimitExceeded(mark.line + 1, mark.column + 1,
                                f"nested more than {MAX_DEPTH} levels deep")
        super().fetch_flow_collection_start(TokenClass, to_push)


def _limit() -> int:
    return MAX_NODES  # read at call time, so a test can lower it


class _BoundedComposer(Composer):
    """Counts the nodes the document expands to (an alias counts as the whole subtree it
    names) and the nesting depth, and stops at the first node past a bound."""

    def compose_document(self) -> Any:
        self._expanded = 0
        self._depth = 0
        self._sizes: dict[int, int] = {}
        return super().compose_document()

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        mark = event.start_mark
        if isinstance(event, AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:
                size = self._sizes.get(id(target))
                if size is None:
                    raise LimitExceeded(mark.line + 1, mark.column + 1,
                                        f"alias *{event.anchor} refers to a node that contains "
                                        "it (recursive alias)")
                self._count(size, mark, f"too many aliases: *{event.anchor} makes the document "
                            f"expand to more than {_limit()} nodes")
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise LimitExceeded(mark.line + 1, mark.column + 1,
                                f"nested more than {MAX_DEPTH} levels deep")
        before = self._expanded
        self._count(1, mark, f"more than {_limit()} nodes in the document")
        node = super().compose_node(parent, index)
        self._sizes[id(node)] = self._expanded - before
        self._depth -= 1
        return node

    def _count(self, n: int, mark: Any, message: str) -> None:
        self._expanded += n
        if self._expanded > _limit():
            raise LimitExceeded(mark.line + 1, mark.column + 1, message)


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
    if len(text) > MAX_DOCUMENT_CHARS:
        line = text.count("\n", 0, MAX_DOCUMENT_CHARS) + 1
        return Loaded(None, Positions(), [Problem(
            filename, line, 1, f"file too large: more than {MAX_DOCUMENT_CHARS} characters")])
    yaml = YAML(typ="rt")
    yaml.Scanner = _BoundedScanner
    yaml.Composer = _BoundedComposer
    yaml.Constructor = _Constructor
    yaml.version = (1, 2)
    constructor = yaml.constructor
    assert isinstance(constructor, _Constructor)
    constructor.duplicates = []
    try:
        raw = yaml.load(text)
    except LimitExceeded as exc:
        return Loaded(None, Positions(), [Problem(filename, exc.line, exc.col, exc.message)])
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
