"""Live progress of a run: a rich panel on a terminal, plain event lines otherwise."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from taskplan.cli.common import duration, short_time
from taskplan.cli.terminal_text import safe_line
from taskplan.store import reports
from taskplan.store.db import Store

STATE_STYLE = {
    "succeeded": "green", "failed": "bold red", "upstream_failed": "red", "running": "cyan",
    "ready": "blue", "pending": "dim", "retrying": "yellow", "skipped": "dim",
    "cancelled": "magenta",
}
TERMINAL = {"succeeded", "failed", "upstream_failed", "skipped", "cancelled"}


class PlainProgress:
    """One line per transition, read from the events table (works in pipes and CI logs)."""

    def __init__(self, store: Store, run_id: int, since_event: int = 0) -> None:
        self.store = store
        self.run_id = run_id
        self.last_event = since_event
        self.names: dict[int, str] = {}

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.update()

    def update(self) -> None:
        with self.store.read() as tx:
            rows = tx.all(
                "SELECT e.id, e.at, e.run_id, e.task_run_id, e.state, e.detail, t.task,"
                " t.item_index, t.kind FROM events e LEFT JOIN task_runs t"
                " ON t.id = e.task_run_id WHERE e.id > :last AND e.run_id IN"
                " (SELECT id FROM runs WHERE root_run_id = :root) ORDER BY e.id",
                {"last": self.last_event, "root": self.run_id})
        for eid, at, run_id, tr_id, state, detail, task, idx, kind in rows:
            self.last_event = int(eid)
            if kind == "barrier" or state == "ready":
                continue
            what = f"run {run_id}" if tr_id is None else (
                f"{task}[{idx}]" if idx is not None else str(task))
            tail = f"  ({safe_line(str(detail))})" if detail else ""
            click.echo(f"{short_time(at)}  {what:<28} {state}{tail}")


class RichProgress:
    """A panel redrawn a few times a second: bar, counts by state, running and failed tasks."""

    def __init__(self, store: Store, run_id: int, job: str) -> None:
        self.store = store
        self.run_id = run_id
        self.job = job
        self.started = time.monotonic()
        self.live = Live(Text("starting…"), console=Console(), refresh_per_second=8,
                         transient=False)

    def __enter__(self) -> RichProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.update()
        self.live.__exit__(*exc)

    def update(self) -> None:
        with self.store.read() as tx:
            counts = reports.state_counts(tx, self.run_id)
            active = tx.all(
                "SELECT task, item_index, state, attempts, started_at, error FROM task_runs"
                " WHERE run_id = :r AND kind <> 'barrier' AND state IN"
                " ('running', 'retrying', 'failed') ORDER BY state DESC, started_at LIMIT 12",
                {"r": self.run_id})
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
        for task, idx, state, attempts, started, error in active:
            name = f"{task}[{idx}]" if idx is not None else str(task)
            table.add_row(name, Text(str(state), style=STATE_STYLE.get(str(state), "")),
                          str(attempts), duration(started, now) if state == "running" else "",
                          Text(safe_line(error or "")[:60]))
        # A ProgressBar does not end its line, so it goes last on its own row of a grid.
        bar = Table.grid()
        bar.add_row(ProgressBar(total=max(total, 1), completed=done, width=60))
        self.live.update(Group(header, summary, bar, table))
