"""The `taskplan` command."""

from __future__ import annotations

import click

from taskplan import __version__
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
                scheduler_cmd, serve_cmd):
    cli.add_command(command)


def main() -> None:
    cli()
