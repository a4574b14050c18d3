"""Instants at the ends of the calendar: `next` answers, other commands refuse in one line
naming the option."""

from __future__ import annotations

from acceptance_helpers import Taskplan

JOB = """
    job: h
    schedules:
      - cron: "*/5 * * * *"
    tasks:
      a: {shell: "true"}
"""


def test_next_near_the_last_representable_instant(tp: Taskplan) -> None:
    tp.write("h.yaml", JOB)
    res = tp.ok("next", "h.yaml", "--after", "9999-12-31T23:59")
    assert "no firings after" in res.out
    last = tp.ok("next", "h.yaml", "-n", "3", "--after", "9999-12-31T23:50", "--json").json()
    assert [e["at"] for e in last] == ["9999-12-31T23:55:00+00:00"]
    first = tp.ok("next", "h.yaml", "-n", "1", "--after", "0001-01-01T00:00", "--json").json()
    assert first[0]["at"].startswith("0002-01-01T00:05:00")
    # A wall time whose zone takes it past an end in UTC: before year 1 east of Greenwich,
    # after year 9999 west of it.
    tp.write("east.yaml", JOB.replace("job: h", "job: east\n    timezone: Asia/Tokyo"))
    tp.write("west.yaml", JOB.replace("job: h", "job: west\n    timezone: America/New_York"))
    east = tp.ok("next", "east.yaml", "-n", "1", "--after", "0001-01-01", "--json").json()
    assert east[0]["at"].startswith("0002-01-01T")
    west = tp.ok("next", "west.yaml", "--after", "9999-12-31T23:50")
    assert "no firings after" in west.out


def test_out_of_range_is_one_line_naming_the_option(tp: Taskplan) -> None:
    tp.write("h.yaml", JOB)
    # Bad input, not an unexpected error: no traceback even with --debug (that one is
    # tests/unit/test_cli_errors.py).
    for debug in ((), ("--debug",)):
        res = tp(*debug, "forecast", "h.yaml", "--at", "9999-12-31T23:59")
        assert res.code == 2, res
        assert res.err == ("taskplan: --at expects a date between 1900-01-01 and 9998-12-31,"
                           " got '9999-12-31T23:59'\n")
