"""`next`, `scheduler` and `serve`: schedules as the user sees them, and the daemons behind them."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import datetime
from types import FrameType
from typing import Any

import click

from taskplan import shapes
from taskplan.cli import web_cmds
from taskplan.cli.common import (
    Seconds,
    after_hangup,
    db_option,
    get_context,
    handle_errors,
    json_option,
    log_options,
    prepare_daemon,
    print_json,
    setup_logging,
    slot_count,
    stop_signals,
)
from taskplan.cli.execute import DEFAULT_WORKERS, load_if_file
from taskplan.cli.routing_opts import labels_option, parse_labels
from taskplan.errors import NoStoreError, UsageError
from taskplan.model import JobSpec
from taskplan.timing import calendar_names, job_timezone, next_with_skips, without_schedules

log = logging.getLogger("taskplan.serve")


def job_spec_of(ctx: Any, job_or_file: str) -> JobSpec:
    """A job file is read (not applied); anything else names an applied job."""
    spec = load_if_file(job_or_file)
    if spec is not None:
        return spec
    try:
        engine = ctx.engine
    except NoStoreError as exc:
        raise NoStoreError(f"no job named {job_or_file!r}: {exc}") from None
    return engine.job_spec(engine.current_version(job_or_file))  # type: ignore[no-any-return]


def job_calendars(ctx: Any, job: JobSpec) -> dict[str, Any] | None:
    """The closed days of the business calendars the job names, read from the store only when
    it names any (a job file without calendars needs no store)."""
    if not calendar_names(job):
        return None
    return ctx.engine.closed_days().closed  # type: ignore[no-any-return]


def _job_paused(ctx: Any, name: str) -> bool:
    """Whether the applied job is paused (`taskplan pause JOB`)."""
    from taskplan.store import job_admin, sched_ops

    with ctx.engine.store.read() as tx:
        found = job_admin.live_job(tx, name)
        return found is not None and sched_ops.job_paused(tx, found.job_id)


def parse_after(text: str, job: JobSpec, default_tz: str) -> datetime:
    """An ISO 8601 instant; without an offset it is a wall time in the job's zone."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--after expects an ISO 8601 date or time such as 2026-03-29T01:00+01:00,"
            f" got {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=job_timezone(job, default_tz))
    return value


# Each firing is computed, and cron expressions can be sparse: a million would take minutes.
# 100,000 is more than two years of firings every 15 minutes.
MAX_FIRINGS = 100_000


@click.command("next")
@click.argument("job_or_file")
@click.option("-n", "count", type=click.IntRange(1, MAX_FIRINGS), default=10,
              show_default=True, help=f"How many firings to print (at most {MAX_FIRINGS:,}).")
@click.option("--after", default=None, metavar="ISO",
              help="Start after this instant (default: now); no offset = the job's zone.")
@db_option
@json_option
@handle_errors
def next_cmd(job_or_file: str, count: int, after: str | None, db: str | None,
             as_json: bool) -> None:
    """The next firings of a job (a name, or a job file that is read, not applied)."""
    ctx = get_context(db)
    job = load_if_file(job_or_file)
    paused: list[str] = []
    job_paused = False
    if job is None:  # an applied job: the schedules paused one by one make no runs
        job = job_spec_of(ctx, job_or_file)
        keys = ctx.engine.paused_schedules(job.name)
        job_paused = _job_paused(ctx, job.name)
        if job_paused:  # nor does any schedule of a paused job
            keys = {s.key for s in job.schedules}
        paused = [s.key for s in job.schedules if s.key in keys]
        job = without_schedules(job, keys)
    default_tz = ctx.settings.timezone
    start = (parse_after(after, job, default_tz) if after is not None
             else datetime.now().astimezone())
    try:
        entries = next_with_skips(job, start, count, default_tz=default_tz,
                                  calendars=job_calendars(ctx, job))
    except ValueError as exc:
        raise UsageError(f"{job.name}: {exc}") from None
    out = shapes.next_timeline(entries)
    if as_json:
        print_json(out)
        return
    if job_paused:
        click.echo(f"{job.name} is paused: its schedules make no runs (taskplan resume"
                   f" {job.name})")
        return
    for key in paused:
        click.echo(f"schedule {key} is paused: its firings are left out (taskplan resume "
                   f"{job.name} --schedule {key})")
    if not job.schedules:
        click.echo(f"{job.name} has no schedules" if not paused
                   else f"{job.name}: every schedule is paused")
        return
    if not job.enabled:
        click.echo(f"{job.name} is disabled (enabled: false): no scheduled runs")
        return
    if not out:
        click.echo(f"{job.name}: no firings after {start.isoformat()}")
        return
    for at, s, why in entries:
        if why is not None:
            click.echo(f"{at.date().isoformat()} {at.strftime('%H:%M')} skipped: {why}"
                       f"  (schedule {s.key})")
            continue
        offset = at.strftime("%z")
        label = f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"
        click.echo(f"{at.isoformat():<32} {at.tzname() or '':<6} {label:<10} schedule {s.key}")


def _on_signals(handler: Callable[[str], None]) -> Callable[[], None]:
    """Call `handler` with the signal's name on SIGINT/SIGTERM/SIGHUP (`stop_signals`);
    returns a function restoring the old handlers."""
    def on_signal(signum: int, _frame: FrameType | None) -> None:
        after_hangup(signum)
        handler(signal.Signals(signum).name)

    old = {s: signal.signal(s, on_signal) for s in stop_signals()}

    def restore() -> None:
        for sig, previous in old.items():
            signal.signal(sig, previous)

    return restore


