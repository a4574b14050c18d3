"""What an importer produces, and how it becomes a job file on disk.

Each imported job is a plain-data document (what a job file holds) plus notes: what could not be
expressed, and why. A document is rendered to YAML and loaded back through the job-file loader
before anything is written, so every written file passes `taskplan validate`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import Any

import yaml

from taskplan.dataclass import dataclass
from taskplan.errors import DefinitionError
from taskplan.model import JobSpec
from taskplan.spec import load_job_text
from taskplan.spec.checks import MAX_NAME

# Lists of plain values printed on one line (minutes: [0, 15, 30, 45]).
_FLOW_KEYS = frozenset({"at", "minutes", "hours", "weekdays", "monthdays", "months", "dates",
                        "depends_on", "tags", "agent_labels"})
_JINJA = ("{{", "{%", "{#")
# Where Jinja ends a raw block (its lexer's test): `{%`, an optional - or +, blanks, endraw.
_RAW_END = re.compile(r"\{(?=%[-+]?\s*endraw)")
# Names the store keeps (job, task, schedule names: MAX_NAME characters), less room for a suffix.
_NAME_ROOM = MAX_NAME - 10


@dataclass
class Imported:
    """One job out of an importer: its document (None if nothing could be imported)."""

    name: str
    origin: str  # where it came from, for the report and the file's header comment
    document: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)
    spec: JobSpec | None = None
    path: Path | None = None


def job_name(text: str, taken: set[str], fallback: str) -> str:
    """A job name ([a-z0-9_-]+) derived from free text, unique among `taken`."""
    base = re.sub(r"[^a-z0-9-]+", "_", text.lower()).strip("_-") or fallback
    return _unique(fit_name(base, "_"), taken)


def task_name(text: str, taken: set[str], fallback: str) -> str:
    """A task name ([A-Za-z0-9_][A-Za-z0-9_-]*) derived from free text, unique among `taken`."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_-") or fallback
    if base.startswith("-"):
        base = "_" + base
    return _unique(fit_name(base, "_"), taken)


def fit_name(name: str, joiner: str) -> str:
    """`name`, or if longer than the store keeps (with room for the `_2`, ` (2)` that make it
    unique), its start and `joiner` + 6 hex digits of a hash of all of it."""
    if len(name) <= _NAME_ROOM:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:6]
    return f"{name[:_NAME_ROOM - 7].rstrip('_- ')}{joiner}{digest}"


def _unique(base: str, taken: set[str]) -> str:
    """`base`, else `base_2`, `base_3`, ...: the first not in `taken`, which it joins."""
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def literal_text(text: str) -> str:
    """`text` as a template that renders to itself (job-file commands are Jinja templates).
    An end of a raw block in the text itself (a command writing a Jinja file) is cut between
    its `{` and `%`: the block is closed after the `{` and opened again before the `%`."""
    if any(mark in text for mark in _JINJA):
        return "{% raw %}" + _RAW_END.sub("{{% endraw %}{% raw %}", text) + "{% endraw %}"
    return text


class _Flow(list[Any]):
    """A list printed on one line."""


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # Block style keeps scripts readable (the emitter falls back when a text cannot be one).
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _flow(dumper: yaml.SafeDumper, value: _Flow) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True)


_Dumper.add_representer(str, _text)
_Dumper.add_representer(_Flow, _flow)


def _styled(value: Any, key: str | None = None) -> Any:
    if isinstance(value, dict):
        return {k: _styled(v, k) for k, v in value.items()}
    if isinstance(value, list):
        items = [_styled(v) for v in value]
        if key in _FLOW_KEYS and all(not isinstance(v, dict | list) for v in value):
            return _Flow(items)
        return items
    return value


def render(item: Imported) -> str:
    """The job file's text: a header comment (origin, notes) and the document as YAML."""
    assert item.document is not None
    body = yaml.dump(_styled(item.document), Dumper=_Dumper, sort_keys=False,
                     allow_unicode=True, width=100, default_flow_style=False)
    header = [f"# {_comment_text(item.origin)}"]
    for note in item.notes:
        header.append("# not expressed: " + _comment_text(" ".join(note.split())))
    return "\n".join(line.rstrip() for line in header) + "\n" + body


def _comment_text(text: str) -> str:
    """`text` fit for one YAML comment line: a control character or a line break YAML knows
    (U+2028, ...) escaped as Python writes it (\\x1c, \\u2028), since YAML refuses the one
    and would end the comment at the other."""
    return "".join(c if c.isprintable() or c in " \t" else c.encode("unicode_escape").decode()
                   for c in text)


def check(item: Imported, out_dir: Path) -> str | None:
    """Render and load the document back; returns the text, or None (with a note) if the job
    file would not validate."""
    if item.document is None:
        return None
    text = render(item)
    path = out_dir / f"{item.name}.yaml"
    try:
        item.spec = load_job_text(text, str(path), str(out_dir))
    except DefinitionError as exc:
        item.notes.append("the job file did not validate, not written: "
                          + "; ".join(str(p) for p in exc.problems[:3]))
        item.document = None
        return None
    item.path = path
    return text


class WriteError(Exception):
    """The job files could not be written (nothing was)."""


def write_all(items: list[Imported], out_dir: Path,
              before_move: Callable[[], None] | None = None) -> int:
    """Validate every document, then write the valid ones (a failing one writes nothing);
    the folder is made only when there is a file to put in it. Returns how many were written.
    Each file is written beside its place first, then all are moved in: a folder that cannot
    be made or written to, or a full disk, leaves no file half written and none replaced
    (WriteError). `before_move` runs once all are written beside their places (to open the
    store they will be applied to): if it raises, none is moved in and the folders made are
    removed."""
    texts = [(item.path, text) for item in items
             if (text := check(item, out_dir)) is not None and item.path is not None]
    if not texts:
        return 0
    for path, _ in texts:
        if path.is_dir():
            raise WriteError(f"cannot write the job files to {out_dir}: {path} is a folder")
    made = [p for p in (out_dir, *out_dir.parents) if not p.exists()]  # innermost first
    staged: list[tuple[Path, Path]] = []
    moving = False
    try:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            for path, text in texts:
                temp = path.with_name(f".{path.name}.taskplan-import")
                staged.append((temp, path))
                temp.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise WriteError(f"cannot write the job files to {out_dir}:"
                             f" {exc.strerror or exc}") from None
        if before_move is not None:
            before_move()
        moving = True
        try:
            while staged:
                temp, path = staged[0]
                temp.replace(path)
                staged.pop(0)
        except OSError as exc:
            raise WriteError(f"cannot write the job files to {out_dir}:"
                             f" {exc.strerror or exc}") from None
    except BaseException:
        for temp, _ in staged:
            temp.unlink(missing_ok=True)
        if not moving:  # nothing moved in: the folders made are empty
            for folder in made:
                try:
                    folder.rmdir()
                except OSError:
                    break
        raise
    return len(texts)
