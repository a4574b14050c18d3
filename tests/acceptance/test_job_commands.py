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


def test_delete_keeps_history_or_purges_it(tp: Taskplan) -> None:
    tp.write("nightly.yaml", JOB)
    tp.ok("apply", "nightly.yaml")
    tp.ok("run", "nightly")
    dry = tp.ok("delete", "nightly", "--dry-run").out
    assert "would be deleted" in dry and tp.ok("jobs", "--json").json() != []
    out = tp.ok("delete", "nightly").out
    assert "deleted" in out and "history kept: 1 run(s)" in out
    assert tp.ok("jobs", "--json").json() == []
    assert [r["job"] for r in tp.ok("runs", "--json").json()] == ["nightly"]
    res = tp("delete", "nightly")
    assert res.code == 2 and "no job named 'nightly'" in res.err
    assert "version 2 (new)" in tp.ok("apply", "nightly.yaml").out
    assert "with its 1 run(s)" in tp.ok("delete", "nightly", "--purge-history").out
    assert tp.ok("runs", "--json").json() == []


def test_the_history_a_delete_kept_can_be_purged_later(tp: Taskplan) -> None:
    # `delete --purge-history` of a job deleted with its history kept said "no job named":
    # the only way to drop those runs was to apply the job again and delete it again.
    tp.write("nightly.yaml", JOB)
    tp.ok("apply", "nightly.yaml")
    tp.ok("run", "nightly")
    tp.ok("run", "nightly")
    assert "history kept: 2 run(s)" in tp.ok("delete", "nightly").out
    dry = tp.ok("delete", "nightly", "--purge-history", "--dry-run").out
    assert "2 run(s)" in dry and len(tp.ok("runs", "--json").json()) == 2
    assert "with its 2 run(s)" in tp.ok("delete", "nightly", "--purge-history").out
    assert tp.ok("runs", "--json").json() == []
    res = tp("delete", "nightly", "--purge-history")
    assert res.code == 2 and "no job named 'nightly'" in res.err
    res = tp("delete", "nightly")  # without --purge-history: nothing left to delete
    assert res.code == 2 and "no job named 'nightly'" in res.err


def test_delete_is_refused_while_a_run_is_active_unless_forced(tp: Taskplan) -> None:
    tp.write("slow.yaml", """
        job: slow
        tasks:
          wait:
            shell: sleep 30
    """)
    tp.ok("apply", "slow.yaml")
    run_id = tp.ok("run", "slow", "--detach").out.strip()
    res = tp("delete", "slow")
    assert res.code == 2 and f"active run(s) ({run_id})" in res.err and "--force" in res.err
    assert f"cancelled active run(s) {run_id}" in tp.ok("delete", "slow", "--force").out
    assert tp.status(run_id)["state"] == "cancelled"


def test_apply_prune_lists_then_removes_jobs_whose_files_are_gone(tp: Taskplan) -> None:
    for name in ("a", "b", "c"):
        tp.write(f"jobs/{name}.yaml", JOB.replace("nightly", name))
    tp.ok("apply", "jobs")
    (tp.home / "jobs" / "b.yaml").unlink()
    (tp.home / "jobs" / "c.yaml").write_text(JOB.replace("nightly", "c2"))  # renamed job
    dry = tp.ok("apply", "--prune", "--dry-run", "jobs").out
    assert "b: would be removed (b.yaml is gone" in dry
    assert "c: would be removed (c.yaml no longer defines it" in dry
    assert "c2: would be version 1 (new)" in dry
    assert sorted(j["job"] for j in tp.ok("jobs", "--json").json()) == ["a", "b", "c"]
    out = tp.ok("apply", "--prune", "jobs").out
    assert "b: removed" in out and "c: removed" in out and "a: version 1 (unchanged)" in out
    assert sorted(j["job"] for j in tp.ok("jobs", "--json").json()) == ["a", "c2"]
    res = tp("apply", "--prune", "jobs/a.yaml")
    assert res.code == 2 and "--prune takes folders" in res.err
    for f in (tp.home / "jobs").iterdir():
        f.unlink()
    assert "a: removed" in tp.ok("apply", "--prune", "jobs").out  # an emptied folder
    assert tp.ok("jobs", "--json").json() == []


def test_apply_prune_through_a_link_to_the_folder_is_the_same_folder(tp: Taskplan) -> None:
    # Applied from jobs/, pruned through a link to it (a deploy's `current -> releases/7`):
    # the folder matched no job, so nothing was pruned, without a word.
    for name in ("a", "b"):
        tp.write(f"jobs/{name}.yaml", JOB.replace("nightly", name))
    tp.ok("apply", "jobs")
    (tp.home / "current").symlink_to("jobs")
    (tp.home / "jobs" / "b.yaml").unlink()
    out = tp.ok("apply", "--prune", "current").out
    assert "b: removed (b.yaml is gone; history kept)" in out, out
    assert [j["job"] for j in tp.ok("jobs", "--json").json()] == ["a"]
    # and the other way round: applied through the link, pruned by the real folder
    tp.write("jobs/c.yaml", JOB.replace("nightly", "c"))
    tp.ok("apply", "current")
    (tp.home / "jobs" / "c.yaml").unlink()
    assert "c: removed" in tp.ok("apply", "--prune", "jobs").out


