"""Processes killed at the worst moment: their work comes back at once, nothing stays stuck."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from acceptance_helpers import Taskplan, clean_env, finish, tasks_by_name


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for init to reap it is gone for this purpose
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


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
    # The task does not outlive its runner (its keeper kills it), so it cannot run on while
    # the agent below retries it: one execution at a time.
    orphan = int(first.read_text())
    deadline = time.monotonic() + 20  # a hang guard: the kill comes within milliseconds
    while _alive(orphan):
        assert time.monotonic() < deadline, "the killed runner's task is still running"
        time.sleep(0.02)
    # Until something recovers it, `status` says why the task still shows running.
    line = next(x for x in tp.ok("status", "1").out.splitlines() if x.startswith("work "))
    assert f"its agent (pid {runner.pid}) is gone; it is recovered as soon as an agent" in line
    # The runner's lease has ~30 s left; the old agent found nothing claimable, idled 5 s out
    # and left the run `running` (with 5 s as with 2 s).
    agent = finish(tp.popen("agent", "--exit-when-idle", "2s"), timeout=25)
    assert agent.code == 0, agent
    status = tp.status(1)
    assert status["state"] == "succeeded", status
    work = tasks_by_name(status)["work"]
    assert (work["state"], work["attempts"]) == ("succeeded", 2)
    assert "lost" in tp.ok("agents", "--all").out


def test_after_a_hang_up_output_to_files_is_still_written(tp: Taskplan) -> None:
    """A hang-up means the terminal is gone, not the files output was redirected to: a run's
    end and a draining agent's log lines still reach them (only a terminal is let go)."""
    tp.write("held.yaml", """
        job: held
        tasks:
          hold: {shell: "touch held; while [ ! -f go ]; do sleep 0.05; done"}
        """)
    out_path, agent_log = tp.home / "run.out", tp.home / "agent.log"
    with open(out_path, "w") as out:
        runner = subprocess.Popen(tp.argv(("run", "held.yaml"), True), cwd=tp.home,
                                  env=clean_env(tp.env), stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, text=True)
    tp.started.append(runner)
    tp.wait_file("held")
    runner.send_signal(signal.SIGHUP)
    assert runner.wait(60) == 1
    assert "run 1 (held v1) cancelled in" in out_path.read_text()

    (tp.home / "held").unlink()
    run_id = tp.ok("run", "held", "--detach").out.strip()
    with open(agent_log, "w") as log:
        agent = subprocess.Popen(tp.argv(("agent",), True), cwd=tp.home, env=clean_env(tp.env),
                                 stdout=log, stderr=log, stdin=subprocess.DEVNULL, text=True)
    tp.started.append(agent)
    tp.wait_file("held")
    agent.send_signal(signal.SIGHUP)  # drains: the task goes on, and so does its log
    deadline = time.monotonic() + 20  # a hang guard: the line comes within 0.1 s
    while "SIGHUP: draining" not in agent_log.read_text():
        assert time.monotonic() < deadline, agent_log.read_text()
        time.sleep(0.02)
    (tp.home / "go").write_text("")
    assert agent.wait(60) == 0
    assert tp.status(run_id)["state"] == "succeeded"
    text = agent_log.read_text()
    assert f"task end: run {run_id} task hold attempt 1 succeeded" in text, text
    assert "stopped" in text.splitlines()[-1], text


def test_a_sql_statement_dies_with_its_killed_agent(tp: Taskplan, pg_url: str) -> None:
    """PostgreSQL runs a statement to its end after its client died, unless told to check:
    the statement of an agent killed with SIGKILL must not run on (and commit) while its task
    is retried elsewhere."""
    import psycopg

    marker = "killed-agent-statement"

    def on_server() -> int:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s"
                               " AND pid <> pg_backend_pid()", (f"%{marker}%",)).fetchone()
        return int(row[0]) if row else 0

    tp.write("stmt.yaml", f"""
        job: stmt
        connections: {{pg: "{pg_url}"}}
        tasks:
          q: {{connection: pg, sql: "SELECT pg_sleep(120) /* {marker} */"}}
        """)
    runner = tp.popen("run", "stmt.yaml")
    deadline = time.monotonic() + 30
    while on_server() == 0:
        assert runner.poll() is None, finish(runner)
        assert time.monotonic() < deadline, "the statement never started"
        time.sleep(0.05)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    deadline = time.monotonic() + 20  # a hang guard: it goes within a second
    while on_server():
        assert time.monotonic() < deadline, "the killed agent's statement is still running"
        time.sleep(0.05)
