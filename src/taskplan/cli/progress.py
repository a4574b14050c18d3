"""Live progress of a run: a rich panel on a terminal, plain event lines otherwise."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from typing import Any, NamedTuple

import click

from taskplan.cli.common import duration, short_time
from taskplan.cli.terminal_text import safe_line
from taskplan.engine import AttemptEnd, Claim, Outcome, StepResult, TaskEnd, UnnamedEnds
from taskplan.errors import StoreUnavailableError
from taskplan.model import TERMINAL_TASK_STATES, TaskState
from taskplan.store import reports, run_ops
from taskplan.store.db import Store

STATE_STYLE = {
    "succeeded": "green", "failed": "bold red", "upstream_failed": "red", "running": "cyan",
    "ready": "blue", "pending": "dim", "retrying": "yellow", "skipped": "dim",
    "cancelled": "magenta",
}


class _Line(NamedTuple):
    """A line of PipeProgress before it is formatted, and what it changes in the counts of the
    summary lines (applied when the line is printed or held back, so that a summary counts
    exactly the lines before it)."""

    stamp: float
    # an attempt's claim; a run's id for a run that ended; (run id, task) for a task run that
    # ended without an attempt of its own
    who: Claim | int | tuple[int, str]
    state: str  # as shown; "" for a line not shown (an end already printed)
    error: str | None
    counted: str | None  # the state it adds to "ended so far" (the top run's task runs only)
    running: int  # its change to the number of attempts running
    weight: int = 1  # how many task runs it counts (items a halt ended, unnamed)


class PipeProgress:
    """Progress for a pipe or a CI log, fed by the in-process agent (the store is read only for
    the index of a foreach item it prints).

    One line per attempt that starts or ends, per task run that ends without one (skipped,
    upstream_failed, a foreach whose items failed) and per run that ends, up to LINES_PER_SECOND;
    past that rate one summary line a second instead, so a 1,000-task fan-out does not print
    2,000 lines; the caller prints the end summary. Task runs of a child run are named with
    their run.
    """

    LINES_PER_SECOND = 20

    def __init__(self, run_id: int, store: Store) -> None:
        self.run_id = run_id
        # Items are named by their index, as `status`, `logs --item` and the end summary name
        # them; a claim carries the item's value only, so the indexes of the item lines
        # printed (at most LINES_PER_SECOND a second) are read by id, once each.
        self.store = store
        self._index: dict[int, int] = {}
        self._lock = threading.Lock()
        # Lines to come, kept unformatted: past the rate most are only counted, and the
        # dispatcher that calls observe() is on every task's critical path.
        self._ended: deque[_Line] = deque()
        # Task runs a step cancelled and reported (observe(), on the dispatcher's thread)
        self._printed_ends: set[int] = set()
        self._run_line_seen = False
        # What the printed and held-back lines add up to (update(), the printing thread)
        self._counts: Counter[str] = Counter()
        self._running = 0
        self._window_start = time.monotonic()
        self._printed_in_window = 0
        self._held_back = 0
        self._held_stamp = 0.0  # when the last line held back happened

    def __enter__(self) -> PipeProgress:
        # What had ended before this process ran anything (tasks with `enabled: false`; on a
        # retry, what succeeded before) is in the end summary: the counts start from it.
        with self.store.read() as tx:
            done = reports.state_counts(tx, self.run_id)
        self._counts.update({s: n for s, n in done.items() if s in TERMINAL_TASK_STATES})
        return self

    def __exit__(self, *exc: object) -> None:
        self.update(final=True)

    def observe(self, finished: list[tuple[Claim, Outcome]], result: StepResult) -> None:
        """Called by the agent's dispatcher after each committed step: one line per attempt
        that ended, then what the step ended itself in the order it did (task runs without an
        attempt, job tasks, runs), then one per attempt started."""
        stamp = time.time()
        lines: list[_Line] = []
        # Cancelled task runs are printed from the step that cancelled them: their agent's own
        # report of the killed attempt (this step's or a later one's) is fenced off, stale.
        self._printed_ends.update(end.task_run_id for end in result.ends
                                  if isinstance(end, TaskEnd) and end.state == "cancelled")
        for claim, outcome in finished:
            if outcome.expanded:  # a foreach or job task: its end comes with result.ends
                lines.append(_Line(stamp, claim, "", None, None, -1))
            elif claim.task_run_id in result.stale:
                lines.append(self._stale_line(stamp, claim, outcome))
            else:
                lines.append(self._attempt_line(stamp, claim, outcome, result, running=-1))
        for end in result.ends:
            if isinstance(end, TaskEnd):
                lines.append(_Line(stamp, (end.run_id, end.task), end.state, end.detail,
                                   end.state if end.run_id == self.run_id else None, 0))
            elif isinstance(end, UnnamedEnds):
                if end.run_id == self.run_id:
                    lines.append(_Line(stamp, end.run_id, "", None, end.state, 0, end.number))
            elif isinstance(end, AttemptEnd):
                lines.append(self._attempt_line(stamp, end.claim, end.outcome, result, 0))
            else:
                self._run_line_seen = self._run_line_seen or end.run_id == self.run_id
                lines.append(_Line(stamp, end.run_id, end.state, None, None, 0))
        lines.extend(_Line(stamp, claim, "running", None, None, 1) for claim in result.claims)
        with self._lock:
            self._ended.extend(lines)

    def _stale_line(self, stamp: float, claim: Claim, outcome: Outcome) -> _Line:
        """An attempt the store no longer had running: its end is not the one recorded. Its
        line is the store's `cancelled` when this process killed it (cancelled elsewhere:
        `taskplan cancel`, Ctrl-C), unless a step of this process printed that already;
        otherwise (a success the cancel overtook, a lease taken over) there is none."""
        if outcome.state != TaskState.CANCELLED or claim.task_run_id in self._printed_ends:
            return _Line(stamp, claim, "", None, None, -1)
        counted = "cancelled" if claim.run_id == self.run_id else None
        return _Line(stamp, claim, "cancelled", None, counted, -1)

    def _attempt_line(self, stamp: float, claim: Claim, outcome: Outcome, result: StepResult,
                      running: int) -> _Line:
        state = str(outcome.state)
        if state == "failed" and claim.task_run_id in result.retried:
            shown = f"failed, retrying (attempt {claim.attempt} of {claim.max_attempts})"
            return _Line(stamp, claim, shown, outcome.error, None, running)
        counted = state if claim.run_id == self.run_id else None
        error = None if outcome.error == state else outcome.error  # not "cancelled (cancelled)"
        return _Line(stamp, claim, state, error, counted, running)

    def run_ended(self, state: str) -> None:
        """The run's own line, when no step of this process ended it (a `taskplan cancel`
        from another process, Ctrl-C): its end summary follows it in any case."""
        if not self._run_line_seen:
            with self._lock:
                self._ended.append(_Line(time.time(), self.run_id, state, None, None, 0))

    def _text(self, line: _Line) -> str:
        stamp, who, state, error = line.stamp, line.who, line.state, line.error
        if isinstance(who, int):
            name = f"run {who}"
        elif isinstance(who, tuple):
            run_id, task = who
            name = task if run_id == self.run_id else f"run {run_id}: {task}"
        else:
            name = self._name(who)
        tail = f"  ({safe_line(error)})" if error else ""
        return f"{short_time(stamp)}  {name:<28} {state}{tail}"

    def _name(self, claim: Claim) -> str:
        name = claim.task
        if claim.parent_id is not None:  # a foreach item
            index = self._index.get(claim.task_run_id)
            name += f"[{index}]" if index is not None else f"[{_short(claim.item)}]"
        return name if claim.run_id == self.run_id else f"run {claim.run_id}: {name}"

    def _learn_indexes(self, lines: list[_Line]) -> None:
        ids = [line.who.task_run_id for line in lines
               if isinstance(line.who, Claim) and line.who.parent_id is not None
               and line.who.task_run_id not in self._index]
        if not ids:
            return
        try:
            with self.store.read() as tx:
                self._index.update(reports.item_indexes(tx, ids))
        except StoreUnavailableError:
            pass  # named by their value meanwhile

    def update(self, final: bool = False) -> None:
        with self._lock:
            lines = list(self._ended)
            self._ended.clear()
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            if self._held_back:
                # Stamped as the last line it stands for, so times never go backwards.
                click.echo(f"{short_time(self._held_stamp)}  ... {self._held_back} more lines "
                           f"(ended so far: {self._done()}; {max(self._running, 0)} running)")
            self._window_start, self._printed_in_window, self._held_back = now, 0, 0
        shown: list[_Line] = []
        for line in lines:
            if line.counted is not None:
                self._counts[line.counted] += line.weight
            self._running += line.running
            if not line.state:
                continue
            if self._printed_in_window + len(shown) < self.LINES_PER_SECOND:
                shown.append(line)
            else:
                self._held_back += 1
                self._held_stamp = max(self._held_stamp, line.stamp)
        self._learn_indexes(shown)
        for line in shown:
            click.echo(self._text(line))
        self._printed_in_window += len(shown)
        if final and self._held_back:
            click.echo(f"{short_time(self._held_stamp)}  ... {self._held_back} more lines "
                       f"(ended: {self._done()})")
            self._held_back = 0

    def _done(self) -> str:
        return ", ".join(f"{n} {s}" for s, n in sorted(self._counts.items())) or "none"


def _short(item: object) -> str:
    """A foreach item as a name suffix: its compact JSON, cut to a readable length."""
    text = json.dumps(item, separators=(",", ":"), default=str)
    return safe_line(text if len(text) <= 24 else text[:23] + "…")


class RichProgress:
    """A panel redrawn a few times a second: bar, counts by state, running and failed tasks."""

    def __init__(self, store: Store, run_id: int, job: str) -> None:
        self.store = store
        self.run_id = run_id
        self.job = job
        self.started = time.monotonic()
        # rich is imported for a terminal only: on a pipe it would cost a one-task run more
        # than the run itself.
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        self.live = Live(Text("starting…"), console=Console(), refresh_per_second=8,
                         transient=False)

    def __enter__(self) -> RichProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.update()
        self.live.__exit__(*exc)

    def update(self) -> None:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        with self.store.read() as tx:
            counts = reports.state_counts(tx, self.run_id)
            active = run_ops.active_task_runs(tx, self.run_id, limit=12)
        total = sum(counts.values())
        done = sum(n for s, n in counts.items() if s in TERMINAL_TASK_STATES)
        header = Text.assemble(
            (f"{self.job}", "bold"), f"  run {self.run_id}  ",
            (f"{done}/{total} done", "bold"),
            f"  {time.monotonic() - self.started:.1f}s",
        )
        summary = Text("  ".join(f"{s} {n}" for s, n in sorted(counts.items())))
        for state, style in STATE_STYLE.items():
            summary.highlight_words([state], style)
        table = Table(box=None, show_header=True, header_style="dim", pad_edge=False)
        for col in ("task", "state", "attempt", "for", "error"):
            table.add_column(col)
        now = time.time()
        for t in active:
            name = f"{t.task}[{t.item_index}]" if t.item_index is not None else t.task
            table.add_row(name, Text(t.state, style=STATE_STYLE.get(t.state, "")),
                          str(t.attempts),
                          duration(t.started_at, now) if t.state == "running" else "",
                          Text(safe_line(t.error or "")[:60]))
        # A ProgressBar does not end its line, so it goes last on its own row of a grid.
        bar = Table.grid()
        bar.add_row(ProgressBar(total=max(total, 1), completed=done, width=60))
        self.live.update(Group(header, summary, bar, table))
