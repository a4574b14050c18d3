"""Read YAML 1.2 into plain data while remembering where every key and value sits.

libyaml (the C parser inside PyYAML) scans and parses the text; the plain JSON-ready data
(timestamps as ISO text) is built here from its events, because that plain form is what gets
stored, hashed and validated, and building it ourselves keeps the position of every key and
value. The pure-Python parsers cost about a second per 1,000 tasks; this costs a few percent of
that. Duplicate keys are recorded as problems instead of aborting, so the rest of the file is
still checked.

A job file may come from anyone (an upload, a shared folder), so the reader bounds what a small
file can cost: its size, its nesting depth and the number of nodes it expands to once every
alias is followed (a "billion laughs" file is a few KB of anchors that expand exponentially).
The bounds are checked event by event, before anything is expanded: an alias counts as the
size of what it names, and nothing is copied (aliased values are shared, read-only).
"""

from __future__ import annotations

import re
from dataclasses import field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from taskplan.dataclass import dataclass
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


# Above any real job file (a 10,000-task file is about 1 MB and 70,000 nodes), and low enough
# that reaching a bound costs about a second at most; an alias bomb is refused at the first
# alias that crosses MAX_NODES, before anything is expanded.
MAX_DOCUMENT_CHARS = 8 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 500_000


class LimitExceeded(Exception):
    def __init__(self, line: int, col: int, message: str) -> None:
        super().__init__(message)
        self.line, self.col, self.message = line, col, message


def _limit() -> int:
    return MAX_NODES  # read at call time, so a test can lower it


@dataclass
class Loaded:
    data: Any
    positions: Positions
    problems: list[Problem]


def load_yaml(text: str, filename: str) -> Loaded:
    """Parse one YAML 1.2 document into plain data with the position of every key and value.

    libyaml (PyYAML's C parser) scans and parses; this module builds the plain data from its
    events, so it can bound the cost of what it builds (depth, nodes after alias expansion)
    before building it, keep every position, and report duplicate keys instead of aborting.
    """
    if len(text) > MAX_DOCUMENT_CHARS:
        return Loaded(None, Positions(), [too_large(text, filename)])
    from yaml import MarkedYAMLError, YAMLError

    builder = _Builder(filename)
    try:
        data = builder.build(text)
    except LimitExceeded as exc:
        return Loaded(None, Positions(), [Problem(filename, exc.line, exc.col, exc.message)])
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        return Loaded(None, Positions(), [Problem(filename, line, col,
                                                  f"YAML syntax: {plain_words(exc, text)}")])
    except (YAMLError, ValueError, TypeError) as exc:
        return Loaded(None, Positions(), [Problem(filename, 1, 1, f"YAML syntax: {exc}")])
    return Loaded(data, builder.positions, builder.problems)


def too_large(text: str, filename: str) -> Problem:
    """The refusal of a text longer than MAX_DOCUMENT_CHARS, at the line where it crosses it."""
    line = text.count("\n", 0, MAX_DOCUMENT_CHARS) + 1
    return Problem(filename, line, 1, f"file too large: more than {MAX_DOCUMENT_CHARS} characters")


# libyaml's bound on a key written `key: value` (an implicit key), in characters
MAX_IMPLICIT_KEY = 1024


