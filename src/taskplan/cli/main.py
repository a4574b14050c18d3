"""The `taskplan` command."""

from __future__ import annotations

import importlib
import sys

import click

from taskplan import __version__
from taskplan.cli.common import EXIT_BAD_INPUT

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
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db", default=None, metavar="URL", help="Store URL for every command.")
@click.version_option(__version__, prog_name="taskplan")
def cli(db: str | None) -> None:
    """taskplan: jobs as task graphs, every state in a database."""


def main() -> None:
    """Click's own usage errors print a usage block; the contract is a one-line reason, exit 2."""
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
