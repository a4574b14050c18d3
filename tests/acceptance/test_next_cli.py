"""`taskplan next` on an applied job whose schedules make no runs: a paused job."""

from __future__ import annotations

from acceptance_helpers import Taskplan


def test_next_of_a_paused_job_lists_no_firings(tp: Taskplan) -> None:
    """A schedule paused on its own is left out of `next`; a paused job used to have all its
    firings listed as if they would run, though each is recorded as skipped."""
    tp.write("daily.yaml", 'job: daily\nschedules:\n  - {cron: "0 6 * * *", name: six}\n'
             'tasks:\n  a: {shell: "true"}\n')
    tp.ok("apply", "daily.yaml")
    assert len(tp.ok("next", "daily", "-n", "2", "--json").json()) == 2
    tp.ok("pause", "daily")
    assert tp.ok("next", "daily", "-n", "2").out == (
        "daily is paused: its schedules make no runs (taskplan resume daily)\n")
    assert tp.ok("next", "daily", "-n", "2", "--json").json() == []
    assert len(tp.ok("next", "daily.yaml", "-n", "2", "--json").json()) == 2  # a file: read
    tp.ok("resume", "daily")
    assert [f["schedule"] for f in tp.ok("next", "daily", "-n", "2", "--json").json()] == [
        "six", "six"]
