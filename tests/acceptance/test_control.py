"""stop and cancel from a second process while `taskplan run` executes the run.

Tasks wait on gate files the test creates, so nothing depends on how long anything takes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from acceptance_helpers import Taskplan, clean_env, finish, live_processes, states


def gated_job(tp: Taskplan, marker: str, *, endless: bool = False) -> None:
    """`hold` runs until the file `go` exists; `next` depends on it; `quick` runs at once.

    With `endless`, `hold` instead sleeps a minute in a background grandchild (command line
    carrying `marker`) unless `go` already exists when it starts.
    """
    sleeper = tp.home / f"sleep-{marker}"
    os.symlink("/bin/sleep" if Path("/bin/sleep").exists() else "/usr/bin/sleep", sleeper)
    wait = (f"[ -f go ] || {{ {sleeper} 60 & wait; }}" if endless
            else f"while [ ! -f go ]; do {sleeper} 0.05; done")
    tp.write("gated.yaml", f"""
        job: gated
        tasks:
          quick:
            shell: echo quick
          hold:
            shell: |
              echo "$TASKPLAN_RUN_ID" > started
              {wait}
              echo released
          next:
            depends_on: [hold]
            shell: echo next
          later:
            depends_on: [quick, next]
            shell: echo later
    """)


def wait_sleeper(marker: str) -> None:
    """Until the endless gated task's background sleeper runs."""
    deadline = time.monotonic() + 20
    while not live_processes(marker):
        assert time.monotonic() < deadline, "the gated task's sleeper never started"
        time.sleep(0.05)


def wait_running(tp: Taskplan, runner: subprocess.Popen[str]) -> dict[str, Any]:
    tp.wait_file("started", proc=runner)
    return tp.wait_for(1, lambda s: states(s)["hold"] == "running", proc=runner)


def test_stop_from_another_process_drains_the_run(tp: Taskplan) -> None:
    gated_job(tp, "stop-a1")
    runner = tp.popen("run", "gated.yaml", "--workers", "2")
    wait_running(tp, runner)
    assert (tp.home / "started").read_text().strip() == "1"

    res = tp("stop", "1")
    assert res.code == 0, res
    stopping = tp.status(1)
    # draining: the running task is left to finish, the run is not over yet
    assert stopping["state"] == "stopping"
    assert states(stopping)["hold"] == "running"
    assert runner.poll() is None

    (tp.home / "go").write_text("")
    run = finish(runner)
    assert run.code == 1, run
    final = tp.status(1)
    assert final["state"] == "cancelled"
    assert states(final) == {"quick": "succeeded", "hold": "succeeded", "next": "skipped",
                             "later": "skipped"}
    assert tp.ok("logs", "1", "hold").out == "released\n"
    assert final["finished_at"] is not None
    runs = tp.ok("runs", "--json", "--state", "cancelled").json()
    assert [r["run_id"] for r in runs] == [1]
    # stopping or cancelling a finished run is refused and changes nothing
    for verb in ("stop", "cancel"):
        again = tp(verb, "1")
        assert again.code == 2, again
        assert again.err == f"taskplan: run 1 already cancelled, nothing to {verb}\n", again
    assert tp.status(1) == final


def test_cancel_from_another_process_kills_running_tasks(tp: Taskplan) -> None:
    marker = "cancel-b7"
    gated_job(tp, marker, endless=True)
    runner = tp.popen("run", "gated.yaml", "--workers", "2")
    wait_running(tp, runner)
    wait_sleeper(marker)

    res = tp("cancel", "1")
    assert res.code == 0, res
    run = finish(runner)  # nobody opens the gate: only the cancel ends the task
    assert run.code == 1, run
    final = tp.status(1)
    assert final["state"] == "cancelled"
    assert states(final) == {"quick": "succeeded", "hold": "cancelled", "next": "skipped",
                             "later": "skipped"}
    assert not (tp.home / "go").exists()
    assert live_processes(marker) == []
    # a cancelled run can be retried: its unfinished work reruns in place
    (tp.home / "go").write_text("")
    res = tp("retry", "1")
    assert res.code == 0, res
    retried = tp.status(1)
    assert retried["state"] == "succeeded"
    assert set(states(retried).values()) == {"succeeded"}
    by_name = {t["name"]: t for t in retried["tasks"]}
    assert by_name["quick"]["attempts"] == 1
    assert by_name["hold"]["attempts"] == 2


