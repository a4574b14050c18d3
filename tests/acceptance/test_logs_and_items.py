"""`status` and `logs` on task runs that ended without output: an empty foreach, a task that
never ran, an attempt past the last."""

from __future__ import annotations

from acceptance_helpers import Taskplan

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
