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


def test_gantt_bars_stay_inside_the_box() -> None:
    """A task of ~0 s at the very end of the forecast (a report after a long extract) was drawn
    one column past the box's right edge: `|      #|` was one character wider than the
    header's box."""
    from taskplan.cli.forecast_cmd import GANTT_WIDTH, gantt
    from taskplan.forecast.plan import RunForecast

    fc = RunForecast(finish_at=103.1, critical_path=["extract", "load", "report"],
                     tasks={"extract": (100.0, 103.1), "load": (103.1, 103.1),
                            "report": (103.1, 103.1)}, basis="")
    lines = gantt(fc, 100.0)
    width = len(lines[0])
    for line in lines:
        assert len(line) == width, line
        box = line[line.index("|") + 1:-1]
        assert len(box) == GANTT_WIDTH and line.endswith("|"), line
    assert lines[-1].endswith(" #|")  # still drawn, in the box's last column
