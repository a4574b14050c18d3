"""The `taskplan` command."""

from __future__ import annotations

import gc
import importlib
import io
import os
import sys
from typing import Any, NoReturn

import click

from taskplan import __version__

# Each command's module is imported only when that command runs: `status` must not pay for
# the agent, the job-file parser and the SQL executors at every start.
COMMANDS: dict[str, str] = {
    "validate": "taskplan.cli.definitions:validate_cmd",
    "apply": "taskplan.cli.definitions:apply_cmd",
    "jobs": "taskplan.cli.definitions:jobs_cmd",
    "run": "taskplan.cli.execute:run_cmd",
    "status": "taskplan.cli.inspect_cmds:status_cmd",
    "runs": "taskplan.cli.inspect_cmds:runs_cmd",
    "logs": "taskplan.cli.inspect_cmds:logs_cmd",
    "stop": "taskplan.cli.control:stop_cmd",
    "cancel": "taskplan.cli.control:cancel_cmd",
    "retry": "taskplan.cli.execute:retry_cmd",
    "purge": "taskplan.cli.control:purge_cmd",
    "next": "taskplan.cli.schedule_cmds:next_cmd",
    "scheduler": "taskplan.cli.schedule_cmds:scheduler_cmd",
    "serve": "taskplan.cli.schedule_cmds:serve_cmd",
    "agent": "taskplan.cli.agent_cmds:agent_cmd",
    "agents": "taskplan.cli.agent_cmds:agents_cmd",
    "pause": "taskplan.cli.job_cmds:pause_cmd",
    "resume": "taskplan.cli.job_cmds:resume_cmd",
    "delete": "taskplan.cli.job_cmds:delete_cmd",
    "forecast": "taskplan.cli.forecast_cmd:forecast_cmd",
    "calendars": "taskplan.cli.calendar_cmds:calendars_cmd",
    "web": "taskplan.cli.web_cmds:web_cmd",
    "backfill": "taskplan.cli.firing_cmds:backfill_cmd",
    "import": "taskplan.cli.import_cmds:import_group",
    "firings": "taskplan.cli.firing_cmds:firings_cmd",
    "notifications": "taskplan.cli.notify_cmds:notifications_cmd",
    "notify": "taskplan.cli.notify_cmds:notify_cmd",
    "connections": "taskplan.cli.job_cmds:connections_cmd",
}


