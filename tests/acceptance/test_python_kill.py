"""python tasks are as killable as shell tasks: cancel, and a second signal to a daemon."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from acceptance_helpers import Taskplan, finish, states

FOREVER = """
    import os, time

    def forever(ctx):
        # Each task its own temporary name: two tasks start at once.
        with open(f"pid-{ctx.task}.tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(f"pid-{ctx.task}.tmp", f"pid-{ctx.task}")
        while True:  # no timeout, no cooperation: only a kill ends this
            time.sleep(0.05)
"""


def pid_of(tp: Taskplan, task: str, proc: object) -> int:
    path = tp.wait_file(f"pid-{task}", proc=proc)  # type: ignore[arg-type]
    return int(path.read_text())


def gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return True
        time.sleep(0.05)
    return False


def test_cancel_kills_a_python_task_without_timeout(tp: Taskplan) -> None:
    tp.write("spin.py", FOREVER)
    tp.write("spin.yaml", """
        job: spin
        tasks:
          spin: {python: "spin:forever"}
    """)
    assert tp.ok("run", "spin.yaml", "--detach").out.strip() == "1"
    agent = tp.popen("agent", "--slots", "1")
    pid = pid_of(tp, "spin", agent)
    assert pid != agent.pid
    res = tp("cancel", "1")
    assert res.code == 0, res
    assert gone(pid), "the cancelled python function is still running"
    final = tp.wait_for(1, lambda s: s["state"] == "cancelled", proc=agent)
    assert states(final) == {"spin": "cancelled"}
    assert agent.poll() is None  # the agent itself goes on
    agent.send_signal(signal.SIGTERM)
    assert finish(agent, timeout=20).code == 0


@pytest.mark.parametrize("daemon", ["agent", "serve"])
def test_a_second_sigint_stops_a_daemon_running_python(tp: Taskplan, daemon: str) -> None:
    tp.write("spin.py", FOREVER)
    tp.write("spin.yaml", """
        job: spin
        tasks:
          a: {python: "spin:forever"}
          b: {python: "spin:forever"}
    """)
    tp.ok("run", "spin.yaml", "--detach")
    proc = tp.popen(daemon, "--slots", "2")
    pids = [pid_of(tp, "a", proc), pid_of(tp, "b", proc)]
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    # A function that never returns used to keep the daemon draining forever.
    res = finish(proc, timeout=15)
    assert res.code == 0, res
    assert all(gone(p) for p in pids)
    if daemon == "agent":  # it leaves by os._exit: its last lines are written first
        assert "SIGINT: cancelling running tasks" in res.err, res.err
        assert res.err.rstrip().endswith("stopped"), res.err
    final = tp.status(1)
    assert set(states(final).values()) == {"cancelled"}, final
    assert os.path.exists(tp.home / "pid-a")


def test_ctrl_c_stops_a_foreground_run_of_python(tp: Taskplan) -> None:
    tp.write("spin.py", FOREVER)
    tp.write("spin.yaml", """
        job: spin
        tasks:
          spin: {python: "spin:forever"}
    """)
    proc = tp.popen("run", "spin.yaml")
    pid = pid_of(tp, "spin", proc)
    proc.send_signal(signal.SIGINT)
    res = finish(proc, timeout=15)
    assert res.code == 1, res
    assert gone(pid)
    assert states(tp.status(1)) == {"spin": "cancelled"}
