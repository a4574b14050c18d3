"""An unexpected error in a command is one line and exit 2; `--debug` shows its traceback."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from taskplan.cli.common import handle_errors


@click.command()
@handle_errors
def broken() -> None:
    raise OverflowError("date value out of range")


def test_an_unexpected_error_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKPLAN_DEBUG", raising=False)
    res = CliRunner().invoke(broken)
    assert res.exit_code == 2
    assert res.output == ("taskplan: OverflowError: date value out of range "
                          "(taskplan --debug ... shows where)\n")


def test_debug_shows_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKPLAN_DEBUG", "1")
    res = CliRunner().invoke(broken)
    assert isinstance(res.exception, OverflowError)
