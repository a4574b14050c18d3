"""`status`, `runs` and `logs`: what ran, when, and what it printed."""

from __future__ import annotations

import logging
import sys
import time

import click

from taskplan import shapes
from taskplan.cli.common import (
    clock_time,
    db_option,
    duration,
    forecast_line,
    get_context,
    handle_errors,
    json_option,
    parse_run_id,
    print_json,
    short_time,
    stdout_gone,
    whole,
)
from taskplan.cli.terminal_text import safe, safe_line
from taskplan.errors import NotFoundError, StoreUnavailableError, UsageError
from taskplan.model import TERMINAL_TASK_STATES, RunState
from taskplan.redact import mask_url
from taskplan.store import ops, reports, run_ops

log = logging.getLogger(__name__)


@click.command("status")
@click.argument("run", required=False)
@click.option("--attempts", "show_attempts", is_flag=True,
              help="Also every attempt of each task run: agent and host, exit code, error,"
                   " times (JSON: attempt_list).")
@db_option
@json_option
@handle_errors
def status_cmd(run: str | None, show_attempts: bool, db: str | None, as_json: bool) -> None:
    """Counts by state; for a run, every task run with its attempts and times."""
    ctx = get_context(db)
    store = ctx.store  # the engine is imported only for a running run's forecast
    if run is None:
        with store.read() as tx:
            runs = reports.state_counts(tx)
            tasks = reports.active_task_counts(tx)
        if as_json:
            print_json({"runs": runs, "active_task_runs": tasks})
            return
        click.echo("runs:   " + ("  ".join(f"{s} {n}" for s, n in sorted(runs.items()))
                                 or "none"))
        click.echo("active task runs: " + ("  ".join(f"{s} {n}" for s, n in
                                                     sorted(tasks.items())) or "none"))
        return
    run_id = parse_run_id(run)
    from taskplan.engine import waiting  # why a task waits: for one run's view only

    with store.snapshot() as tx:
        info = reports.run_info(tx, run_id)
        if info is None:
            raise NotFoundError(f"no run {run_id}")
        tasks_ = reports.task_runs(tx, run_id)
        tries = reports.attempts_of_run(tx, run_id) if show_attempts else None
        # In the same read as the task runs: a row read as ready has its reason, and a
        # reason never names a state the rows do not show.
        why = waiting.explain_in(tx, run_id, time.time())
        orphans = (waiting.orphans_in(tx, run_id) if info.state in ("running", "stopping")
                   else {})
    forecast = None
    if info.state in ("running", "stopping"):
        from taskplan.engine.forecasts import forecast_for_run

        try:
            engine = ctx.engine
            forecast = forecast_for_run(store, run_id, time.time(), engine.job_spec)
        except StoreUnavailableError:
            raise
        except Exception:  # a forecast is a courtesy: status must print whatever happens
            log.exception("no forecast for run %s", run_id)
    if as_json:
        print_json(shapes.run_status(info, tasks_, forecast, tries, why))
        return
    click.echo(f"run {info.run_id}  {info.job} v{info.version}  {info.state}  "
               f"trigger {info.trigger}  {short_time(info.started_at)}  "
               f"{duration(info.started_at, info.finished_at)}")
    if info.state in ("running", "stopping"):
        line = forecast_line(forecast, time.time())
        stuck = sum(1 for reason in why.values() if reason.startswith(_NO_TAKER))
        if forecast is not None and stuck:
            # The forecast assumes every task finds an agent; these have none alive.
            line += f", if an agent comes for the {stuck} task(s) waiting for one"
        click.echo(line)
    if info.deadline_at is not None or info.deadline_state is not None:
        click.echo(f"deadline: {deadline_text(info, time.time())}")
    if info.params:
        click.echo("params: " + safe_line(", ".join(f"{k}={_param_text(v)}"
                                                    for k, v in
                                                    shapes.masked_params(info.params).items())))
    click.echo(f"{'TASK':<30} {'KIND':<7} {'STATE':<16} {'TRY':>3} {'STARTED':<20} "
               f"{'TOOK':>8}  DETAIL")
    for t in tasks_:
        name = f"{t.name}[{t.item_index}]" if t.item_index is not None else t.name
        # A result is the last attempt's: shown once the task has ended, not beside a retry.
        shown = t.result if t.state in TERMINAL_TASK_STATES else None
        detail = t.error or ("" if shown is None else f"result {ops.dumps(shown)[:40]}")
        if t.child_run_id:
            # The task's error already names its child ("run 12 ended failed").
            named = detail.startswith(f"run {t.child_run_id} ")
            detail = f"child {detail}" if named else f"child run {t.child_run_id} {detail}"
        if t.items is not None:
            counts = ", ".join(f"{n} {s}" for s, n in sorted(t.items.items()))
            none = "none" if t.state in TERMINAL_TASK_STATES else "none yet"
            detail = f"items: {counts or none}" + (f"; {detail}" if detail else "")
        if t.id in why:
            detail = why[t.id]
        elif t.id in orphans:
            detail = orphans[t.id]
        click.echo(f"{name:<30} {t.kind:<7} {t.state:<16} {t.attempts:>3} "
                   f"{short_time(t.started_at):<20} {duration(t.started_at, t.finished_at):>8}"
                   f"  {safe_line(detail)}".rstrip())
        for a in (tries or {}).get(t.id, []):
            _print_attempt(a)


