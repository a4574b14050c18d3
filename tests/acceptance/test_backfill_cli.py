"""`taskplan backfill` through the real CLI: dry run, JSON, idempotence, bad input, and
`run.fire_time` in the runs' templates (a wall time in the job's zone)."""

from __future__ import annotations

from acceptance_helpers import Taskplan

JOB = """
job: daily
timezone: Europe/Paris
schedules:
  - cron: "0 0 * * *"
    params: {mode: sched}
tasks:
  show:
    shell: >-
      echo day={{ run.fire_time.strftime('%Y-%m-%d') }} at={{ run.fire_time }}
      env=$TASKPLAN_FIRE_TIME
"""


def test_backfill_makes_one_run_per_day_once_with_the_fire_time(tp: Taskplan) -> None:
    tp.write("daily.yaml", JOB)
    tp.ok("apply", "daily.yaml")
    args = ("backfill", "daily", "--from", "2026-01-01", "--to", "2026-01-03")
    dry = tp.ok(*args, "--dry-run", "--json").json()
    assert dry["dry_run"] and [f["new"] for f in dry["firings"]] == [True, True, True]
    assert tp.ok("runs", "--json").json() == []
    made = tp.ok(*args, "--max-active", "2", "--json").json()
    assert made["created"] == 3
    assert [f["at"] for f in made["firings"]] == [
        "2026-01-01T00:00:00+01:00", "2026-01-02T00:00:00+01:00", "2026-01-03T00:00:00+01:00"]
    again = tp.ok(*args)
    assert "nothing created" in again.out
    runs = tp.ok("runs", "--json").json()
    assert len(runs) == 3 and {r["trigger"] for r in runs} == {"backfill"}
    assert sorted(r["state"] for r in runs) == ["queued", "running", "running"]
    tp.ok("agent", "--exit-when-idle", "1s", timeout=90)
    first = min(r["run_id"] for r in runs)
    assert tp.status(first)["state"] == "succeeded"
    log = tp.ok("logs", str(first), "show").out
    assert "day=2026-01-01 at=2026-01-01 00:00:00+01:00 env=2026-01-01T00:00:00+01:00" in log


def test_backfill_bad_input_is_one_line_and_exit_2(tp: Taskplan) -> None:
    tp.write("daily.yaml", JOB)
    tp.ok("apply", "daily.yaml")
    for args, words in [
        (("backfill", "dayly", "--from", "2026-01-01", "--to", "2026-01-02"), "did you mean"),
        (("backfill", "daily", "--from", "2026-13-01", "--to", "2026-01-02"), "--from expects"),
        (("backfill", "daily", "--from", "2026-01-05", "--to", "2026-01-02"), "after --to"),
        (("backfill", "daily", "--from", "2026-01-01"), "--to"),
        (("backfill", "daily", "--from", "2026-01-01", "--to", "2026-01-02",
          "--max-active", "0"), "--max-active"),
    ]:
        res = tp(*args)
        assert res.code == 2 and words in res.err and "Traceback" not in res.err, (args, res)
    assert tp.ok("runs", "--json").json() == []


def test_bounds_in_the_repeated_autumn_hour_cover_that_instant_only(tp: Taskplan) -> None:
    # Berlin shows 02:00-02:59 twice on 2026-10-25; a half-hourly schedule fires in both.
    tp.write("dst.yaml", """
        job: dst
        timezone: Europe/Berlin
        schedules:
          - cron: "*/30 * * * *"
        tasks:
          a: {shell: "true"}
        """)
    tp.ok("apply", "dst.yaml")
    for bound, wanted in [("2026-10-25T02:30+01:00", "2026-10-25T02:30:00+01:00"),
                          ("2026-10-25T00:30Z", "2026-10-25T02:30:00+02:00"),
                          # a wall time without offset is its first occurrence
                          ("2026-10-25T02:30", "2026-10-25T02:30:00+02:00")]:
        got = tp.ok("backfill", "dst", "--from", bound, "--to", bound, "--dry-run",
                    "--json").json()
        assert [f["at"] for f in got["firings"]] == [wanted], bound
        assert got["from"] == got["to"] == wanted


def test_backfilled_runs_have_no_deadline_counted_from_their_past_firing(tp: Taskplan) -> None:
    """A deadline counted from the firing fell in the past for every backfilled day: each run
    was missed at once (an event, and an alert, per day). Counted from the start, it holds."""
    for name, deadline, has in (("byfire", '{finish_by: "06:00"}', False),
                                ("byrun", "{within: 1h, of: start}", True)):
        tp.write(f"{name}.yaml", f"job: {name}\ndeadline: {deadline}\n"
                 + JOB.split("\n", 2)[2])
        tp.ok("apply", f"{name}.yaml")
        tp.ok("backfill", name, "--from", "2026-01-01", "--to", "2026-01-02")
        runs = [r for r in tp.ok("runs", "--json").json() if r["job"] == name]
        assert len(runs) == 2
        assert all(("deadline" in r) == has for r in runs), runs
    tp.ok("agent", "--exit-when-idle", "1s", timeout=90)
    runs = tp.ok("runs", "--json").json()
    assert {r["state"] for r in runs} == {"succeeded"}
    assert {r["job"]: r.get("deadline", {}).get("state") for r in runs} == {
        "byfire": None, "byrun": "met"}
