"""Text helpers for the pages: times, durations, and task output with ANSI colours.

Output is escaped first; only then are SGR colour codes turned into spans of our own classes
(any other escape sequence is dropped), so what a task printed can never become markup.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from markupsafe import Markup, escape

from taskplan import shapes
from taskplan.redact import mask_url
from taskplan.spec.durations import elapsed_text
from taskplan.store.reports import RunInfo

_SGR = re.compile(r"\x1b\[([0-9;]*)m")
_OTHER_ESC = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]")


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")


# Deadline standings that mean trouble, drawn as errors are.
DEADLINE_BAD = ("at_risk", "missed", "not_met")


def deadline(r: RunInfo, now: float) -> dict[str, str] | None:
    """A run's deadline as `taskplan status` says it (`2026-12-05 06:00:00 at_risk`, or
    `pending` when it counts from a start still to come), or None for a run without one."""
    shown = shapes.run_deadline(r, now)
    if shown is None:
        return None
    state = str(shown["state"])
    return {"text": state if r.deadline_at is None else f"{when(r.deadline_at)} {state}",
            "state": state, "bad": "error-text" if state in DEADLINE_BAD else ""}


def took(start: float | None, end: float | None, now: float | None = None) -> str:
    if start is None:
        return "-"
    if end is None:
        if now is None:
            return "…"
        end = now
    return elapsed_text(max(0.0, end - start))


def ansi_html(text: str) -> Markup:
    """Escaped text with SGR colours as <span class="ansi-N"> (bold, 8+8 colours)."""
    text = mask_url(text)
    out: list[str] = []
    open_span = False
    pos = 0
    for m in _SGR.finditer(text):
        out.append(_plain(text[pos:m.start()]))
        pos = m.end()
        if open_span:
            out.append("</span>")
            open_span = False
        codes = [c for c in m.group(1).split(";") if c]
        classes = [f"ansi-{c}" for c in codes if c.isdigit() and (
            c == "1" or 30 <= int(c) <= 37 or 90 <= int(c) <= 97)]
        if classes:
            out.append(f'<span class="{" ".join(classes)}">')
            open_span = True
    out.append(_plain(text[pos:]))
    if open_span:
        out.append("</span>")
    return Markup("".join(out))


def _plain(text: str) -> str:
    return str(escape(_CONTROL.sub("", _OTHER_ESC.sub("", text))))


def masked(value: Any) -> str:
    return mask_url("" if value is None else str(value))


def run_marks(recent: list[dict[str, Any]]) -> Markup:
    """The coloured marks of a job's last runs, oldest first (built here rather than by a
    template macro: the jobs page draws 20 of them for each of a thousand jobs)."""
    return Markup('<span class="marks">' + "".join(
        f'<a href="/runs/{int(r["run_id"])}" class="mark st-{_known(r["state"])}"'
        f' title="run {int(r["run_id"])}: {_known(r["state"])}"></a>'
        for r in reversed(recent)) + "</span>")


_STATES = frozenset({"queued", "running", "stopping", "succeeded", "failed", "cancelled"})


def _known(state: str) -> str:
    return state if state in _STATES else str(escape(state))
