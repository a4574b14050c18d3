"""`pause`, `resume` through the real CLI: listed by `jobs`, typos answered, manual runs go on."""

from __future__ import annotations

from acceptance_helpers import Taskplan

JOB = """
job: nightly
schedules:
  - cron: "0 2 * * *"
tasks:
  hello:
    shell: echo hello
"""


def test_pause_and_resume_show_in_jobs_and_leave_manual_runs(tp: Taskplan) -> None:
    tp.write("nightly.yaml", JOB)
    tp.ok("apply", "nightly.yaml")
    assert tp.ok("pause", "nightly").out.strip() == "nightly: paused"
    assert tp.ok("pause", "nightly").out.strip() == "nightly: already paused"
    [row] = tp.ok("jobs", "--json").json()
    assert row["paused"] is True and row["next"] is None
    assert "paused" in tp.ok("jobs").out
    tp.ok("run", "nightly")  # a manual run of a paused job still runs
    assert tp.ok("resume", "nightly").out.strip() == "nightly: resumed"
    [row] = tp.ok("jobs", "--json").json()
    assert row["paused"] is False and row["next"] is not None


def test_pause_of_an_unknown_job_exits_2_with_a_guess(tp: Taskplan) -> None:
    tp.write("nightly.yaml", JOB)
    tp.ok("apply", "nightly.yaml")
    res = tp("pause", "nightyl")
    assert res.code == 2 and "did you mean 'nightly'" in res.err and "Traceback" not in res.err
    res = tp("resume")
    assert res.code == 2
