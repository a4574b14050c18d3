"""PostgreSQL crashes (`pg_ctl stop -m immediate`) and restarts in the middle of a run with
three agents and a scheduler working on it, all real processes that are not restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pg_cluster import PgCluster

TASKPLAN = str(Path(sys.executable).parent / "taskplan")
JOB = """
job: crashy
on_misfire: run_all
on_overlap: allow
schedules:
  - every: 1s
tasks:
  each:
    foreach: {values: [1, 2, 3]}
    shell: "sleep 0.3"
  after: {shell: "true", depends_on: [each]}
"""


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    c = PgCluster()
    try:
        c.start()
        c.create_database()
        yield c
    finally:
        c.destroy()


def query(url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return [tuple(r) for r in conn.execute(sql, params).fetchall()]


def wait_until(what: str, predicate: Any, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except psycopg.OperationalError:
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slow
def test_database_crash_and_restart_mid_run(cluster: PgCluster, tmp_path: Path) -> None:
    url = cluster.url
    (tmp_path / "job.yaml").write_text(JOB)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKPLAN_")}
    env["TASKPLAN_PG_CONNECT_TIMEOUT"] = "2"
    subprocess.run([TASKPLAN, "--db", url, "apply", "job.yaml"], cwd=tmp_path, env=env,
                   check=True, capture_output=True)
    logs = [open(tmp_path / f"p{i}.log", "w") for i in range(4)]  # noqa: SIM115
    procs = [subprocess.Popen([TASKPLAN, "--db", url, "scheduler"], cwd=tmp_path, env=env,
                              stdout=logs[0], stderr=subprocess.STDOUT)]
    procs += [subprocess.Popen([TASKPLAN, "--db", url, "agent", "--slots", "2"], cwd=tmp_path,
                               env=env, stdout=logs[i], stderr=subprocess.STDOUT)
              for i in (1, 2, 3)]
    try:
        wait_until("three runs done", lambda: query(
            url, "SELECT COUNT(*) FROM runs WHERE state = 'succeeded'")[0][0] >= 3)
        cluster.crash()
        time.sleep(2.0)  # down for a while: firings fall due meanwhile
        cluster.start()
        back = time.time()
        wait_until("dispatch after the restart", lambda: query(
            url, "SELECT COUNT(*) FROM attempts WHERE started_at > %s", (back,))[0][0] > 0)
        resumed = query(url, "SELECT MIN(started_at) FROM attempts WHERE started_at > %s",
                        (back,))[0][0] - back
        print(f"dispatch resumed {resumed:.2f}s after the server was back")
        wait_until("new runs done after the restart", lambda: query(
            url, "SELECT COUNT(*) FROM runs WHERE state = 'succeeded' AND created_at > %s",
            (back,))[0][0] >= 3)
        assert all(p.poll() is None for p in procs), "a process died with the server"
        procs[0].send_signal(signal.SIGTERM)  # no more firings; the agents finish the rest
        assert procs[0].wait(30) == 0
        wait_until("every run finished", lambda: query(
            url, "SELECT COUNT(*) FROM runs WHERE finished_at IS NULL")[0][0] == 0)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = [p.wait(60) for p in procs]
        for fh in logs:
            fh.close()
    output = "\n".join((tmp_path / f"p{i}.log").read_text() for i in range(4))
    assert codes == [0, 0, 0, 0], output
    assert "Traceback" not in output, output
    # Every task run has exactly one outcome: one succeeded attempt, no attempt twice.
    bad = query(url, "SELECT t.run_id, t.task, t.item_index, t.state, a.attempt, a.state,"
                     " a.error FROM task_runs t JOIN attempts a ON a.task_run_id = t.id"
                     " WHERE a.state <> 'succeeded' OR t.state <> 'succeeded' ORDER BY 1, 2, 3")
    assert query(url, "SELECT DISTINCT state FROM runs") == [("succeeded",)], [b[6] for b in bad]
    assert query(url, "SELECT DISTINCT state FROM task_runs WHERE kind <> 'barrier'") == [
        ("succeeded",)]
    assert query(url, "SELECT task_run_id FROM attempts WHERE state = 'succeeded'"
                      " GROUP BY task_run_id HAVING COUNT(*) <> 1") == []
    assert query(url, "SELECT COUNT(*) FROM task_runs t WHERE kind <> 'barrier' AND NOT EXISTS"
                      " (SELECT 1 FROM attempts a WHERE a.task_run_id = t.id"
                      " AND a.state = 'succeeded')") == [(0,)]
    # Every second from the first firing to the last fired once (run_all makes up the
    # downtime), each with its own run.
    fired = query(url, "SELECT fire_at, run_id FROM schedule_firings ORDER BY fire_at")
    instants = [f for f, _ in fired]
    assert instants == [instants[0] + i for i in range(len(instants))]
    assert all(r is not None for _, r in fired)
    assert query(url, "SELECT COUNT(*) FROM runs WHERE trigger = 'schedule'")[0][0] == len(fired)
