"""Routing through the CLI: agents with different labels in different processes on
PostgreSQL, foreground runs executed in their own process, and the warnings and reasons a
user sees when nobody can take the work."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import psycopg
import pytest
from acceptance_helpers import Taskplan, finish, states, tasks_by_name
from test_postgres_agents import PgTaskplan, pgtp, sql, wait_until

__all__ = ["pgtp"]  # the fixture, shared with the other PostgreSQL acceptance tests

ROUTED = """
job: routed
tasks:
{tasks}
"""
NEEDS = {"plain": [], "etl": ["etl"], "gpu": ["gpu"], "both": ["etl", "gpu"]}


def agents_up(tp: PgTaskplan) -> int:
    """Agents registered so far (0 while the first one still creates the schema)."""
    try:
        return len(sql(tp, "SELECT 1 FROM agents WHERE state = 'alive'"))
    except psycopg.errors.UndefinedTable:
        return 0


def routed_job(tp: Taskplan, per_kind: int = 3) -> Path:
    lines = [f"  {kind}{i}: {{shell: 'sleep 0.05', agent_labels: {labels}}}"
             for kind, labels in NEEDS.items() for i in range(per_kind)]
    return tp.write("routed.yaml", ROUTED.format(tasks="\n".join(lines)))


def test_agents_of_different_labels_run_only_what_they_may(pgtp: PgTaskplan) -> None:
    path = routed_job(pgtp)
    etl = pgtp.agent("--slots", "2", "--name", "etl", "--labels", "etl")
    gpu = pgtp.agent("--slots", "2", "--name", "gpu", "--labels", "gpu")
    wait_until("two agents", lambda: agents_up(pgtp) == 2,
               procs=(etl, gpu))
    res = pgtp.ok("run", str(path), "--detach")
    run_id = int(res.out)  # stdout is the id alone, the warning went to stderr
    assert "no live agent has labels etl, gpu (needed by both0, both1, both2)" in res.err
    # Everything but the tasks needing both labels runs; those wait, visibly.
    wait_until("the tasks some agent may run", lambda: sql(
        pgtp, "SELECT COUNT(*) FROM task_runs WHERE run_id = %s AND state = 'succeeded'",
        run_id) == [(9,)], procs=(etl, gpu))
    status = pgtp.status(run_id)
    for name in ("both0", "both1", "both2"):
        row = tasks_by_name(status)[name]
        assert row["state"] == "ready"
        assert row["waiting"] == "waiting for an agent with labels etl, gpu"
    text = pgtp.ok("status", str(run_id)).out
    assert "waiting for an agent with labels etl, gpu" in text
    both = pgtp.agent("--slots", "2", "--name", "both", "--labels", "gpu,etl",
                      "--exit-when-idle", "1s")
    assert finish(both).code == 0
    assert sql(pgtp, "SELECT state FROM runs WHERE id = %s", run_id) == [("succeeded",)]
    # Every attempt ran on an agent having every label its task needs.
    ran = sql(pgtp, "SELECT t.task, a.name, a.labels FROM attempts x JOIN task_runs t"
                    " ON t.id = x.task_run_id JOIN agents a ON a.id = x.agent_id"
                    " WHERE x.run_id = %s", run_id)
    assert len(ran) == 12
    for task, agent, labels in ran:
        assert set(NEEDS[task.rstrip("0123456789")]) <= set(labels.split(",")), (task, agent)
        assert f"host={os.uname().nodename}" in labels.split(",")
    assert {a for t, a, _ in ran if t.startswith("both")} == {"both"}
    listed = {a["name"]: a for a in pgtp.ok("agents", "--json", "--all").json()}
    assert listed["both"]["labels"] == sorted(["etl", "gpu", f"host={os.uname().nodename}"])
    for proc in (etl, gpu):
        proc.send_signal(signal.SIGTERM)
        assert finish(proc).code == 0


FOREGROUND = """
job: fg
tasks:
{tasks}
"""


def test_a_foreground_run_executes_in_its_own_process(pgtp: PgTaskplan) -> None:
    # Each task fails unless it sees the variable only the foreground shell has.
    tasks = "\n".join(f"  t{i}: {{shell: 'sleep 0.1; test \"$FG_MARK\" = here'}}"
                      for i in range(4))
    path = pgtp.write("fg.yaml", FOREGROUND.format(tasks=tasks))
    other = pgtp.agent("--slots", "4", "--name", "other")
    wait_until("the agent", lambda: agents_up(pgtp) == 1,
               procs=(other,))
    res = pgtp("run", str(path), "--workers", "1", env={"FG_MARK": "here"})
    assert res.code == 0, res.out + res.err
    assert sql(pgtp, "SELECT DISTINCT a.name <> 'other' FROM attempts x JOIN agents a"
                     " ON a.id = x.agent_id") == [(True,)]
    # --distributed shares them: the agent (without the variable) takes some and fails them.
    res = pgtp("run", str(path), "--workers", "1", "--distributed", env={"FG_MARK": "here"})
    assert res.code == 1, res.out + res.err
    assert ("other",) in sql(pgtp, "SELECT DISTINCT a.name FROM attempts x JOIN agents a"
                                   " ON a.id = x.agent_id WHERE x.run_id = 2")
    other.send_signal(signal.SIGTERM)
    assert finish(other).code == 0


@pytest.mark.slow
def test_a_dead_foreground_process_leaves_its_run_to_other_agents(pgtp: PgTaskplan) -> None:
    path = pgtp.write("fg.yaml", """
        job: fgdead
        tasks:
          slow: {shell: "echo $$ > s.tmp && mv s.tmp started && exec sleep 30", retries: 1}
          after: {shell: "true", depends_on: [slow]}
        """)
    lease = {"TASKPLAN_LEASE_SECONDS": "2"}
    fg = pgtp.popen("run", str(path))
    pgtp.wait_file("started", fg)
    other = pgtp.agent("--slots", "2", "--name", "other", env=lease)
    status = pgtp.status(1)
    assert tasks_by_name(status)["after"]["waiting"] == "waiting for upstreams: slow"
    os.kill(fg.pid, signal.SIGKILL)
    fg.wait()
    os.kill(int((pgtp.home / "started").read_text()), signal.SIGKILL)  # its orphaned task
    (pgtp.home / "started").unlink()
    # The pin held by the dead process lapses once its agent is declared lost (lease 30 s by
    # default for `run`; the other agent's reaper marks it): make it expire now.
    with psycopg.connect(pgtp.pg_url, autocommit=True) as conn:
        conn.execute("UPDATE agents SET lease_until = 0 WHERE name <> 'other'")
    pgtp.wait_file("started", other, timeout=20)
    ran = sql(pgtp, "SELECT a.name, x.state FROM attempts x JOIN agents a ON a.id = x.agent_id"
                    " ORDER BY x.attempt")
    assert ran[0][1] == "lost" and ran[-1] == ("other", "running")
    other.send_signal(signal.SIGINT)
    finish(other)


def test_detach_warns_and_status_says_no_agent_alive(tp: Taskplan) -> None:
    path = routed_job(tp, per_kind=1)
    res = tp.ok("run", str(path), "--detach")
    assert res.out.strip() == "1"
    assert res.err.startswith("warning: no agent alive: run 1 waits until one starts")
    status = tp.status(1)
    assert {t["name"]: t.get("waiting") for t in status["tasks"]} == {
        n: "no agent alive" for n in ("plain0", "etl0", "gpu0", "both0")}
    assert states(status) == {n: "ready" for n in ("plain0", "etl0", "gpu0", "both0")}


def test_detach_of_a_run_that_ended_at_once_gives_no_agent_warning(tp: Taskplan) -> None:
    # Every task disabled: the run succeeds as it is created, and no agent is needed.
    tp.write("off.yaml", """
        job: off
        tasks:
          a: {shell: "true", enabled: false}
    """)
    res = tp.ok("run", "off.yaml", "--detach")
    assert res.out.strip() == "1" and res.err == "", res.err
    assert tp.status(1)["state"] == "succeeded"


def test_bad_labels_and_foreground_runs_lacking_labels_are_refused(tp: Taskplan) -> None:
    path = routed_job(tp, per_kind=1)
    res = tp("run", str(path), "--labels", "etl,has space")
    assert res.code == 2 and "--labels: 'has space' is not an agent label" in res.err
    # too long, or starting with a sign: the line says which rule it breaks
    for label in ("x" * 101, "-gpu"):
        res = tp("run", str(path), "--labels", label)
        assert res.code == 2 and "up to 100" in res.err and "starting with a letter" in res.err
    res = tp("run", str(path), "--labels", "etl")
    assert res.code == 2, res.err
    assert res.err.strip().startswith("taskplan: task gpu0 (and 1 more task(s)) needs agent"
                                      " label(s) gpu, which this process lacks")
    assert not tp.db_path.exists()  # nothing was written: not even the job, nor the store
    res = tp("run", str(path), "--labels", "etl,gpu")
    assert res.code == 0, res.err
    res = tp("agent", "--labels", ",,bad,label!", "--exit-when-idle", "1s")
    assert res.code == 2 and "'label!'" in res.err


def test_a_pool_sized_in_taskplan_toml_keeps_its_size(tp: Taskplan) -> None:
    """taskplan.toml sized mart 1 and a job file 3: `apply` set 3, the next command of any
    kind set 1 again, so the size a run got depended on which command ran last."""
    import sqlite3

    def sizes() -> list[tuple[str, int]]:
        with sqlite3.connect(tp.db_path) as conn:
            return conn.execute("SELECT name, size FROM pools ORDER BY name").fetchall()

    tp.write("taskplan.toml", f'db = "sqlite:///{tp.db_path}"\npools = {{mart = 1}}\n')
    tp.write("pj.yaml", "job: pj\npools: {mart: 3, other: 2}\ntasks:\n"
                        "  a: {shell: 'true', pool: mart}\n  b: {shell: 'true', pool: other}\n")
    tp.ok("apply", "pj.yaml", db=False)
    assert sizes() == [("mart", 1), ("other", 2)]  # the job sizes only what the file does not
    tp.ok("run", "pj", db=False)
    assert sizes() == [("mart", 1), ("other", 2)]
    tp.write("taskplan.toml", f'db = "sqlite:///{tp.db_path}"\n')
    tp.ok("apply", "pj.yaml", db=False)
    assert sizes() == [("mart", 3), ("other", 2)]


def test_an_agent_name_the_store_cannot_keep_is_refused(pgtp: PgTaskplan) -> None:
    """PostgreSQL refused an --name over 200 characters with its own error after the agent
    had started (StringDataRightTruncation); SQLite kept it. Both refuse it up front now."""
    for name, words in [("x" * 201, "got 201"), ("a\nb", "got 3 with a control character")]:
        res = pgtp("agent", "--name", name, "--exit-when-idle", "1s")
        assert res.code == 2 and res.err == (
            f"taskplan: --name: expected at most 200 printable characters, {words}\n"), res
    assert pgtp("agent", "--name", "x" * 200, "--exit-when-idle", "0.1s").code == 0


def test_distributed_run_warns_of_tasks_neither_it_nor_a_live_agent_can_take(tp: Taskplan
                                                                             ) -> None:
    path = routed_job(tp, per_kind=1)
    proc = tp.popen("run", str(path), "--distributed", "--labels", "etl")
    assert proc.stderr is not None
    warnings = [proc.stderr.readline(), proc.stderr.readline()]
    status = tp.ok("status", "1").out
    # its forecast says it holds only if an agent comes for what none can take
    assert "if an agent comes for the 2 task(s) waiting for one" in status.splitlines()[1]
    tp.ok("cancel", "1")
    out, rest = proc.communicate(timeout=60)
    assert proc.returncode == 1, out + rest
    # its own agent has etl: what needs gpu waits for another agent, and it says so
    assert warnings == [
        "warning: no live agent has labels etl, gpu (needed by both0): run 1 waits until one"
        " starts (taskplan agent [--labels ...], or taskplan serve)\n",
        "warning: no live agent has labels gpu (needed by gpu0): run 1 waits until one starts"
        " (taskplan agent [--labels ...], or taskplan serve)\n"]
    assert rest == ""


def test_labels_naming_another_host_are_refused(tp: Taskplan) -> None:
    """`--labels host=db2` on another machine let an agent take the tasks pinned to db2 (a
    pgAgent job's host, say); only the agent's own host label may be given."""
    tp.write("one.yaml", "job: one\ntasks:\n  a: {shell: 'true'}\n")
    for command in (["agent", "--exit-when-idle", "0.1s"], ["run", "one.yaml"]):
        res = tp(*command, "--labels", "etl,host=not-this-machine")
        assert res.code == 2 and res.err == (
            "taskplan: --labels: 'host=not-this-machine' names another machine; this agent"
            f" has host={socket.gethostname()} already, and only that one\n"), res
    tp.ok("run", "one.yaml", "--labels", f"etl,host={socket.gethostname()}")