def test_delete_refuses_a_job_others_use_and_its_runs_cannot_be_retried(tp: Taskplan) -> None:
    tp.write("hello.yaml", 'job: hello\ntasks:\n  a: {shell: "exit 1"}\n')
    tp.write("fe.yaml", "job: fe\ntasks:\n  sub: {job: hello}\n")
    tp.write("down.yaml", 'job: down\ntriggers:\n  - after: [hello]\ntasks:\n'
             '  t: {shell: "true"}\n')
    tp.ok("apply", "hello.yaml", "fe.yaml", "down.yaml")
    refused = tp("delete", "hello")
    assert refused.code == 2
    assert "job fe (task sub)" in refused.err and "job down (trigger)" in refused.err
    assert "hello" in tp.ok("jobs").out
    assert tp("run", "hello").code == 1
    assert "deleted" in tp.ok("delete", "hello", "--force").out
    retried = tp("retry", "1")
    assert retried.code == 2 and "which was deleted" in retried.err
    assert tp.ok("runs", "--json").json()[0]["state"] == "failed"


def test_pause_and_resume_one_schedule(tp: Taskplan) -> None:
    tp.write("two.yaml", 'job: two\nschedules:\n  - {cron: "0 1 * * *", name: one}\n'
             '  - {cron: "0 2 * * *", name: two}\ntasks:\n  a: {shell: "true"}\n')
    tp.ok("apply", "two.yaml")
    assert tp.ok("pause", "two", "--schedule", "one").out.strip() == "two: schedule one paused"
    assert "already paused" in tp.ok("pause", "two", "--schedule", "one").out
    bad = tp("pause", "two", "--schedule", "three")
    assert bad.code == 2 and "no schedule 'three'" in bad.err and "one, two" in bad.err
    # While one is paused, `next` lists only the other's firings (and says why).
    lines = tp.ok("next", "two", "-n", "3").out.splitlines()
    assert lines[0] == "schedule one is paused: its firings are left out (taskplan resume two" \
                       " --schedule one)"
    assert [ln.split()[-1] for ln in lines[1:]] == ["two", "two", "two"], lines
    assert {f["schedule"] for f in tp.ok("next", "two", "-n", "3", "--json").json()} == {"two"}
    (listed,) = tp.ok("jobs", "--json").json()  # the job's next firing: schedule two's
    assert listed["next"] == tp.ok("next", "two", "-n", "1", "--json").json()[0]["at"], listed
    assert tp.ok("resume", "two", "--schedule", "one").out.strip() == "two: schedule one resumed"
    assert {f["schedule"] for f in tp.ok("next", "two", "-n", "4", "--json").json()} == {
        "one", "two"}


def test_a_dry_run_against_no_store_creates_none(tp: Taskplan) -> None:
    tp.write("jobs/nightly.yaml", JOB)
    tp.write("jobs/cal.yaml", "calendar: ops\n")
    for args in (("apply", "--dry-run", "jobs/nightly.yaml"),
                 ("apply", "--prune", "--dry-run", "jobs")):
        out = tp.ok(*args).out
        assert out.startswith(f"store {tp.url}: would be created\n"), out
        assert "nightly: would be version 1 (new)" in out
        assert not tp.db_path.exists()
    assert "calendar ops: would be version 1 (new)" in out
    # against a store that exists, the dry run compares with it (and still writes nothing)
    tp.ok("apply", "jobs/nightly.yaml")
    out = tp.ok("apply", "--dry-run", "jobs").out
    assert "would be created" not in out and "nightly: would be version 1 (unchanged)" in out


def test_a_dry_run_says_whether_a_calendar_would_change(tp: Taskplan) -> None:
    """`apply --dry-run` said `calendar ops: would be applied` whether the file was the one
    applied or a changed one, as jobs say `would be version N (new|unchanged)`."""
    tp.write("cal.yaml", "calendar: ops\ndates: [2030-01-02]\n")
    tp.ok("apply", "cal.yaml")
    assert tp.ok("apply", "--dry-run", "cal.yaml").out == (
        "calendar ops: would be version 1 (unchanged)\n")
    tp.write("cal.yaml", "calendar: ops\ndates: [2030-01-03]\n")
    assert tp.ok("apply", "--dry-run", "cal.yaml").out == "calendar ops: would be version 2 (new)\n"
    tp.write("new.yaml", "calendar: other\n")
    assert tp.ok("apply", "--dry-run", "new.yaml").out == (
        "calendar other: would be version 1 (new)\n")
    assert tp.ok("calendars", "ops", "--from", "2030-01-01", "--to", "2030-01-05",
                 "--json").json()[0]["date"] == "2030-01-02"  # nothing was applied


def test_a_job_file_moved_to_another_folder_follows_it(tp: Taskplan) -> None:
    # The same file applied from its new folder was 'version 1 (unchanged)' and the job stayed
    # bound to the old one: its runs imported the old folder's modules and ran there (every
    # run failed once it was removed), and `apply --prune` of the old folder deleted the job.
    for folder in ("old", "new"):
        tp.write(f"{folder}/moved.yaml", """
            job: moved
            tasks:
              p: {python: "steps:where"}
              s: {shell: "cat where.txt"}
        """)
        tp.write(f"{folder}/steps.py", f"def where(ctx):\n    print('{folder} steps')\n")
        tp.write(f"{folder}/where.txt", f"{folder} folder\n")
    assert tp.ok("apply", "old").out == "moved: version 1 (new)\n"
    assert tp.ok("apply", "--dry-run", "new").out == "moved: would be version 2 (new)\n"
    assert tp.ok("apply", "new").out == "moved: version 2 (new)\n"
    assert tp.ok("apply", "new").out == "moved: version 2 (unchanged)\n"
    for name in ("moved.yaml", "steps.py", "where.txt"):
        (tp.home / "old" / name).unlink()
    assert tp.ok("apply", "--prune", "old").out == ""
    tp.ok("run", "moved")
    assert tp.ok("logs", "1", "p").out == "new steps\n"
    assert tp.ok("logs", "1", "s").out == "new folder\n"