def plain_words(exc: Any, text: str) -> str:
    """libyaml's words for the common mistakes (mostly indentation), said plainly."""
    problem = str(exc.problem or "invalid YAML")
    context = str(exc.context or "")
    start = exc.context_mark.line + 1 if exc.context_mark is not None else None
    since = f" at line {start}" if start else ""
    if problem == "exceeded maximum nesting depth":  # libyaml's own bound, past ours
        return f"nested more than {MAX_DEPTH} levels deep"
    if problem == "mapping values are not allowed in this context":
        mark = exc.problem_mark
        lines = text.splitlines()
        before = lines[mark.line][:mark.column].strip() if mark.line < len(lines) else ""
        if len(before) > MAX_IMPLICIT_KEY:
            return (f"a key of {len(before)} characters: YAML's `key: value` takes keys of at"
                    f" most {MAX_IMPLICIT_KEY}")
        return ("unexpected ':' (indentation: this line is indented deeper than the key above "
                "it, or a value containing ': ' needs quotes)")
    if problem == "did not find expected key" and "block mapping" in context:
        return (f"bad indentation: this line does not line up with the keys of the mapping "
                f"that starts{since} (keys of one mapping must start in the same column)")
    if problem == "did not find expected '-' indicator":
        return (f"bad indentation: this line does not line up with the list that starts{since}"
                " (each item of a list starts with '- ' in the same column)")
    if problem == "found character that cannot start any token":
        mark = exc.problem_mark
        line = text.splitlines()[mark.line] if mark.line < len(text.splitlines()) else ""
        char = line[mark.column] if mark.column < len(line) else ""
        if char == "\t":
            return "a tab character: YAML is indented with spaces, not tabs"
        return f"{char!r} cannot start a value here (put the value in quotes)"
    if problem == "found unexpected end of stream" and "quoted scalar" in context:
        return f"the quoted text that starts{since} is never closed"
    for closing, what in (("]", "list"), ("}", "mapping")):
        if problem == f"did not find expected ',' or '{closing}'":
            return (f"the {what} that starts{since} is not closed with '{closing}' "
                    "(or a ',' is missing between two items)")
    return f"{problem} ({context}{since})" if context else problem


# YAML 1.2 core schema: what an unquoted scalar means. `yes`/`no`/`on`/`off` and `9:30` stay
# text (YAML 1.1 read them as booleans and as 570).
_NULL = re.compile(r"~|null|Null|NULL|")
_BOOL = re.compile(r"true|True|TRUE|false|False|FALSE")
_INT = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?"
                    r"|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")
_TIMESTAMP = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{1,2})-(?P<day>[0-9]{1,2})"
    r"(?:(?:[Tt]|[ \t]+)(?P<hour>[0-9]{1,2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
    r"(?:\.(?P<fraction>[0-9]*))?"
    r"(?:[ \t]*(?P<tz>Z|(?P<tz_sign>[-+])(?P<tz_hour>[0-9]{1,2})(?::(?P<tz_minute>[0-9]{2}))?))?)?")
_STR_TAG = "tag:yaml.org,2002:str"


# What a number, timestamp or `~` can start with. A plain scalar starting with anything else
# (most keys, names and commands) is text unless it is one of the words below: a set lookup
# instead of five patterns.
_NOT_A_WORD = frozenset("~0123456789+-.")
_WORDS: dict[str, Any] = {
    **dict.fromkeys(("null", "Null", "NULL")),
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
}


def resolve_plain(value: str) -> Any:
    """The value of an unquoted scalar under the YAML 1.2 core schema (timestamps as ISO text,
    as the stored definition keeps them)."""
    if value and value[0] not in _NOT_A_WORD:
        return _WORDS.get(value, value)
    return by_patterns(value)


def by_patterns(value: str) -> Any:
    """resolve_plain without its shortcut: every pattern of the core schema tried in turn."""
    if _NULL.fullmatch(value):
        return None
    if _BOOL.fullmatch(value):
        return value[0] in "tT"
    if _INT.fullmatch(value):
        if value.startswith(("0o", "0x")):
            return int(value, 0)
        return int(value, 10)
    if _FLOAT.fullmatch(value):
        lowered = value.lower()
        if lowered.endswith(".inf"):
            return float("-inf") if lowered.startswith("-") else float("inf")
        if lowered == ".nan":
            return float("nan")
        return float(value)
    stamp = _TIMESTAMP.fullmatch(value)
    if stamp is not None:
        return _timestamp(stamp, value)
    return value


