"""`taskplan run` and `taskplan retry`: execute a run in this process with N slots."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from taskplan.agent import Agent, agent_labels
from taskplan.cli.common import (
    EXIT_OK,
    EXIT_RUN_FAILED,
    after_hangup,
    db_option,
    duration,
    get_context,
    handle_errors,
    parse_params,
    parse_run_id,
    share_connections,
    slot_count,
    stop_signals,
)
from taskplan.cli.progress import PipeProgress, RichProgress
from taskplan.cli.routing_opts import labels_option, parse_labels
from taskplan.cli.terminal_text import safe_line
from taskplan.config import Settings
from taskplan.engine import Engine
from taskplan.errors import ConflictError, NotFoundError, StoreUnavailableError, UsageError
from taskplan.model import TERMINAL_RUN_STATES, JobSpec, TaskSpec
from taskplan.notify.sender import Sender, start_sender
from taskplan.rules import declared_params
from taskplan.store import reports
from taskplan.store.db import retrying

if TYPE_CHECKING:
    from taskplan.engine.deadlines import DeadlineWatch

DEFAULT_WORKERS = max(2, min(8, os.cpu_count() or 2))
# How long `taskplan run` waits at the end for its notifications' first try.
FLUSH_SECONDS = 15.0
# After Ctrl-C, how long the run's attempts wait for its cancel to reach the store (which
# kills them) before this process kills them anyway (a store away, or slow).
KILL_WITHIN = 2.0


def load_if_file(job_or_file: str) -> JobSpec | None:
    """A path to a job file is loaded (and fully validated); anything else is a job name."""
    path = Path(job_or_file)
    if path.is_dir():
        # No job file, so a job's name: `run nightly` beside the folder nightly/ (the layout
        # of examples/) was refused though the job was applied. A folder that names no job
        # is said to be one (not_a_job).
        return None
    # Anything else that exists (a named pipe, a device) is a file given by mistake: the
    # reader refuses it with its reason rather than it being taken for a job's name.
    # lexists: a link that loops (or leads nowhere) is there, and the reader says what it is.
    if path.suffix in (".yaml", ".yml") or os.path.lexists(path):
        if not os.path.lexists(path):
            raise UsageError(f"{job_or_file}: no such job file")
        share_connections(get_context(None))
        from taskplan.spec import load_job_file  # the parser: for a file only (not `agents`)

        return load_job_file(path)
    return None


def resolve_version(engine: Engine, job_or_file: str, spec: JobSpec | None = None) -> int:
    """The version to run: a job file is applied first (a new version only if it changed)."""
    spec = spec or load_if_file(job_or_file)
    if spec is not None:
        version_id, _, _ = engine.apply(spec)
        return version_id
    try:
        return engine.current_version(job_or_file)
    except NotFoundError as exc:
        raise not_a_job(job_or_file, NotFoundError(f"{exc}{file_hint(job_or_file)}")) from None


def not_a_job(name: str, exc: Exception) -> Exception:
    """What to say when `name` is no applied job: that it is a folder, if it is one."""
    if Path(name).is_dir():
        return UsageError(f"{name}: a folder, not a job file (run takes one job file or the"
                          " name of an applied job)")
    return exc


def file_hint(name: str) -> str:
    """`run nightly` next to nightly.yaml: the user meant the file."""
    for ext in (".yaml", ".yml"):
        if Path(name + ext).is_file():
            return f"; to run the job file, say {name}{ext}"
    return ""


@click.command("run")
@click.argument("job_or_file")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Override a job parameter (repeatable).")
@click.option("--workers", type=slot_count(), default=DEFAULT_WORKERS,
              show_default=True, help="Slots that execute tasks in parallel.")
@click.option("--detach", is_flag=True, help="Create the run, print its id and return.")
@click.option("--distributed", is_flag=True,
              help="Share the run's tasks with the agents alive (by default a foreground run"
                   " executes every task in this process).")
@labels_option
@db_option
@handle_errors
def run_cmd(job_or_file: str, params: tuple[str, ...], workers: int, detach: bool,
            distributed: bool, labels: str | None, db: str | None) -> None:
    """Start a run of a job (a name, or a job file that is applied first)."""
    ctx = get_context(db)
    overrides = parse_params(params)
    mine = parse_labels(labels)
    refuse_detached_routing(detach, distributed, labels, "run")
    spec = load_if_file(job_or_file)  # a bad file must fail before the store is touched
    if spec is not None:
        from taskplan.timing import calendar_names

        if calendar_names(spec):  # as apply: before the store is made or written
            from taskplan.cli.definitions import refuse_unknown_calendars  # (the parser's)

            refuse_unknown_calendars(ctx, spec)
        overrides = declared_params(spec, overrides)
        if not detach and not distributed:
            # Before the file is applied (and the store made): a refused run stores nothing.
            # (The tasks of the jobs its job tasks start are checked once the store is read.)
            refuse_lacking_labels([(t.name, t) for t in spec.tasks],
                                  agent_labels(mine, socket.gethostname()))
    ctx.create = spec is not None  # a job name needs a store that already holds it
    try:
        engine = ctx.engine
    except UsageError as exc:
        raise not_a_job(job_or_file, UsageError(
            f"no job named {job_or_file!r}: {exc}{file_hint(job_or_file)}")) from None
    version_id = resolve_version(engine, job_or_file, spec)
    if spec is None:  # a job name: its params are known only now (a file's were checked)
        overrides = declared_params(engine.job_spec(version_id), overrides)
    if detach:
        run_id = engine.create_run(version_id, overrides)
        click.echo(run_id)
        warn_unserved(engine, version_id, run_id)
        return
    agent = foreground_agent(engine, version_id, workers, ctx.settings.lease_seconds, mine,
                             distributed)
    try:
        run_id = engine.create_run(version_id, overrides,
                                   pin_agent_id=None if distributed else agent.register())
    except BaseException:
        agent.sign_off()
        raise
    if distributed:
        warn_unserved(engine, version_id, run_id, own_labels=agent.labels)
    sys.exit(execute(engine, run_id, workers, ctx.settings.lease_seconds, agent=agent,
                     settings=ctx.settings))


def foreground_agent(engine: Engine, version_id: int, workers: int, lease: float,
                     labels: tuple[str, ...], distributed: bool) -> Agent:
    """The agent of a foreground run or retry. Unless `distributed`, the run is pinned to it
    (no other agent claims its tasks while it lives), so it must have every label the job's
    tasks need: otherwise this is a usage error, before anything is written."""
    agent = Agent(engine, slots=workers, lease=lease, labels=labels)
    job = engine.job_spec(version_id)
    if not distributed:
        refuse_lacking_labels(_tasks_of_run(engine, job), agent.labels)
    agent.prepare(job)
    return agent


def refuse_lacking_labels(tasks: list[tuple[str, TaskSpec]], have: tuple[str, ...]) -> None:
    """A usage error if a task needs an agent label that a foreground agent with `have`
    lacks: its pinned run would wait for ever."""
    lacking = {name: sorted(set(t.agent_labels) - set(have))
               for name, t in tasks if not set(t.agent_labels) <= set(have)}
    if lacking:
        name, need = next(iter(lacking.items()))
        more = f" (and {len(lacking) - 1} more task(s))" if len(lacking) > 1 else ""
        raise UsageError(
            f"task {name}{more} needs agent label(s) {', '.join(need)}, which this process"
            f" lacks (it has {', '.join(have)}): give them with --labels, or use"
            " --distributed to let agents that have them run it")


def _tasks_of_run(engine: Engine, job: JobSpec) -> list[tuple[str, TaskSpec]]:
    """The job's tasks, and those of the jobs its `job:` tasks start (their current versions,
    as a child run takes), with the name to say: a child run is pinned to its parent's agent,
    so a child task needing a label this process lacks waited there forever, unsaid."""
    found = [(t.name, t) for t in job.tasks]
    seen = {job.name}
    todo = [str(t.command) for t in job.tasks if t.kind == "job"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            child = engine.job_spec(engine.current_version(name))
        except NotFoundError:
            continue  # the job task fails when it starts, saying so
        found += [(f"{t.name} of job {name}", t) for t in child.tasks]
        todo += [str(t.command) for t in child.tasks if t.kind == "job"]
    return found


def refuse_detached_routing(detach: bool, distributed: bool, labels: str | None,
                            what: str) -> None:
    """--distributed and --labels shape this process's own agent, which --detach has none of."""
    if detach and (distributed or labels is not None):
        raise UsageError("--detach leaves the run to agents: --distributed and --labels"
                         f" apply to a foreground {what} only")


