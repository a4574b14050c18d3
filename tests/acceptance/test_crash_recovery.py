"""Processes killed at the worst moment: their work comes back at once, nothing stays stuck."""

from __future__ import annotations

import os
import signal
import time

from acceptance_helpers import Taskplan, finish, tasks_by_name


def test_killed_run_is_recovered_at_once_by_an_agent_on_the_same_machine(tp: Taskplan) -> None:
    # The first attempt hangs (until killed with its runner); the retry succeeds at once.
    tp.write("slow.yaml", """
        job: slow
        tasks:
          work:
            shell: 'if [ -e first ]; then echo again; else echo $$ > first; exec sleep 120; fi'
            retries: 1
          after: {shell: "echo done", depends_on: [work]}
        """)
    runner = tp.popen("run", "slow.yaml")
    first = tp.wait_file("first", runner)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    time.sleep(0.1)  # (the task's shell writes its pid right after creating the file)
    orphan = int(first.read_text())  # the task's own process outlives its runner
    os.kill(orphan, signal.SIGKILL)
    # The runner's lease has ~30 s left; the old agent found nothing claimable, idled 5 s out
    # and left the run `running` (with 5 s as with 2 s).
    agent = finish(tp.popen("agent", "--exit-when-idle", "2s"), timeout=25)
    assert agent.code == 0, agent
    status = tp.status(1)
    assert status["state"] == "succeeded", status
    work = tasks_by_name(status)["work"]
    assert (work["state"], work["attempts"]) == ("succeeded", 2)
    assert "lost" in tp.ok("agents", "--all").out