def _timestamp(m: re.Match[str], text: str) -> str:
    """ISO text of a YAML timestamp; an impossible date (2026-02-30) stays as written, for the
    schema to reject with a position."""
    try:
        day = date(int(m["year"]), int(m["month"]), int(m["day"]))
        if m["hour"] is None:
            return day.isoformat()
        fraction = (m["fraction"] or "")[:6].ljust(6, "0")
        tz = None
        if m["tz"] == "Z":
            tz = UTC
        elif m["tz"]:
            delta = timedelta(hours=int(m["tz_hour"]), minutes=int(m["tz_minute"] or 0))
            tz = timezone(-delta if m["tz_sign"] == "-" else delta)
        return datetime(day.year, day.month, day.day, int(m["hour"]), int(m["minute"]),
                        int(m["second"]), int(fraction), tzinfo=tz).isoformat()
    except ValueError:
        return text


_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(_CORE + k for k in ("str", "int", "float", "bool", "null", "timestamp"))
_NODE_TAGS = frozenset((None, "!", _CORE + "map", _CORE + "seq"))


def _unknown_tag(tag: str, pos: tuple[int, int]) -> LimitExceeded:
    """A tag taskplan would have ignored (`!Ref x` read as the text "x", `!!binary` as its
    base64, `!!set` as a mapping): said, rather than the file meaning something else."""
    shown = "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag
    return LimitExceeded(*pos, f"YAML tag {shown} means nothing in a job file (only !!str,"
                         " !!int, !!float, !!bool, !!null and !!timestamp are read): remove it")


def _scalar(event: Any) -> Any:
    tag = event.tag
    if tag in (None, "!") and event.implicit[0]:
        return resolve_plain(event.value)
    if tag in (None, "!", _STR_TAG):
        return event.value
    if tag not in _SCALAR_TAGS:
        mark = event.start_mark
        raise _unknown_tag(tag, (mark.line + 1, mark.column + 1))
    resolved = resolve_plain(event.value)
    kind = tag.rsplit(":", 1)[1]
    wanted = {"int": int, "float": float, "bool": bool, "null": type(None)}.get(kind)
    if wanted is not None and isinstance(resolved, wanted):
        return resolved
    return event.value  # `!!timestamp`, or a value not of its tag's kind: the text as written


class _Frame:
    """A mapping or sequence being built, with where it sits."""

    __slots__ = ("anchor", "expanded", "is_map", "key", "key_pos", "merges", "path", "pos",
                 "value")

    def __init__(self, is_map: bool, path: Path, anchor: str | None, expanded: int,
                 pos: Pos) -> None:
        self.pos = pos
        self.is_map = is_map
        self.path = path
        self.anchor = anchor
        self.expanded = expanded  # the document's node count when this collection started
        self.value: Any = {} if is_map else []
        self.key: Any = _NO_KEY
        self.key_pos: Pos = (0, 0)
        self.merges: list[dict[str, Any]] = []


_NO_KEY = object()
_MERGE = object()