# The scheduler's leader lease: at least 0.5 s (it is renewed every third of it), at most a day
# (a standby would wait that long for a dead leader's lease to end).
LEASE = Seconds(0.5, 86400.0)


@click.command("scheduler")
@click.option("--lease", type=LEASE, default=6.0, show_default=True,
              help="Seconds the leader lease lasts; a standby takes over within about that.")
@log_options
@db_option
@handle_errors
def scheduler_cmd(lease: float, log_format: str, quiet: bool, verbose: int,
                  db: str | None) -> None:
    """The schedule daemon: one leader at a time creates runs when schedules fire."""
    setup_logging(log_format, quiet, verbose)
    from taskplan.notify.sender import start_sender
    from taskplan.scheduler import Scheduler
    prepare_daemon()
    ctx = get_context(db)
    scheduler = Scheduler(ctx.engine, lease=lease, default_tz=ctx.settings.timezone)

    def on_stop(name: str) -> None:
        logging.getLogger("taskplan.scheduler").info("%s: stopping", name)
        scheduler.stop()

    restore = _on_signals(on_stop)
    sender = start_sender(ctx.engine.store, ctx.settings)
    try:
        scheduler.run()
    finally:
        restore()
        sender.stop()


@click.command("serve")
@click.option("--slots", type=slot_count(), default=DEFAULT_WORKERS, show_default=True,
              help="Slots of the agent.")
@click.option("--lease", type=LEASE, default=6.0, show_default=True,
              help="Seconds the scheduler's leader lease lasts.")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Also serve the web console and API on this port.")
@click.option("--host", default="127.0.0.1", show_default=True, help=web_cmds.HOST_HELP)
@click.option("--token-file", default=None, metavar="FILE", help=web_cmds.TOKEN_HELP)
@labels_option
@log_options
@db_option
@handle_errors
def serve_cmd(slots: int, lease: float, port: int | None, host: str, token_file: str | None,
              labels: str | None, log_format: str, quiet: bool, verbose: int,
              db: str | None) -> None:
    """Scheduler and agent in one process; with --port, the web console too.

    SIGINT, SIGTERM or SIGHUP drains (running tasks finish, nothing new starts); a second one
    kills running tasks and records them cancelled.
    """
    from taskplan.agent import Agent
    from taskplan.scheduler import Scheduler

    setup_logging(log_format, quiet, verbose)
    if port is None:
        # Without --port there is no console: a token or an address given for it (--port
        # forgotten) would otherwise serve nothing without a word.
        source = click.get_current_context().get_parameter_source("host")
        given = ("--token-file" if token_file is not None else
                 "--host" if source is click.core.ParameterSource.COMMANDLINE else None)
        if given:
            raise UsageError(f"{given} configures the web console, which serve starts only"
                             " with --port P")
    web = web_cmds.listen(host, port, token_file) if port is not None else None
    prepare_daemon()
    ctx = get_context(db)
    engine = ctx.engine
    scheduler = Scheduler(engine, lease=lease, default_tz=ctx.settings.timezone)
    agent = Agent(engine, slots=slots, lease=ctx.settings.lease_seconds,
                  labels=parse_labels(labels))
    server = None
    if web is not None:
        from taskplan.web.server import make_server, start_in_thread, url_of

        server = make_server(engine, web[0], timezone=ctx.settings.timezone, token=web[1])
        start_in_thread(server, web[0])
        url = url_of(web[0])
        line = f"taskplan serve: console at {url}"
        if log_format == "json":  # one JSON object per line, as every other line of stderr
            from taskplan.logsetup import JsonFormatter

            line = JsonFormatter().format(logging.makeLogRecord(
                {"name": log.name, "levelno": logging.INFO, "levelname": "INFO", "msg": line,
                 "url": url}))
        click.echo(line, err=True)
    errors: list[BaseException] = []

    def guarded(fn: Callable[[], None]) -> Callable[[], None]:
        def body() -> None:
            try:
                fn()
            except BaseException as exc:  # re-raised on the main thread
                errors.append(exc)
                scheduler.stop()
                agent.drain()
        return body

    signals = [0]

    def shutdown(name: str) -> None:
        # The first signal drains (running tasks finish); a second one kills them now. Each is
        # logged as the agent's are: an operator waiting on a drain sees it was heard.
        signals[0] += 1
        scheduler.stop()
        if signals[0] == 1:
            log.info("%s: draining (running tasks finish, nothing new starts)", name)
            agent.drain()
        else:
            log.info("%s: cancelling running tasks", name)
            agent.cancel_running()
        if server is not None:
            server.should_exit = True

    from taskplan.notify.sender import start_sender

    restore = _on_signals(shutdown)
    sender = start_sender(engine.store, ctx.settings)
    threads = [threading.Thread(target=guarded(scheduler.run), name="taskplan-scheduler",
                                daemon=True),
               threading.Thread(target=guarded(agent.run), name="taskplan-agent", daemon=True)]
    try:
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.25)
    finally:
        restore()
        sender.stop()
    if errors:
        raise errors[0]
