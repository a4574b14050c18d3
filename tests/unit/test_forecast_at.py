"""`taskplan forecast --at HH:MM`: the next such wall time in the job's zone, across
daylight-saving changes as a schedule at that time fires."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from taskplan.cli.forecast_cmd import parse_at
from taskplan.spec import load_job_text

PARIS = load_job_text("job: x\ntimezone: Europe/Paris\ntasks: {a: {shell: x}}\n", "j.yaml", ".")


@pytest.mark.parametrize(("now", "at", "expected"), [
    ("2026-12-04T10:00", "11:00", "2026-12-04T10:00"),  # later today
    ("2026-12-04T10:00", "09:00", "2026-12-05T08:00"),  # passed: tomorrow
    # 2026-10-25: Paris reads 02:00-03:00 twice (CEST, then CET). At the first 02:45 the
    # second 02:30 is still to come, 45 minutes later, not tomorrow.
    ("2026-10-25T00:45", "02:30", "2026-10-25T01:30"),
    ("2026-10-25T00:15", "02:30", "2026-10-25T00:30"),  # before both: the first
    ("2026-10-25T01:45", "02:30", "2026-10-26T01:30"),  # after both: tomorrow
    # 2026-03-29: Paris skips 02:00-03:00; 02:30 is fired at 03:30 CEST, as a schedule does,
    # also when the clocks already read past 02:30.
    ("2026-03-29T00:45", "02:30", "2026-03-29T01:30"),
    ("2026-03-29T01:10", "02:30", "2026-03-29T01:30"),
])
def test_at_a_time_of_day_is_the_next_such_wall_time(now: str, at: str, expected: str) -> None:
    got = parse_at(at, PARIS, "UTC",
                   datetime.fromisoformat(now).replace(tzinfo=UTC))
    assert got.astimezone(UTC).replace(tzinfo=None) == datetime.fromisoformat(expected)
