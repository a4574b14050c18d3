"""`taskplan forecast` and the forecast in `taskplan status`, from outside."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from acceptance_helpers import Taskplan

JOB = """
job: nightly
tasks:
  extract: {shell: "sleep 0.2"}
  load: {shell: "sleep 0.1", depends_on: extract}
  report: {shell: "true", depends_on: load}
"""


def test_forecast_of_a_job_file_before_any_run(tp: Taskplan) -> None:
    tp.write("job.yaml", JOB)
    out = tp.ok("forecast", "job.yaml", "--workers", "2", "--json").json()
    assert set(out) == {"makespan_s", "finish_at", "critical_path", "tasks", "basis"}
    assert out["makespan_s"] == 180.0  # three tasks never seen: 60 s each, one after another
    assert out["critical_path"] == ["extract", "load", "report"]
    assert set(out["tasks"]) == {"extract", "load", "report"}
    assert datetime.fromisoformat(out["tasks"]["load"]["start_at"]).utcoffset() is not None
    text = tp.ok("forecast", "job.yaml").out
    assert "critical path: extract -> load -> report" in text
    assert "makespan ~3m00s" in text


def test_forecast_after_history_and_at_a_given_time(tp: Taskplan) -> None:
    tp.write("job.yaml", JOB)
    tp.ok("run", "job.yaml")
    out = tp.ok("forecast", "nightly", "--json", "--at", "2030-01-02T06:00:00+00:00").json()
    # One run of history: each task is forecast to take what its one attempt took, and the
    # chain's makespan is their sum (no duration of this machine is asserted).
    took = {t["name"]: _span(t["started_at"], t["finished_at"])
            for t in tp.ok("status", "1", "--json").json()["tasks"]}
    for name, planned in out["tasks"].items():
        assert abs(_span(planned["start_at"], planned["finish_at"]) - took[name]) <= 0.002
    assert abs(out["makespan_s"] - sum(took.values())) <= 0.01, (out, took)
    start = datetime.fromisoformat(out["tasks"]["extract"]["start_at"])
    assert start == datetime.fromisoformat("2030-01-02T06:00:00+00:00")
    assert "last 1 run(s)" in out["basis"]


def _span(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def test_forecast_bad_input(tp: Taskplan) -> None:
    tp.write("job.yaml", JOB)
    for args, words in [
        (("forecast", "nope"), "no job named 'nope'"),
        (("forecast", "missing.yaml"), "no such job file"),
        (("forecast", "job.yaml", "--param", "oops"), "--param expects KEY=VALUE"),
        (("forecast", "job.yaml", "--at", "soon"), "--at expects HH:MM or an ISO 8601"),
        (("forecast", "job.yaml", "--at", "24:30"), "--at expects a time of day"),
        (("forecast", "job.yaml", "--workers", "0"), "--workers"),
    ]:
        res = tp(*args)
        assert res.code == 2, (args, res)
        assert words in res.err and "Traceback" not in res.err, (args, res.err)
        assert len(res.err.strip().splitlines()) == 1, res.err


@pytest.mark.slow
def test_status_of_a_running_run_says_when_it_finishes(tp: Taskplan) -> None:
    tp.write("job.yaml", """
        job: slow
        tasks:
          first: {shell: "sleep 0.1"}
          wait: {shell: "sleep 12", depends_on: first}
          last: {shell: "true", depends_on: wait}
    """)
    run_id = tp.ok("run", "job.yaml", "--detach").out.strip()
    text = tp.ok("status", run_id).out
    assert "finishes: no forecast (no agent is alive to run it)" in text
    assert "forecast" not in tp.ok("status", run_id, "--json").json()
    agent = tp.popen("agent", "--slots", "2")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = tp.ok("status", run_id, "--json").json()
            if any(t["name"] == "wait" and t["state"] == "running" for t in status["tasks"]):
                break
            time.sleep(0.1)
        status = tp.ok("status", run_id, "--json").json()
        forecast = status["forecast"]
        assert forecast["critical_path"] == ["wait", "last"]
        assert set(forecast["tasks"]) == {"wait", "last"}
        text = tp.ok("status", run_id).out
        assert "(critical path: wait -> last)" in text and "finishes ~" in text
    finally:
        tp("cancel", run_id)
        agent.terminate()
        agent.wait(10)


def test_a_foreground_run_records_its_deadline_at_risk_then_missed(tp: Taskplan) -> None:
    tp.write("job.yaml", """
        job: late
        deadline: {within: 1s}
        tasks:
          slow: {shell: "sleep 2.5"}
    """)
    tp.ok("run", "job.yaml")  # the history: 2.5 s, with a 1 s deadline
    first = tp.ok("runs", "--json").json()[0]
    assert first["deadline"]["state"] == "missed"
    assert tp.ok("run", "late").code == 0
    runs = tp.ok("runs", "--json").json()
    assert runs[0]["deadline"]["state"] == "missed"
    created = datetime.fromisoformat(runs[0]["created_at"])
    assert (datetime.fromisoformat(runs[0]["deadline"]["at"]) - created).total_seconds() == 1
    status = tp.ok("status", str(runs[0]["run_id"]), "--json").json()
    assert status["deadline"]["state"] == "missed"
    assert "missed" in tp.ok("runs").out.splitlines()[1]
    assert "deadline: " in tp.ok("status", str(runs[0]["run_id"])).out
    import sqlite3

    with sqlite3.connect(tp.db_path) as conn:
        events = conn.execute("SELECT state, detail FROM events WHERE run_id = ? AND state"
                              " LIKE 'deadline%' ORDER BY id", (runs[0]["run_id"],)).fetchall()
    assert [e[0] for e in events] == ["deadline_at_risk", "deadline_missed"]
    assert '"critical_path": ["slow"]' in events[0][1]


def test_a_bad_deadline_is_refused_with_its_line(tp: Taskplan) -> None:
    tp.write("job.yaml", """
        job: bad
        deadline: {within: 2h, finish_by: "06:00"}
        tasks:
          a: {shell: "true"}
    """)
    res = tp("validate", "job.yaml")
    assert res.code == 2
    assert "job.yaml:2:" in res.err and "exactly one of finish_by, within" in res.err


@pytest.mark.slow
def _leader(db_path: str) -> bool:
    import sqlite3

    try:
        with sqlite3.connect(db_path) as conn:
            return bool(conn.execute(
                "SELECT holder FROM leases WHERE name = 'scheduler'").fetchall())
    except sqlite3.OperationalError:  # the store is still being created
        return False


def test_the_scheduler_daemon_warns_a_detached_run_before_its_deadline(tp: Taskplan) -> None:
    import sqlite3

    tp.write("job.yaml", """
        job: late
        deadline: {within: 2s}
        tasks:
          slow: {shell: "sleep 3"}
    """)
    tp.ok("apply", "job.yaml")
    daemons = [tp.popen("scheduler", "--lease", "1"), tp.popen("agent", "--slots", "1")]
    try:
        # The run is created once the scheduler leads, so that its deadline checker looks
        # before the 2 s deadline passes however slowly the daemon started.
        deadline = time.monotonic() + 60
        while not _leader(tp.db_path):
            if time.monotonic() > deadline:
                pytest.fail("the scheduler never took the lead")
            time.sleep(0.1)
        run_id = tp.ok("run", "late", "--detach").out.strip()  # no history yet: 60 s default
        deadline = time.monotonic() + 40
        events: list[tuple[str, float]] = []
        while time.monotonic() < deadline:
            with sqlite3.connect(tp.db_path) as conn:
                events = conn.execute(
                    "SELECT state, at FROM events WHERE run_id = ? AND state LIKE 'deadline%'"
                    " ORDER BY id", (int(run_id),)).fetchall()
            if len(events) == 2:
                break
            time.sleep(0.2)
        assert [e[0] for e in events] == ["deadline_at_risk", "deadline_missed"], events
        runs = {str(r["run_id"]): r for r in tp.ok("runs", "--json").json()}
        at = datetime.fromisoformat(runs[run_id]["deadline"]["at"]).timestamp()
        assert events[0][1] < at <= events[1][1]
        assert runs[run_id]["deadline"]["state"] == "missed"
    finally:
        for proc in daemons:
            proc.terminate()
            proc.wait(10)


def test_forecast_says_whether_a_deadline_would_be_met(tp: Taskplan) -> None:
    tp.write("job.yaml", """
        job: dl
        deadline: {within: 90s}
        tasks:
          a: {shell: "true"}
          b: {shell: "true", depends_on: a}
    """)
    out = tp.ok("forecast", "job.yaml", "--workers", "2").out
    assert ": would be missed by 30.0s" in out  # two tasks never seen: 60 s each
    assert "deadline" not in tp.ok("forecast", "job.yaml", "--json").json()
    # A finish on the deadline itself meets it (as `runs` judges it), with nothing to spare:
    # it read "would be met with -0.0s to spare".
    tp.write("job.yaml", "job: dl\ndeadline: {within: 120s}\ntasks:\n  a: {shell: 'true'}\n"
                         "  b: {shell: 'true', depends_on: a}\n")
    out = tp.ok("forecast", "job.yaml", "--workers", "2").out
    assert ": would be met with 0.0s to spare\n" in out, out


def test_a_pool_is_forecast_at_the_size_its_claims_use(tp: Taskplan) -> None:
    # taskplan.toml sizes the pool 3, which wins over the job's 1 (docs/reference/job-file.md),
    # so the three tasks run together; the forecast of a new run took the job's 1 and put them
    # one after another (3 times the real makespan).
    tp.write("taskplan.toml", 'db = "sqlite:///t.db"\n[pools]\nmart = 3\n')
    tp.write("p.yaml", "job: pooled\npools: {mart: 1}\ntasks:\n"
                       + "".join(f"  {n}: {{shell: 'true', pool: mart}}\n" for n in "abc"))
    tp.ok("apply", "p.yaml", db=False)
    out = tp.ok("forecast", "pooled", "--workers", "3", "--json", db=False).json()
    starts = {planned["start_at"] for planned in out["tasks"].values()}
    assert len(starts) == 1, out  # never seen: 60 s each, side by side
    assert out["makespan_s"] == 60.0, out
