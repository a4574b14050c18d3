"""`status` and `logs` on task runs that ended without output: an empty foreach, a task that
never ran, an attempt past the last."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from acceptance_helpers import STEP_TIMEOUT, Taskplan, finish, states

JOB = """
    job: quiet
    tasks:
      fe: {foreach: {values: []}, shell: "echo {{ item }}"}
      bad: {shell: "exit 1"}
      after: {shell: "true", depends_on: [bad]}
      plain: {shell: "echo hi"}
"""


def test_what_ended_says_so_rather_than_yet(tp: Taskplan) -> None:
    tp.write("quiet.yaml", JOB)
    assert tp("run", "quiet.yaml").code == 1
    rows = {line.split()[0]: line for line in tp.ok("status", "1").out.splitlines()[2:]}
    assert rows["fe"].endswith("items: none; result []") and "yet" not in rows["fe"], rows["fe"]
    for args in (("logs", "1", "after"), ("logs", "1", "after", "--follow")):
        res = tp(*args)
        assert (res.code, res.out) == (2, ""), res
        assert res.err == "taskplan: after never ran (upstream_failed): no attempts\n"
    res = tp("logs", "1", "bad", "--attempt", "3")
    assert res.code == 2
    assert res.err == "taskplan: bad has no attempt 3: it ended (failed) after 1\n"
    assert tp.ok("logs", "1", "plain").out == "hi\n"
    res = tp("logs", "1", "plian")
    assert (res.code, res.err) == (2, "taskplan: run 1 has no task 'plian'; did you mean"
                                      " 'plain'?\n"), res


def test_item_of_a_task_that_is_no_foreach_is_refused(tp: Taskplan) -> None:
    tp.write("quiet.yaml", JOB)
    assert tp("run", "quiet.yaml").code == 1
    res = tp("logs", "1", "plain", "--item", "5")
    assert (res.code, res.out) == (2, ""), res
    assert res.err == ("taskplan: plain is not a foreach task: --item picks an item of a"
                       " foreach\n")
    res = tp("logs", "1", "fe", "--item", "0")
    assert res.code == 2 and res.err == "taskplan: fe has no item 0: its foreach has no items\n"
    # A foreach that has not made its items yet (its run waits for an agent): "yet".
    tp.write("later.yaml", "job: later\ntasks:\n  fe2: {foreach: {values: [1]}, shell: \"true\"}\n")
    run_id = tp.ok("run", "later.yaml", "--detach").out.strip()
    res = tp("logs", run_id, "fe2", "--item", "0")
    assert (res.code, res.err) == (
        2, "taskplan: fe2 has no item 0 yet: its foreach has not made its items\n"), res


def _waiting(proc: subprocess.Popen[str]) -> None:
    """Until `logs --follow` sleeps between two reads of the store: past its first checks."""
    wchan = Path(f"/proc/{proc.pid}/wchan")
    deadline = time.monotonic() + STEP_TIMEOUT
    while wchan.read_text() != "hrtimer_nanosleep":
        assert proc.poll() is None, finish(proc)
        assert time.monotonic() < deadline, "logs --follow never waited"
        time.sleep(0.02)


def test_follow_of_a_task_that_ends_without_the_attempt_says_so(tp: Taskplan) -> None:
    # `logs --follow` waits for an attempt that may still come; when the task ends without it
    # (its upstream failed, or it succeeded first time), it said nothing and exited 0.
    tp.write("gate.yaml", """
        job: gate
        tasks:
          gate: {shell: "touch started; while [ ! -f go ]; do sleep 0.05; done; exit 1"}
          after: {shell: "echo never", depends_on: [gate]}
          once: {shell: "touch once_started; while [ ! -f go ]; do sleep 0.05; done"}
    """)
    runner = tp.popen("run", "gate.yaml")
    tp.wait_file("started", proc=runner)
    tp.wait_file("once_started", proc=runner)
    tp.wait_for(1, lambda s: states(s)["gate"] == "running", proc=runner)
    never = tp.popen("logs", "1", "after", "--follow")
    second = tp.popen("logs", "1", "once", "--attempt", "2", "--follow")
    _waiting(never)
    _waiting(second)
    (tp.home / "go").write_text("")
    res = finish(never)
    assert (res.code, res.out, res.err) == (
        2, "", "taskplan: after never ran (upstream_failed): no attempts\n"), res
    res = finish(second)
    assert (res.code, res.out, res.err) == (
        2, "", "taskplan: once has no attempt 2: it ended (succeeded) after 1\n"), res
    assert finish(runner).code == 1


def test_follow_of_an_item_waits_for_its_foreach_to_make_it(tp: Taskplan) -> None:
    # `logs RUN fe --item 0 --follow` said "no item 0 yet" and exited, where --follow waits for
    # an attempt that is still to come.
    tp.write("later.yaml", """
        job: later
        tasks:
          gate: {shell: "touch started; while [ ! -f go ]; do sleep 0.05; done"}
          fe: {foreach: {values: [1, 2]}, shell: "echo item {{ item }}", depends_on: [gate]}
    """)
    runner = tp.popen("run", "later.yaml")
    tp.wait_file("started", proc=runner)
    follower = tp.popen("logs", "1", "fe", "--item", "1", "--follow")
    _waiting(follower)
    (tp.home / "go").write_text("")
    res = finish(follower)
    assert (res.code, res.out, res.err) == (0, "item 2\n", ""), res
    assert finish(runner).code == 0


def test_an_item_is_named_as_status_shows_it(tp: Taskplan) -> None:
    # `status` and the progress lines name an item `each[1]`; `logs 1 'each[1]'` answered
    # "no task 'each[1]'; did you mean 'each'?" (and retry the same).
    tp.write("fan.yaml", """
        job: fan
        tasks:
          each: {foreach: {values: [a, b]}, shell: "echo item {{ item }}"}
    """)
    tp.ok("run", "fan.yaml")
    assert "each[1]" in tp.ok("status", "1").out
    assert tp.ok("logs", "1", "each[1]").out == "item b\n"
    assert tp.ok("logs", "1", "each[0]", "--attempt", "1").out == "item a\n"
    res = tp("logs", "1", "each[7]")
    assert (res.code, res.err) == (2, "taskplan: each has no item 7\n"), res
    res = tp("logs", "1", "each[0]", "--item", "1")
    assert res.code == 2 and "--item" in res.err and res.err.count("\n") == 1, res


def test_ctrl_c_ends_follow_quietly_with_130(tp: Taskplan) -> None:
    # Ctrl-C is how `logs --follow` is ended, as `tail -f` is: it printed "Aborted!" and exited
    # 1, the code that says a run failed.
    tp.write("wait.yaml", "job: wait\ntasks:\n  a: {shell: echo a}\n")
    tp.ok("run", "wait.yaml", "--detach")  # no agent: attempt 1 is still to come
    follower = tp.popen("logs", "1", "a", "--follow")
    _waiting(follower)
    follower.send_signal(signal.SIGINT)
    res = finish(follower)
    # (The newline ends the line where the terminal echoed ^C.)
    assert (res.code, res.out, res.err) == (130, "", "\n"), res


def test_a_password_a_task_printed_is_masked_by_logs(tp: Taskplan) -> None:
    # The console's task page and the logs API mask it; `taskplan logs` printed it in clear.
    tp.write("leak.yaml", """
        job: leak
        tasks:
          say: {shell: "echo cannot reach postgresql://bob:hunter2@db/mart"}
    """)
    tp.ok("run", "leak.yaml")
    for args in (("logs", "1", "say"), ("logs", "1", "say", "--raw"),
                 ("logs", "1", "say", "--follow")):
        assert tp.ok(*args).out == "cannot reach postgresql://bob:***@db/mart\n", args
