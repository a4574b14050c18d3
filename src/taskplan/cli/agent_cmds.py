"""`taskplan agent` (a worker daemon) and `taskplan agents` (who is working)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from types import FrameType

import click

from taskplan import shapes
from taskplan.agent import Agent
from taskplan.cli.common import (
    after_hangup,
    db_option,
    get_context,
    handle_errors,
    json_option,
    log_options,
    prepare_daemon,
    print_json,
    setup_logging,
    short_time,
    slot_count,
    stop_signals,
)
from taskplan.cli.execute import DEFAULT_WORKERS
from taskplan.cli.routing_opts import labels_option, parse_labels
from taskplan.errors import UsageError
from taskplan.notify.sender import start_sender
from taskplan.spec.durations import parse_duration
from taskplan.store import console
from taskplan.store.urls import mask_url

log = logging.getLogger("taskplan.agent")
MAX_NAME = 200  # agents.name


@click.command("agent")
@click.option("--slots", type=slot_count(), default=DEFAULT_WORKERS,
              show_default=True, help="Task runs executed at once.")
@click.option("--name", default=None,
              help="Shown by `taskplan agents` (default HOST:PID); at most 200 printable"
                   " characters.")
@click.option("--exit-when-idle", "exit_when_idle", default=None, metavar="DURATION",
              help="Exit after this long with nothing to run (e.g. 30s).")
@labels_option
@log_options
@db_option
@handle_errors
def agent_cmd(slots: int, name: str | None, exit_when_idle: str | None, labels: str | None,
              log_format: str, quiet: bool, verbose: int, db: str | None) -> None:
    """A worker: claims ready task runs of every run in the store and executes them.

    SIGTERM (or SIGHUP: its terminal closed) drains (running tasks finish, nothing new is
    claimed); a second one, or SIGINT, kills running tasks and records them cancelled.
    """
    mine = parse_labels(labels)
    if name is not None and (len(name) > MAX_NAME or not name.isprintable()):
        # The store keeps 200 characters (PostgreSQL refused a longer one with its own error).
        raise UsageError(f"--name: expected at most {MAX_NAME} printable characters, got"
                         f" {len(name)}" + ("" if name.isprintable() else " with a control"
                                             " character"))
    idle: float | None = None
    if exit_when_idle is not None:
        try:
            idle = parse_duration(exit_when_idle)
        except ValueError as exc:
            raise UsageError(f"--exit-when-idle: {exc}") from None
    setup_logging(log_format, quiet, verbose)
    prepare_daemon()
    ctx = get_context(db)
    engine = ctx.engine
    agent = Agent(engine, slots=slots, name=name, root_run_id=None,
                  lease=ctx.settings.lease_seconds, exit_when_idle=idle, labels=mine)
    terms = [0]

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        after_hangup(signum)
        name = signal.Signals(signum).name
        if signum != signal.SIGINT:
            terms[0] += 1
        if signum != signal.SIGINT and terms[0] == 1:
            log.info("%s: draining (running tasks finish, nothing new starts)", name)
            agent.drain()
        else:
            log.info("%s: cancelling running tasks", name)
            agent.cancel_running()

    old = {s: signal.signal(s, on_signal) for s in stop_signals()}
    errors: list[BaseException] = []

    def dispatch() -> None:
        try:
            agent.run()
        except BaseException as exc:  # surfaced on the main thread
            errors.append(exc)

    # The dispatcher runs on its own thread so that signals, which Python delivers to the
    # main thread, are handled at once.
    thread = threading.Thread(target=dispatch, name="taskplan-dispatch", daemon=True)
    log.info("agent %s: %d slot(s), labels %s, on %s", agent.name, slots,
             ",".join(agent.labels), mask_url(engine.store.url))
    thread.start()
    sender = start_sender(engine.store, ctx.settings)
    try:
        while thread.is_alive():
            thread.join(0.5)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        sender.stop()
    if errors:
        raise errors[0]
    log.info("agent %s stopped", agent.name)
    if agent.cancelled:
        # A python task running inline cannot be killed: its thread would keep the process.
        ctx.close()
        from taskplan.logsetup import write_waiting

        write_waiting()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


@click.command("agents")
@click.option("--all", "show_all", is_flag=True, help="Also agents that stopped or were lost.")
@json_option
@db_option
@handle_errors
def agents_cmd(show_all: bool, as_json: bool, db: str | None) -> None:
    """Agents: host, pid, slots, running task runs, last heartbeat, state."""
    ctx = get_context(db)
    now = time.time()
    with ctx.engine.store.read() as tx:
        agents = console.agents(tx, now, include_gone=show_all)
    if as_json:
        print_json([shapes.agent(a) for a in agents])
        return
    if not agents:
        click.echo("no agents" + ("" if show_all else " running (--all shows past ones)"))
        return
    header = ("ID", "NAME", "HOST", "PID", "SLOTS", "RUNNING", "HEARTBEAT", "STATE", "LABELS")
    table = [header] + [
        (str(a.id), a.name, a.host, str(a.pid), str(a.slots), str(a.running),
         f"{short_time(a.heartbeat_at)} ({max(now - a.heartbeat_at, 0):.0f}s ago)", a.state,
         ",".join(a.labels)) for a in agents]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                   .rstrip())