# What `taskplan --help` prints for each command, so that listing the commands imports none of
# them (that would load every module of the package: about a second). A command missing here
# is imported for its own short help instead.
SUMMARIES: dict[str, str] = {
    "validate": "Check job and calendar files; every error with file:line:column.",
    "apply": "Store job and calendar files (a new version only when changed).",
    "jobs": "Jobs, versions, next firing, last run.",
    "run": "Run a job now, in this process with live progress, or detached.",
    "status": "Counts by state; a run's task runs with attempts and times.",
    "runs": "Run history, newest first.",
    "logs": "The output of one attempt of a task.",
    "stop": "Drain a run: running tasks finish, nothing new starts.",
    "cancel": "Cancel a run now, killing its running tasks.",
    "retry": "Re-run in place what did not succeed in a finished run.",
    "purge": "Delete finished runs past retention.",
    "next": "The next firings of a job, and the calendar skips between them.",
    "scheduler": "The schedule and trigger daemon (one leader at a time).",
    "serve": "Scheduler, agent and web console in one process.",
    "agent": "A worker daemon that claims and runs ready tasks.",
    "agents": "Registered agents, their slots and heartbeats.",
    "pause": "Stop schedules and triggers from creating runs of a job.",
    "resume": "Let schedules and triggers create runs of a job again.",
    "delete": "Delete a job (refused while it has active runs).",
    "forecast": "Predicted makespan, text Gantt and critical path of a run.",
    "calendars": "Business calendars, and the days each one closes.",
    "web": "The web console, REST API and /metrics.",
    "backfill": "One run per firing a job's schedules would have made in a range.",
    "import": "Job files from pgAgent's catalog or a crontab.",
    "notifications": "Notification deliveries and their tries; resend one.",
    "notify": "Notification channels: send a test event (notify test CHANNEL).",
    "firings": "A job's latest schedule firings: the run each made, or why it made none.",
    "connections": "The shared connections: taskplan.toml's and applied connections files.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            summary = SUMMARIES.get(name)
            if summary is None:
                command = self.get_command(ctx, name)
                summary = command.get_short_help_str(80) if command is not None else ""
            rows.append((name, summary))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command

    def resolve_command(self, ctx: click.Context, args: list[str]
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and name not in COMMANDS and not name.startswith("-"):
            # Click names no command; every other name taskplan is given gets a guess.
            import difflib

            close = difflib.get_close_matches(name, list(COMMANDS), n=1, cutoff=0.7)
            if close:
                ctx.fail(f"No such command {name!r}. Did you mean {close[0]!r}?")
        found = super().resolve_command(ctx, args)
        if _startup[0]:
            # The command's modules are loaded: what start-up created lives as long as the
            # process, so it is frozen out of every later collection (a daemon's included).
            _startup[0] = False
            gc.freeze()
            gc.enable()
        return found


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db", default=None, metavar="URL", help="Store URL for every command.")
@click.option("--debug", is_flag=True,
              help="Show tracebacks of unexpected errors and taskplan's debug log.")
@click.version_option(__version__, prog_name="taskplan")
def cli(db: str | None, debug: bool) -> None:
    """taskplan: jobs as task graphs, every state in a database."""
    if debug:
        os.environ["TASKPLAN_DEBUG"] = "1"  # read by handle_errors, in this process only
        import logging

        logging.getLogger("taskplan").setLevel(logging.DEBUG)


# True while `main` holds garbage collection off for start-up (never in a process that only
# imports this module, such as the tests).
_startup = [False]


def main() -> None:
    # Start-up creates 15,000-30,000 objects the collector tracks that live as long as the
    # process: module dicts, classes, functions, validators. Collecting garbage among them
    # while they are created, and again at exit, costs a quick command about a tenth of its
    # time (a one-task `run`: 280 -> 249 ms of CPU). Collection
    # is off until the command is loaded (LazyGroup.resolve_command); at exit what is left is
    # frozen, so the interpreter's last collections need not walk it.
    _startup[0] = gc.isenabled()
    gc.disable()
    _outlive_readers()
    try:
        _main()
    finally:
        gc.freeze()


class _ReaderGone(io.FileIO):
    """stdout or stderr, where output nobody reads any more (`2>&1 | head -1`) is dropped
    instead of raising: a failed write would otherwise end the command half-way, with an exit
    code that says nothing of what it did (0 for a file that failed validation). Output that
    cannot be written for another reason (a full disk under `run > run.log`) is dropped too,
    after one line on stderr: `taskplan run` then still sees its run to the end."""

    gone = False  # set once the reader has gone: commands that only print may stop then

    def write(self, data: Any) -> int:
        try:
            return super().write(data)
        except OSError as exc:
            if not isinstance(exc, BrokenPipeError):
                self._say_lost(exc)
            self.gone = True
            # Later writes (the interpreter's last flush too) go to /dev/null and cannot fail.
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self.fileno())
            os.close(null)
            return memoryview(data).nbytes

    def _say_lost(self, exc: OSError) -> None:
        name = "standard output" if self.fileno() == 1 else "standard error"
        line = (f"taskplan: cannot write to {name} ({exc.strerror or exc}): the rest of it"
                " is dropped\n")
        if self.fileno() != 2:
            try:
                sys.stderr.flush()
                os.write(2, line.encode())
            except OSError:
                pass  # stderr cannot take it either: nothing is left to say it with


def _outlive_readers() -> None:
    """sys.stdout and sys.stderr written through _ReaderGone, as they were otherwise. A
    standard stream closed at start (`taskplan run job.yaml >&-`) is opened on /dev/null
    first: Python leaves it None (which printing fails on), and the next file opened (the
    store) would take its descriptor."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            if fd == 0:
                sys.stdin = open(fd, encoding="utf-8", closefd=False)  # noqa: SIM115
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None:  # closed at start, on /dev/null now
            fd = 1 if name == "stdout" else 2
            setattr(sys, name, io.TextIOWrapper(
                io.BufferedWriter(_ReaderGone(fd, "wb", closefd=False)), encoding="utf-8",
                errors="backslashreplace", line_buffering=False))
            continue
        if not isinstance(stream, io.TextIOWrapper):
            continue  # replaced already (a test's capture): left as it is
        try:
            fd = stream.fileno()
            stream.flush()
        except (OSError, ValueError):
            continue  # closed: nothing will be written there anyway
        raw = _ReaderGone(fd, "wb", closefd=False)
        setattr(sys, name, io.TextIOWrapper(
            io.BufferedWriter(raw), encoding=stream.encoding, errors=stream.errors,
            line_buffering=stream.line_buffering, write_through=stream.write_through))


def _main() -> None:
    """Click's own usage errors print a usage block; the contract is a one-line reason, exit 2."""
    for arg in sys.argv[1:]:
        # Bytes that are not UTF-8 reach Python as lone surrogates, which no store, log or
        # JSON output can hold: `run caf\xe9` died with a UnicodeEncodeError.
        if any("\udc80" <= ch <= "\udcff" for ch in arg):
            click.echo(f"taskplan: argument {arg!r} is not UTF-8 text (names, paths and"
                       " values must be)", err=True)
            _bad_input()
    try:
        code = cli.main(standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.format_message(), err=True)
        _bad_input()
    except click.UsageError as exc:
        path = exc.ctx.command_path if exc.ctx else "taskplan"
        click.echo(f"{path}: {exc.format_message()} (see {path} --help)", err=True)
        _bad_input()
    except click.ClickException as exc:
        click.echo(f"taskplan: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        # Ctrl-C (click's Abort for a KeyboardInterrupt): how `logs --follow` is ended, as
        # `tail -f` is. 1 would say a run failed; 130 is the shells' 128 + SIGINT. (`run`
        # handles SIGINT itself: it cancels its run and exits with its outcome.)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


EXIT_INTERRUPTED = 130


def _bad_input() -> NoReturn:
    # What every command shares (settings, the store's URLs, exit codes) is loaded by the
    # command that runs: `--help` and `--version` need none of it.
    from taskplan.cli.common import EXIT_BAD_INPUT

    sys.exit(EXIT_BAD_INPUT)
