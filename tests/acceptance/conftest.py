"""Fixtures for the acceptance scenarios (helpers live in acceptance_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from acceptance_helpers import Taskplan


@pytest.fixture
def tp(tmp_path: Path) -> Iterator[Taskplan]:
    """`taskplan` in this test's own folder, against this test's own SQLite file."""
    runner = Taskplan(home=tmp_path, db_path=tmp_path / "taskplan.db")
    try:
        yield runner
    finally:
        runner.cleanup()