def warn_unserved(engine: Engine, version_id: int, run_id: int,
                  own_labels: tuple[str, ...] | None = None) -> None:
    """`--detach` (and `--distributed`, whose own agent has `own_labels`): say on stderr when
    no live agent can take (some of) the run's work."""
    from taskplan.engine import waiting  # (with the routing reads: for these flags only)

    if engine.run_state(run_id) in TERMINAL_RUN_STATES:
        return  # ended as it was made (every task disabled): nothing waits for an agent
    for why in waiting.unserved(engine.store, engine.job_spec(version_id),
                                own_labels=own_labels):
        click.echo(f"warning: {why}: run {run_id} waits until one starts"
                   " (taskplan agent [--labels ...], or taskplan serve)", err=True)


@click.command("retry")
@click.argument("run")
@click.option("--task", default=None, help="Only this task and what depends on it.")
@click.option("--workers", type=slot_count(), default=DEFAULT_WORKERS,
              show_default=True, help="Slots that execute the retried tasks in this process.")
@click.option("--detach", is_flag=True, help="Reset the run and return; agents execute it.")
@click.option("--latest", is_flag=True,
              help="Rerun on the job's current version instead of the one the run pinned.")
@click.option("--distributed", is_flag=True,
              help="Share the retried tasks with the agents alive.")
