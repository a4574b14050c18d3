"""Live progress of a run: a rich panel on a terminal, plain event lines otherwise."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from typing import Any

import click

from taskplan.cli.common import duration, short_time
from taskplan.cli.terminal_text import safe_line
from taskplan.engine import Claim, Outcome, StepResult
from taskplan.errors import StoreUnavailableError
from taskplan.store import reports, run_ops
from taskplan.store.db import Store

STATE_STYLE = {
    "succeeded": "green", "failed": "bold red", "upstream_failed": "red", "running": "cyan",
    "ready": "blue", "pending": "dim", "retrying": "yellow", "skipped": "dim",
    "cancelled": "magenta",
}
TERMINAL = {"succeeded", "failed", "upstream_failed", "skipped", "cancelled"}


# A line of PipeProgress before it is formatted: when, who (an attempt's claim; a run's id for
# a run that ended; (run id, task) for a task run that ended without an attempt of its own),
# its state, and an error to show after it.
_Line = tuple[float, Claim | int | tuple[int, str], str, str | None]


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
        self._counts: Counter[str] = Counter()
        self._running = 0
        self._window_start = time.monotonic()
        self._printed_in_window = 0
        self._held_back = 0

    def __enter__(self) -> PipeProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.update(final=True)

    def observe(self, finished: list[tuple[Claim, Outcome]], result: StepResult) -> None:
        """Called by the agent's dispatcher after each committed step: one line per attempt
        that ended, then per task run the step ended without an attempt, then per attempt
        started, then per run that ended, in that order."""
        stamp = time.time()
        lines: list[_Line] = []
        retried = set(result.retried) if result.retried else ()
        for claim, outcome in (*finished, *result.ended):
            if outcome.expanded:
                continue
            state = str(outcome.state)
            self._counts[state] += 1
            if state == "failed" and claim.task_run_id in retried:
                state = f"failed, retrying (attempt {claim.attempt} of {claim.max_attempts})"
            lines.append((stamp, claim, state, outcome.error))
        for run_id, task, state in result.settled:
            self._counts[state] += 1
            lines.append((stamp, (run_id, task), state, None))
        for claim in result.claims:
            lines.append((stamp, claim, "running", None))
        for run_id, state in result.finished_runs:
            lines.append((stamp, run_id, state, None))
        with self._lock:
            self._running += len(result.claims) - len(finished)
            self._ended.extend(lines)

    def _text(self, line: _Line) -> str:
        stamp, who, state, error = line
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
        ids = [who.task_run_id for _, who, _, _ in lines
               if isinstance(who, Claim) and who.parent_id is not None
               and who.task_run_id not in self._index]
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
            counts = dict(self._counts)
            running = self._running
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            if self._held_back:
                done = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                click.echo(f"{short_time(time.time())}  ... {self._held_back} more lines "
                           f"(ended so far: {done}; {max(running, 0)} running)")
            self._window_start, self._printed_in_window, self._held_back = now, 0, 0
        room = max(self.LINES_PER_SECOND - self._printed_in_window, 0)
        shown, rest = lines[:room], lines[room:]
        self._learn_indexes(shown)
        for line in shown:
            click.echo(self._text(line))
        self._printed_in_window += len(shown)
        self._held_back += len(rest)
        if final and self._held_back:
            done = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            click.echo(f"{short_time(time.time())}  ... {self._held_back} more lines "
                       f"(ended: {done})")
            self._held_back = 0


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
        done = sum(n for s, n in counts.items() if s in TERMINAL)
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