# Waiting reasons (engine/waiting.py) that no running agent will ever end.
_NO_TAKER = ("no agent alive", "waiting for an agent with labels", "the foreground agent lacks")


def _print_attempt(a: reports.AttemptInfo) -> None:
    where = f"{a.agent or '?'}@{a.host}" if a.host else "no agent recorded"
    code = "-" if a.exit_code is None else str(a.exit_code)
    click.echo(f"    attempt {a.attempt:<3} {a.state:<10} {short_time(a.started_at):<20}"
               f" {duration(a.started_at, a.finished_at):>8}  exit {code:<4} on {where}"
               + (f"  {safe_line(a.error)}" if a.error else ""))


@click.command("runs")
@click.option("--job", default=None, help="Only runs of this job.")
@click.option("--state", type=click.Choice([s.value for s in RunState]), default=None,
              help="Only runs in this state.")
@click.option("--limit", type=whole(1), default=20, show_default=True,
              help="How many runs, newest first.")
@db_option
@json_option
@handle_errors
def runs_cmd(job: str | None, state: str | None, limit: int, db: str | None,
             as_json: bool) -> None:
    """Run history, newest first."""
    with get_context(db).store.read() as tx:
        if job is not None and ops.job_by_name(tx, job) is None:
            # A deleted job still has its history; a name never applied is a typo.
            from taskplan.engine.definitions import unknown_job

            raise unknown_job(tx, job)
        rows = reports.list_runs(tx, job, state, limit)
    if as_json:
        print_json([shapes.run_summary(r) for r in rows])
        return
    click.echo(f"{'RUN':>6} {'JOB':<24} {'VER':>3} {'STATE':<10} {'TRIGGER':<9} "
               f"{'STARTED':<20} {'TOOK':>8}  DEADLINE")
    now = time.time()
    for r in rows:
        click.echo(f"{r.run_id:>6} {r.job:<24} {r.version:>3} {r.state:<10} {r.trigger:<9} "
                   f"{short_time(r.started_at):<20} {duration(r.started_at, r.finished_at):>8}"
                   f"  {deadline_text(r, now)}".rstrip())


def _param_text(value: object) -> str:
    """A param as `--param` takes it: text as is, anything else as JSON (`on=false`, not
    Python's `on=False`, which `--param` refuses)."""
    if isinstance(value, str):
        return value
    import json

    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def deadline_text(r: reports.RunInfo, now: float) -> str:
    """`06:00 at_risk`, `pending`, or nothing for a run without a deadline."""
    shown = shapes.run_deadline(r, now)
    if shown is None:
        return ""
    if r.deadline_at is None:
        return str(shown["state"])
    return f"{clock_time(r.deadline_at, now)} {shown['state']}"


@click.command("logs")
@click.argument("run")
@click.argument("task")
@click.option("--attempt", type=whole(1), default=None,
              help="Which attempt (default: the latest).")
@click.option("--item", "item_index", type=whole(0), default=None,
              help="Which foreach item (its index).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the attempt ends.")
@click.option("--raw", is_flag=True,
              help="Print the output as kept (UTF-8 text), terminal escape sequences included "
                   "(for piping); by default control characters are shown escaped.")