@labels_option
@db_option
@handle_errors
def retry_cmd(run: str, task: str | None, workers: int, detach: bool, latest: bool,
              distributed: bool, labels: str | None, db: str | None) -> None:
    """Rerun in place every task run of a finished run that did not succeed."""
    ctx = get_context(db)
    run_id = parse_run_id(run)
    mine = parse_labels(labels)
    refuse_detached_routing(detach, distributed, labels, "retry")
    engine = ctx.engine
    stale = engine.stale_pin(run_id)
    agent = None
    if not detach:
        # Refused before the run is pinned to this process: a retry of a run still going
        # (`run 3 is running`) moved its pin off the process executing it, and idle agents
        # then took its tasks.
        state = engine.run_state(run_id)
        if state not in TERMINAL_RUN_STATES:
            raise ConflictError(f"run {run_id} is {state}; retry takes a finished run")
        agent = foreground_agent(engine, engine.run_meta(run_id).version_id, workers,
                                 ctx.settings.lease_seconds, mine, distributed)
        # Pinned before its task runs are reset, so no other agent claims one meanwhile.
        engine.pin_run(run_id, None if distributed else agent.register())
    try:
        count = engine.retry_run(run_id, task, latest=latest)
    except BaseException:
        if agent is not None:
            agent.sign_off()
        raise
    if stale is not None:
        job, pinned, current = stale
        click.echo(f"run {run_id}: retried on {job} v{current} (was v{pinned})" if latest else
                   f"note: run {run_id} reruns {job} v{pinned}, as it pinned; v{current} is"
                   f" current (retry --latest reruns on v{current})", err=True)
    if agent is None:
        click.echo(f"run {run_id}: {count} task run(s) reset")
        warn_unserved(engine, engine.run_meta(run_id).version_id, run_id)
        return
    # Progress shows what this process executes: this retry's attempts only.
    sys.exit(execute(engine, run_id, workers, ctx.settings.lease_seconds, agent=agent,
                     settings=ctx.settings))


def execute(engine: Engine, run_id: int, workers: int, lease: float,
            agent: Agent | None = None, settings: Settings | None = None) -> int:
    """Execute a run with an in-process agent (`agent`, else a new one) and live progress;
    returns the exit code. With `settings`, this process also sends notifications (and
    waits, briefly, for the first try of its run's ones before it returns)."""
    store = engine.store
    with store.read() as tx:
        info = reports.run_info(tx, run_id)
    assert info is not None
    display: RichProgress | PipeProgress = (
        RichProgress(store, run_id, info.job) if sys.stdout.isatty()
        else PipeProgress(run_id, store))
    if agent is None:
        agent = Agent(engine, slots=workers, lease=lease)
    # Claims are scoped by top run: a child run retried on its own belongs to its parent's.
    agent.root_run_id = engine.run_meta(run_id).root_run_id
    if isinstance(display, PipeProgress):
        agent.on_step = display.observe
    state_box: dict[str, str] = {}
    last_check = [0.0]

    def finished(a: Agent) -> bool:
        if run_id in a.finished_runs:
            return True
        now = time.monotonic()
        if now - last_check[0] < 0.2:
            return False
        last_check[0] = now
        return engine.run_state(run_id) in TERMINAL_RUN_STATES

    interrupts = [0]

    def cancel_then_kill() -> None:
        # The run is cancelled before its attempts are killed: killed first, they were often
        # recorded first ("cancelled: agent stopped"), so the tasks after them ended
        # upstream_failed as after a failure, and the run failed. The cancel kills them itself;
        # the kill that follows (at once, or after KILL_WITHIN while the store is away) only
        # stops this agent.
        cancelled = threading.Event()

        def cancel() -> None:
            cancel_quietly(engine, run_id)
            cancelled.set()

        threading.Thread(target=cancel, name="taskplan-cancel", daemon=True).start()
        cancelled.wait(KILL_WITHIN)
        agent.cancel_running()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        after_hangup(signum)
        interrupts[0] += 1
        if interrupts[0] == 1:
            threading.Thread(target=cancel_then_kill, daemon=True).start()
        else:
            agent.cancel_running()  # a second Ctrl-C: now, whatever the store does

    old = {s: signal.signal(s, on_signal) for s in stop_signals()}
    errors: list[BaseException] = []

    def dispatch() -> None:
        try:
            agent.run(until=finished)
        except BaseException as exc:  # surfaced on the main thread below
            errors.append(exc)

    started = time.monotonic()
    if settings is not None:
        # This run's failed tries are listed once, after its summary: the sender's own lines
        # would repeat them, and name other runs' too (it may hold the sender lease).
        logging.getLogger("taskplan.notify").setLevel(logging.ERROR)
    sender = start_sender(store, settings, root=run_id) if settings is not None else None
    thread = threading.Thread(target=dispatch, name="taskplan-dispatch", daemon=True)
    watch = deadline_watch(engine, run_id)
    try:
        with display:
            thread.start()
            while thread.is_alive():
                thread.join(0.25)
                try:
                    display.update()
                    if watch is not None:
                        watch.poll()
                except StoreUnavailableError:
                    pass  # the agent rides out the outage; the display catches up after
            if isinstance(display, PipeProgress) and not errors:
                with contextlib.suppress(StoreUnavailableError):
                    if (state := engine.run_state(run_id)) in TERMINAL_RUN_STATES:
                        display.run_ended(state)
    finally:
        elapsed = time.monotonic() - started  # the run's, not the notifications' wait
        for sig, previous in old.items():
            signal.signal(sig, previous)
        if sender is not None:
            _flush_notifications(sender, run_id)
    if errors:
        raise errors[0]
    state_box["state"] = retrying(lambda: engine.run_state(run_id), what="reading the outcome",
                                  give_up_after=60.0)
    retrying(lambda: print_summary(engine, run_id, elapsed),
             what="printing the summary", give_up_after=60.0)
    return EXIT_OK if state_box["state"] == "succeeded" else EXIT_RUN_FAILED


