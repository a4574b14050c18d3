"""History through the real CLI: `status RUN --attempts` (every attempt with its agent, exit
code and error) and `firings JOB` (runs made, firings skipped and why)."""

from __future__ import annotations

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
