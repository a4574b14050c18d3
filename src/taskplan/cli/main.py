"""The `taskplan` command."""

from __future__ import annotations

import sys

import click

from taskplan import __version__
from taskplan.cli.agent_cmds import agent_cmd, agents_cmd
from taskplan.cli.common import EXIT_BAD_INPUT
from taskplan.cli.control import cancel_cmd, purge_cmd, stop_cmd
from taskplan.cli.definitions import apply_cmd, jobs_cmd, validate_cmd
from taskplan.cli.execute import retry_cmd, run_cmd
from taskplan.cli.inspect_cmds import logs_cmd, runs_cmd, status_cmd
from taskplan.cli.schedule_cmds import next_cmd, scheduler_cmd, serve_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db", default=None, metavar="URL", help="Store URL for every command.")
@click.version_option(__version__, prog_name="taskplan")
def cli(db: str | None) -> None:
    """taskplan: jobs as task graphs, every state in a database."""


for command in (validate_cmd, apply_cmd, jobs_cmd, run_cmd, status_cmd, runs_cmd, logs_cmd,
                stop_cmd, cancel_cmd, retry_cmd, purge_cmd, next_cmd,
                scheduler_cmd, serve_cmd, agent_cmd, agents_cmd):
    cli.add_command(command)


def main() -> None:
    """Click's own usage errors print a usage block; SPEC.md wants a one-line reason, exit 2."""
    try:
        code = cli.main(standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.format_message(), err=True)
        sys.exit(EXIT_BAD_INPUT)
    except click.UsageError as exc:
        path = exc.ctx.command_path if exc.ctx else "taskplan"
        click.echo(f"{path}: {exc.format_message()} (see {path} --help)", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except click.ClickException as exc:
        click.echo(f"taskplan: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