def deadline_watch(engine: Engine, run_id: int) -> DeadlineWatch | None:
    """A foreground run of a job with a deadline watches it itself: no scheduler may run."""
    version_id = engine.run_meta(run_id).version_id
    if engine.job_spec(version_id).deadline is None:
        return None
    from taskplan.engine.deadlines import DeadlineWatch  # with the forecaster: only if needed

    return DeadlineWatch(engine, default_tz=engine.default_tz, only=run_id)


def cancel_quietly(engine: Engine, run_id: int, patience: float | None = None) -> None:
    """Ctrl-C cancels the run; it may have ended meanwhile, which needs no message. A store
    that is away is waited for `patience` seconds (by default as long as the stopping agent
    waits for it), so a short outage still ends the run cancelled; past that, one line."""
    from taskplan.agent import GIVE_UP_WHEN_CANCELLED
    from taskplan.store.db import Backoff

    backoff = Backoff()
    give_up_at = time.monotonic() + (GIVE_UP_WHEN_CANCELLED if patience is None else patience)
    while True:
        try:
            engine.cancel_run(run_id)
            return
        except ConflictError:
            return
        except StoreUnavailableError as exc:
            if time.monotonic() >= give_up_at:
                click.echo(f"taskplan: run {run_id} not cancelled: {exc}", err=True)
                return
            time.sleep(backoff.next())


def _flush_notifications(sender: Sender, run_id: int) -> None:
    """The run's notifications get their first try before the process exits (retries, if
    any, are left to agents, schedulers and `serve`)."""
    from taskplan.store import notify_ops

    try:
        left = sender.flush(run_id, FLUSH_SECONDS)
        sender.stop()
        with sender.store.read() as tx:
            mine = notify_ops.list_notifications(tx, run_id=run_id)
    except StoreUnavailableError:
        sender.stop()
        return
    failed = [n for n in mine if n.state != "delivered" and n.last_error]
    for n in failed:
        click.echo(f"taskplan: notification {n.id} ({n.event}, {n.channel.describe()}) failed:"
                   f" {n.last_error}", err=True)
    # Pending also when stop() cut a try short (a receiver slower than the wait): its
    # outcome is not known, and another sender tries it again.
    if left or any(n.state == "pending" for n in mine):
        click.echo(f"taskplan: notification(s) of run {run_id} not sent yet; a running agent,"
                   " scheduler or serve sends them (taskplan notifications)", err=True)


def print_summary(engine: Engine, run_id: int, elapsed: float) -> None:
    with engine.store.read() as tx:
        info = reports.run_info(tx, run_id)
        counts = reports.state_counts(tx, run_id)
        failed = reports.failed_task_runs(tx, run_id)
    assert info is not None
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    click.echo(f"run {run_id} ({info.job} v{info.version}) {info.state} in "
               f"{duration(0.0, elapsed)}: {parts}")
    for t in failed:
        name = f"{t.name}[{t.item_index}]" if t.item_index is not None else t.name
        reason = (f": {safe_line(t.error)}" if t.error
                  else f": items: {t.failed_items} failed" if t.failed_items else "")
        click.echo(f"  failed: {name} after {t.attempts} attempt(s){reason}")