class _Builder:
    """Plain data and positions from libyaml's events, bounded as it goes."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.positions = Positions()
        self.positions.values[()] = (1, 1)
        self.problems: list[Problem] = []
        self.anchors: dict[str, tuple[Any, int]] = {}  # value, nodes it expands to
        self.open_anchors: set[str] = set()
        self.stack: list[_Frame] = []
        self.expanded = 0

    def build(self, text: str) -> Any:
        from yaml.reader import ReaderError

        try:
            from yaml._yaml import CParser as Parser
            in_bytes = True
        except ImportError:  # PyYAML built without libyaml: same events, slower
            from yaml import BaseLoader as Parser  # type: ignore[assignment]
            in_bytes = False
        try:
            parser = Parser(text)  # (the pure-Python reader checks every character here)
            return self._events(parser)
        except ReaderError as exc:
            raise _unreadable(exc, text, in_bytes) from None

    def _events(self, parser: Any) -> Any:
        from yaml import events as ev

        # Events are told apart by their exact class (libyaml makes no subclasses): one dict
        # lookup per event instead of a chain of isinstance checks, on 9 events a task.
        handlers: dict[type, Any] = {
            ev.ScalarEvent: self._scalar_event,
            ev.MappingStartEvent: self._mapping_event,
            ev.SequenceStartEvent: self._sequence_event,
            ev.MappingEndEvent: self._end_event,
            ev.SequenceEndEvent: self._end_event,
            ev.AliasEvent: self._alias_event,
        }
        try:
            root: Any = None
            documents = 0
            while True:
                event: Any = parser.get_event()
                if event is None or isinstance(event, ev.StreamEndEvent):
                    return root
                handler = handlers.get(type(event))
                if handler is not None:
                    mark = event.start_mark
                    done = handler(event, (mark.line + 1, mark.column + 1))
                    if done is not _NO_KEY:
                        root = done
                    continue
                if isinstance(event, ev.DocumentStartEvent):
                    documents += 1
                    if documents > 1:
                        mark = event.start_mark
                        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
                        raise LimitExceeded(line, col, "YAML syntax: expected one document in "
                                            "the file, found a second one")
                    continue
                if isinstance(event, ev.StreamStartEvent | ev.DocumentEndEvent):
                    continue
                mark = event.start_mark
                raise LimitExceeded(mark.line + 1, mark.column + 1,
                                    f"YAML syntax: unexpected {type(event).__name__}")
        finally:
            parser.dispose()

    # Each handler feeds one node event and returns the root value once it is complete,
    # else _NO_KEY.
    def _scalar_event(self, event: Any, pos: Pos) -> Any:
        value = _scalar(event)
        if self._is_merge_key(event):
            value = _MERGE
        else:
            self._count_node(pos)
        if event.anchor is not None:
            self.anchors[event.anchor] = (value, 1)
        empty = event.value == "" and event.implicit[0]
        return self._add(value, pos, empty=empty)

    def _mapping_event(self, event: Any, pos: Pos) -> Any:
        return self._start(event, pos, is_map=True)

    def _sequence_event(self, event: Any, pos: Pos) -> Any:
        return self._start(event, pos, is_map=False)

    def _start(self, event: Any, pos: Pos, *, is_map: bool) -> Any:
        if event.tag not in _NODE_TAGS:
            raise _unknown_tag(event.tag, pos)
        if len(self.stack) >= MAX_DEPTH:
            raise LimitExceeded(*pos, f"nested more than {MAX_DEPTH} levels deep")
        self._count_node(pos)
        path = self._child_path()
        if path is not None:
            self._note_value(path, pos)
        if event.anchor is not None:
            self.open_anchors.add(event.anchor)
        frame = _Frame(is_map, path or (), event.anchor, self.expanded - 1, pos)
        self.stack.append(frame)
        return _NO_KEY

    def _end_event(self, event: Any, pos: Pos) -> Any:
        frame = self.stack.pop()
        value = frame.value
        for merged in frame.merges:  # explicit keys win; earlier merges win over later
            for k, v in merged.items():
                value.setdefault(k, v)
        if frame.anchor is not None:
            self.open_anchors.discard(frame.anchor)
            self.anchors[frame.anchor] = (value, self.expanded - frame.expanded)
        return self._add(value, frame.pos, empty=False, placed=True)

    def _alias_event(self, event: Any, pos: Pos) -> Any:
        return self._alias(event.anchor, pos)

    @staticmethod
    def _is_merge_key(event: Any) -> bool:
        return bool(event.value == "<<" and event.implicit[0] and event.tag in (None, "!"))

    def _alias(self, anchor: str, pos: Pos) -> Any:
        if anchor in self.open_anchors:
            raise LimitExceeded(*pos, f"alias *{anchor} refers to a node that contains it "
                                "(recursive alias)")
        found = self.anchors.get(anchor)
        if found is None:
            raise LimitExceeded(*pos, f"YAML syntax: alias *{anchor} is used before any "
                                f"anchor &{anchor} defines it")
        value, size = found
        self._count(size, pos, f"too many aliases: *{anchor} makes the document expand to "
                    f"more than {_limit()} nodes")
        path = self._child_path()
        if path is not None:
            self._note_value(path, pos)
        return self._add(value, pos, empty=False, placed=True)

    def _count_node(self, pos: Pos) -> None:
        """One more node (the message is only worded when the bound is crossed)."""
        self.expanded += 1
        if self.expanded > _limit():
            raise LimitExceeded(*pos, f"more than {_limit()} nodes in the document")

    def _count(self, n: int, pos: Pos, message: str) -> None:
        self.expanded += n
        if self.expanded > _limit():
            raise LimitExceeded(*pos, message)

    def _child_path(self) -> Path | None:
        """The path of the value about to be added (None for a key or the root)."""
        if not self.stack:
            return None
        top = self.stack[-1]
        if not top.is_map:
            return (*top.path, len(top.value))
        if top.key is _NO_KEY or top.key is _MERGE:
            return None
        return (*top.path, top.key)

    def _note_value(self, path: Path, pos: Pos) -> None:
        self.positions.values[path] = pos

    def _add(self, value: Any, pos: Pos | None, *, empty: bool, placed: bool = False) -> Any:
        """Put a finished value where it belongs; returns it if it is the root."""
        if not self.stack:
            return value
        top = self.stack[-1]
        if not top.is_map:
            if pos is not None and not placed:
                self._note_value((*top.path, len(top.value)), pos)
            top.value.append(value)
            return _NO_KEY
        if top.key is _NO_KEY:  # this value is a key
            self._take_key(top, value, pos)
            return _NO_KEY
        key, top.key = top.key, _NO_KEY
        if key is _MERGE:
            self._merge(top, value, pos)
            return _NO_KEY
        if key is _DUPLICATE:
            return _NO_KEY
        child = (*top.path, key)
        if not placed and pos is not None:
            # An empty value has no text of its own: point at its key.
            self._note_value(child, top.key_pos if empty else pos)
        top.value[key] = value
        return _NO_KEY

    def _take_key(self, top: _Frame, key: Any, pos: Pos | None) -> None:
        if key is _MERGE:
            top.key = _MERGE
            return
        where = pos or (0, 0)
        plain = _plain_key(key)
        if plain is None:
            shown = dotted(top.path)
            self.problems.append(Problem(self.filename, *where,
                                         f"{shown}: expected a simple key, got {key!r}"))
            top.key = _DUPLICATE
            return
        if plain in top.value:
            first = self.positions.keys.get((*top.path, plain))
            self.problems.append(Problem(
                self.filename, *where, f"duplicate key {plain!r}: already defined"
                + (f" at line {first[0]}" if first else " above")))
            top.key = _DUPLICATE
            return
        top.key = plain
        top.key_pos = where
        self.positions.keys[(*top.path, plain)] = where
        self.positions.values[(*top.path, plain)] = where

    def _merge(self, top: _Frame, value: Any, pos: Pos | None) -> None:
        sources = value if isinstance(value, list) else [value]
        for source in sources:
            if not isinstance(source, dict):
                where = pos or (0, 0)
                self.problems.append(Problem(self.filename, *where, "YAML syntax: << merges "
                                             "mappings only (an alias of a mapping, or a list "
                                             "of them)"))
                return
            top.merges.append(source)


_DUPLICATE = object()


def _unreadable(exc: Any, text: str, in_bytes: bool) -> LimitExceeded:
    """A character YAML does not allow (a control character, NUL, U+FFFE), at its line and
    column. The reader's error is no MarkedYAMLError: it has only an offset into the text,
    counted in bytes of its UTF-8 by libyaml and in characters by the pure-Python reader."""
    at = exc.position
    if in_bytes:
        at = len(text.encode("utf-8", "surrogatepass")[:at].decode("utf-8", "surrogatepass"))
    start = text.rfind("\n", 0, at) + 1
    if start == 0 and text.startswith("\ufeff"):
        start = 1  # a byte order mark is no column an editor shows
    line, col = text.count("\n", 0, start) + 1, at - start + 1
    what = (f"#x{exc.character:04x}" if isinstance(exc.character, int)
            else repr(exc.character))
    return LimitExceeded(line, col, f"YAML syntax: unacceptable character {what}: "
                         f"{exc.reason}")


def _plain_key(key: Any) -> str | None:
    if type(key) is str:  # nearly every key
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, str | int | float) or key is None:
        return "null" if key is None else str(key)
    if isinstance(key, date):
        return key.isoformat()
    return None