@db_option
@handle_errors
def logs_cmd(run: str, task: str, attempt: int | None, item_index: int | None, follow: bool,
             raw: bool, db: str | None) -> None:
    """Print the output of one attempt of a task."""
    store = get_context(db).store
    run_id = parse_run_id(run)
    task, item_index = _item_named(task, item_index)
    with store.read() as tx:
        if reports.run_info(tx, run_id) is None:
            raise NotFoundError(f"no run {run_id}")
        found = reports.find_task_runs(tx, run_id, task)
        names = [] if found else [n for n in ops.task_ids(tx, run_id) if not n.startswith("@")]
    if not found:
        import difflib

        guess = difflib.get_close_matches(task, sorted(names), n=1)
        raise NotFoundError(f"run {run_id} has no task {task!r}"
                            + (f"; did you mean {guess[0]!r}?" if guess else ""))
    items = [f for f in found if f.item_index is not None]
    foreach = any(f.kind in ("foreach", "item") for f in found)
    if item_index is not None and not foreach:
        raise UsageError(f"{task} is not a foreach task: --item picks an item of a foreach")
    if foreach and not items and item_index is not None:
        parent = next(f for f in found if f.item_index is None)
        while follow and not items and parent.state not in TERMINAL_TASK_STATES:
            # --follow waits for the item as it waits for an attempt: the foreach makes its
            # items when it runs.
            time.sleep(0.2)
            with store.read() as tx:
                found = reports.find_task_runs(tx, run_id, task)
            items = [f for f in found if f.item_index is not None]
            parent = next(f for f in found if f.item_index is None)
    if foreach and not items and item_index is not None:
        if parent.state in TERMINAL_TASK_STATES:
            raise NotFoundError(f"{task} has no item {item_index}: its foreach has no items")
        raise NotFoundError(f"{task} has no item {item_index} yet: its foreach has not made"
                            " its items")
    if items:
        if item_index is None:
            raise UsageError(f"{task} is a foreach task with {len(items)} item(s): "
                             "pick one with --item N")
        match = [f for f in items if f.item_index == item_index]
        if not match:
            raise NotFoundError(f"{task} has no item {item_index}")
        tr_id, attempts, state_of = match[0].id, match[0].attempts, match[0].state
    else:
        tr_id, attempts, state_of = found[0].id, found[0].attempts, found[0].state
    number = attempt or attempts
    if number == 0 or number > max(attempts, 0):
        # "yet" only while one may still come; --follow waits for it then.
        if state_of in TERMINAL_TASK_STATES and attempts <= 0:
            raise NotFoundError(f"{task} never ran ({state_of}): no attempts")
        if state_of in TERMINAL_TASK_STATES:
            raise NotFoundError(f"{task} has no attempt {number}: it ended ({state_of}) after"
                                f" {attempts}")
        if not follow:
            raise NotFoundError(f"{task} has no attempt {attempt or 1} yet")
    seq = -1
    out = _LogWriter(raw)
    while True:
        with store.read() as tx:
            chunks = ops.read_log(tx, tr_id, max(number, 1), seq)
            state = reports.attempt_state(tx, tr_id, max(number, 1))
            task_state = run_ops.task_run_state(tx, tr_id)
        for piece in chunks:
            out.write(piece.data)
            seq = piece.seq
        if not follow:
            out.close()
            return
        sys.stdout.flush()
        if stdout_gone():
            return  # as `tail -f | head` ends: nobody reads what would follow
        attempt_over = state is not None and state != "running"
        if attempt_over or task_state in TERMINAL_TASK_STATES:
            ended = []
            with store.read() as tx:
                rest = ops.read_log(tx, tr_id, max(number, 1), seq)
                # The task ended: without the attempt waited for?
                if state is None and reports.attempt_state(tx, tr_id, max(number, 1)) is None:
                    ended = [f for f in reports.find_task_runs(tx, run_id, task)
                             if f.id == tr_id]
            for piece in rest:
                out.write(piece.data)
            out.close()
            if ended:
                attempts, state_of = ended[0].attempts, ended[0].state
                raise NotFoundError(
                    f"{task} never ran ({state_of}): no attempts" if attempts <= 0 else
                    f"{task} has no attempt {max(number, 1)}: it ended ({state_of}) after"
                    f" {attempts}")
            return
        time.sleep(0.2)


def _item_named(task: str, item_index: int | None) -> tuple[str, int | None]:
    """`each[3]`, as `status` and the progress lines name an item, is `each --item 3` (no
    task name holds a bracket)."""
    name, bracket, rest = task.partition("[")
    if not bracket or not rest.endswith("]") or not rest[:-1].isascii() \
            or not rest[:-1].isdigit():
        return task, item_index
    index = int(rest[:-1])
    if item_index is not None and item_index != index:
        raise UsageError(f"{task} names item {index}, --item {item_index}: give one of them")
    return name, index


class _LogWriter:
    """Writes log chunks to stdout, escaped unless raw; a CR ending a chunk waits for the
    next one, in case it is half of a CRLF line end. A URL's password the task printed is
    masked either way, as the console masks it."""

    def __init__(self, raw: bool) -> None:
        self.raw = raw
        self.held = ""

    def write(self, data: str) -> None:
        data = mask_url(data)
        if self.raw:
            sys.stdout.write(data)
            return
        data = self.held + data
        self.held = "\r" if data.endswith("\r") else ""
        sys.stdout.write(safe(data[:len(data) - len(self.held)]))

    def close(self) -> None:
        sys.stdout.write(safe(self.held))
        self.held = ""
        sys.stdout.flush()
