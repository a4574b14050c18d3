"""What checking one file gives (its job, calendar or connections, and every problem), and
which kind of file a document is: shared by the loader and the checking, without the schema."""

from __future__ import annotations

from typing import Any

from taskplan.dataclass import dataclass
from taskplan.errors import Problem
from taskplan.model import BusinessCalendar, JobSpec
from taskplan.spec.source import Positions


@dataclass
class Outcome:
    spec: JobSpec | None
    problems: list[Problem]
    data: Any
    positions: Positions
    calendar: BusinessCalendar | None = None
    connections: dict[str, str] | None = None  # a connections file's name -> URL


def is_calendar_file(data: Any) -> bool:
    """A file with a top-level `calendar:` and no `job:` defines a business calendar."""
    return isinstance(data, dict) and "calendar" in data and "job" not in data


def is_connections_file(data: Any) -> bool:
    """A file with a top-level `connections:` and no `job:` (nor `calendar:`)."""
    return (isinstance(data, dict) and "connections" in data and "job" not in data
            and "calendar" not in data)
