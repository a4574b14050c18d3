"""History through the real CLI: `status RUN --attempts` (every attempt with its agent, exit
code and error) and `firings JOB` (runs made, firings skipped and why)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from acceptance_helpers import Taskplan


def test_status_attempts_lists_every_attempt(tp: Taskplan) -> None:
    tp.write("flaky.yaml", """
        job: flaky
        tasks:
          once:
            retries: 1
            retry_delay: 0
            shell: "if [ -e marker ]; then echo ok; else touch marker; echo boom >&2; exit 3; fi"
    """)
    tp.ok("run", "flaky.yaml")
    [run] = tp.ok("runs", "--json").json()
    data = tp.ok("status", str(run["run_id"]), "--attempts", "--json").json()
    [task] = data["tasks"]
    assert task["attempts"] == 2  # still the count
    first, second = task["attempt_list"]
    assert (first["attempt"], first["state"], first["exit_code"]) == (1, "failed", 3)
    assert first["error"] and first["host"] and first["agent"]
    assert (second["attempt"], second["state"], second["exit_code"]) == (2, "succeeded", 0)
    assert "attempt_list" not in tp.status(run["run_id"])["tasks"][0]
    text = tp.ok("status", str(run["run_id"]), "--attempts").out
    assert "attempt 1" in text and "exit 3" in text and "attempt 2" in text


def test_firings_show_runs_and_skips_with_reasons(tp: Taskplan) -> None:
    tp.write("daily.yaml", """
        job: daily
        exceptions:
          - dates: ["2026-01-02"]
        schedules:
          - cron: "0 6 * * *"
        tasks:
          go: {shell: "true"}
    """)
    tp.ok("apply", "daily.yaml")
    tp.ok("backfill", "daily", "--from", "2026-01-01", "--to", "2026-01-03")
    out = tp.ok("firings", "daily", "--limit", "3", "--json").json()
    assert [(e["at"][:10], e["outcome"]) for e in out] == [
        ("2026-01-03", "run"), ("2026-01-02", "skipped"), ("2026-01-01", "run")]
    assert out[0]["by"] == "backfill" and out[0]["run_state"] == "running"
    assert "2026-01-02 is excepted" in out[1]["reason"] and out[1]["recorded"] is False
    text = tp.ok("firings", "daily", "--limit", "3").out
    assert "skipped: 2026-01-02 is excepted" in text and "(backfill)" in text
    res = tp("firings", "dayly")
    assert res.code == 2 and "did you mean 'daily'" in res.err


def test_firings_worked_out_from_exceptions_are_the_newest_and_name_their_time(
        tp: Taskplan) -> None:
    # Two recorded firings in January, fewer than --limit: the firings the exception removed
    # are worked out from then to now. They were walked forward from January and cut at the
    # limit, so `firings` showed January's as the latest; and `hours: [12]` removes the noon
    # firing, not the day, which "2026-01-03 is excepted" claimed.
    tp.write("hourly.yaml", """
        job: hourly
        exceptions:
          - hours: [12]
            minutes: [0]
        schedules:
          - cron: "0 * * * *"
        tasks:
          go: {shell: "true"}
    """)
    tp.ok("apply", "hourly.yaml")
    tp.ok("backfill", "hourly", "--from", "2026-01-02T11:00", "--to", "2026-01-02T13:00")
    asked = datetime.now(UTC)
    out = tp.ok("firings", "hourly", "--limit", "3", "--json").json()
    ats = [datetime.fromisoformat(e["at"]) for e in out]
    assert [(e["outcome"], e["recorded"]) for e in out] == [("skipped", False)] * 3
    assert [e["reason"] for e in out] == [
        f"skipped: {at.date().isoformat()} 12:00 is excepted (exceptions:)" for at in ats]
    assert [at.hour for at in ats] == [12] * 3
    assert [(ats[0] - at).days for at in ats] == [0, 1, 2]  # the last three noons
    assert timedelta(0) <= asked - ats[0] <= timedelta(hours=25)
