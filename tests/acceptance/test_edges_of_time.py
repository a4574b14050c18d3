"""Instants at the ends of the calendar: `next` answers, other commands refuse in one line, and
`--debug` is the only way to a traceback."""

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


def test_out_of_range_is_one_line_unless_debug(tp: Taskplan) -> None:
    tp.write("h.yaml", JOB)
    res = tp("forecast", "h.yaml", "--at", "9999-12-31T23:59")
    assert res.code == 2, res
    assert len(res.err.strip().splitlines()) == 1 and "Traceback" not in res.err
    debug = tp("--debug", "forecast", "h.yaml", "--at", "9999-12-31T23:59")
    assert debug.code != 0 and "Traceback" in debug.err