def test_unknown_run_id(tp: Taskplan) -> None:
    gated_job(tp, "unknown-id")
    tp.ok("apply", "gated.yaml")  # a store, without run 42
    commands = [(c, "42") for c in ("stop", "cancel", "status", "retry")]
    commands += [("logs", "42", "a"), ("status", "abc")]
    for args, res in zip(commands, tp.many(*commands), strict=True):
        assert res.code == 2, (args, res)
        assert res.err.count("\n") == 1 and args[1] in res.err, (args, res.err)


def test_a_hang_up_cancels_a_foreground_run_unless_ignored(tp: Taskplan) -> None:
    """A closed terminal (SIGHUP) ends `run` as Ctrl-C does: its tasks killed, the run
    cancelled; left to the default, the process died at once and its task ran on for nobody.
    Under `nohup` (SIGHUP ignored) the run goes on."""
    marker = "hangup-c3"
    gated_job(tp, marker, endless=True)
    runner = tp.popen("run", "gated.yaml", "--workers", "2")
    wait_running(tp, runner)
    wait_sleeper(marker)
    runner.send_signal(signal.SIGHUP)
    run = finish(runner)
    assert run.code == 1, run
    assert tp.status(1)["state"] == "cancelled"
    assert live_processes(marker) == []

    tp.write("polled.yaml", """
        job: polled
        tasks:
          hold: {shell: "touch held; while [ ! -f go ]; do sleep 0.05; done"}
    """)
    ignoring = subprocess.Popen(["nohup", *tp.argv(("run", "polled.yaml"), True)], cwd=tp.home,
                                env=clean_env(tp.env), text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    tp.started.append(ignoring)
    tp.wait_file("held", proc=ignoring)
    ignoring.send_signal(signal.SIGHUP)
    time.sleep(0.5)  # a hang-up that were handled would have cancelled the run by now
    (tp.home / "go").write_text("")
    done = finish(ignoring)
    assert done.code == 0, done
    assert tp.status(2)["state"] == "succeeded"


def test_retry_counts_the_task_runs_status_lists(tp: Taskplan) -> None:
    # A staged job's barriers are no rows of `status`: "7 task run(s) reset" for a run of
    # five tasks, as retry said, counted two of them.
    tp.write("staged.yaml", """
        job: staged
        tasks:
          a1: {stage: 1, shell: "test -f fixed"}
          a2: {stage: 1, shell: "true"}
          b1: {stage: 2, shell: "true"}
          b2: {stage: 2, shell: "true"}
          free: {shell: "true"}
    """)
    assert tp("run", "staged.yaml").code == 1
    assert states(tp.status(1)) == {"a1": "failed", "a2": "succeeded", "b1": "upstream_failed",
                                    "b2": "upstream_failed", "free": "succeeded"}
    (tp.home / "fixed").write_text("")
    res = tp("retry", "1", "--detach")
    assert res.out == "run 1: 3 task run(s) reset\n", res


def test_a_child_run_retried_on_its_own_runs_in_this_process(tp: Taskplan) -> None:
    """`retry CHILD` in the foreground: its agent claimed only from runs whose top run was the
    child itself, which a child run never is, so the retry waited for ever."""
    tp.write("flaky.yaml", """
        job: flaky
        tasks:
          a: {shell: "echo a >> a.count"}
          b: {depends_on: [a], shell: "test -f fixed"}
    """)
    tp.write("parent.yaml", """
        job: parent
        tasks:
          c: {job: flaky}
    """)
    tp.ok("apply", "flaky.yaml")
    assert tp("run", "parent.yaml").code == 1
    child = next(r for r in tp.ok("runs", "--json").json() if r["job"] == "flaky")
    assert child["state"] == "failed"
    (tp.home / "fixed").write_text("")
    res = tp("retry", str(child["run_id"]))
    assert res.code == 0, res
    assert states(tp.status(child["run_id"])) == {"a": "succeeded", "b": "succeeded"}
    assert (tp.home / "a.count").read_text() == "a\n"  # in place: a kept its success
    assert tp.status(1)["state"] == "failed"  # the parent stays as it ended


def test_a_refused_retry_of_a_running_run_leaves_it_to_its_process(tp: Taskplan) -> None:
    # `retry` of a run still going was refused, but only after pinning the run to the retry's
    # own (then gone) agent: the run lost its pin, and idle agents took its next tasks.
    import sqlite3

    tp.write("gate.yaml", """
        job: gate
        tasks:
          a: {shell: "touch started; while [ ! -f go ]; do sleep 0.05; done"}
          b: {shell: "true", depends_on: [a]}
    """)
    runner = tp.popen("run", "gate.yaml")
    tp.wait_file("started", proc=runner)

    def pin() -> object:
        with sqlite3.connect(tp.db_path) as conn:
            return conn.execute("SELECT pin_agent_id FROM runs WHERE id = 1").fetchone()[0]

    before = pin()
    assert before is not None
    res = tp("retry", "1")
    assert (res.code, res.err) == (2, "taskplan: run 1 is running; retry takes a finished"
                                      " run\n"), res
    assert pin() == before
    (tp.home / "go").write_text("")
    assert finish(runner).code == 0


def test_retry_detach_refuses_the_foreground_flags_as_run_does(tp: Taskplan) -> None:
    # `retry --detach --distributed` (or --labels) was taken and the flag ignored.
    tp.write("f.yaml", 'job: f\ntasks:\n  a: {shell: "exit 1"}\n')
    assert tp("run", "f.yaml").code == 1
    for flag in (("--distributed",), ("--labels", "etl")):
        for verb in (("run", "f.yaml"), ("retry", "1")):
            res = tp(*verb, "--detach", *flag)
            assert res.code == 2 and res.err.startswith(
                "taskplan: --detach leaves the run to agents: --distributed and --labels apply"
                " to a foreground"), (verb, flag, res)
    assert tp.status(1)["state"] == "failed"


def test_retry_of_one_task_leaves_the_run_failed_while_other_failures_stay(tp: Taskplan
                                                                           ) -> None:
    """`retry --task b` reset the run's failure count: with `a` still failed (or cancelled,
    which `b` did not count as a failed upstream) the run ended `succeeded`."""
    tp.write("fj.yaml", """
        job: fj
        tasks:
          a: {shell: "test -f fixed"}
          b: {shell: "true", depends_on: [a]}
          c: {shell: "exit 2"}
          d: {shell: "true", depends_on: [c]}
    """)
    assert tp("run", "fj.yaml").code == 1
    res = tp("retry", "1", "--task", "d")
    assert res.code == 1, res
    assert tp.status(1)["state"] == "failed"
    assert states(tp.status(1)) == {"a": "failed", "b": "upstream_failed", "c": "failed",
                                    "d": "upstream_failed"}
    (tp.home / "fixed").write_text("")
    assert tp("retry", "1", "--task", "a").code == 1  # c still failed
    assert states(tp.status(1))["b"] == "succeeded" and tp.status(1)["state"] == "failed"


def test_a_cancelled_upstream_holds_back_a_retried_task(tp: Taskplan) -> None:
    gated_job(tp, "cancelretry")
    runner = tp.popen("run", "gated.yaml")
    tp.wait_file("started", runner)
    tp.ok("cancel", "1")
    finish(runner)
    assert states(tp.status(1))["hold"] == "cancelled"
    res = tp("retry", "1", "--task", "next")
    assert res.code == 1, res
    status = tp.status(1)
    assert status["state"] == "failed" and states(status)["next"] == "upstream_failed", status


def test_retry_of_a_stage_barrier_is_no_task(tp: Taskplan) -> None:
    # The barriers between stages are task runs named @stage1, @stage2: `retry --task @stage2
    # --detach` said "0 task run(s) reset" (exit 0, and that the run waits for an agent) of a
    # run that stayed failed, and @stage1 reran the barrier in the foreground.
    tp.write("stg.yaml", """
        job: stg
        tasks:
          a: {shell: "exit 1", stage: 1}
          b: {shell: echo, stage: 2}
    """)
    assert tp("run", "stg.yaml").code == 1
    for args in (("--task", "@stage2", "--detach"), ("--task", "@stage1")):
        res = tp("retry", "1", *args)
        assert (res.code, res.out) == (2, ""), (args, res)
        assert res.err.startswith(f"taskplan: run 1 has no task '{args[1]}'"), res.err
    assert tp.ok("status", "1", "--json").json()["state"] == "failed"
