"""Several real `taskplan agent` processes on one PostgreSQL database.

Every task's side effect is a row keyed by its task name in a table with a unique constraint,
written straight to PostgreSQL (not through taskplan), so a task executed twice fails loudly
and a count proves "exactly once". Scenarios: 1,000 tasks over three agents; an agent killed
with SIGKILL mid-task (its task finishes elsewhere after lease expiry); SIGTERM drains and a
second SIGTERM cancels; the store connection cut mid-run (a TCP proxy in front of the server
drops every connection and refuses new ones for 2 s) with the run still succeeding.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from acceptance_helpers import Taskplan, clean_env, finish

SIDEFX = '''
import os, threading, time
import psycopg

_local = threading.local()


def _conn(dsn):
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = psycopg.connect(dsn, autocommit=True)
    return conn


def effect(ctx):
    """Record this task once (unique name); optionally mark the start and sleep first.

    The pid recorded is the agent's: python tasks run in worker processes it starts.
    """
    here = ctx.params["dir"]
    if ctx.params.get("mark"):
        path = os.path.join(here, f"started-{ctx.task}")
        with open(path + ".tmp", "w") as fh:
            fh.write(str(os.getppid()))
        os.replace(path + ".tmp", path)
    time.sleep(float(ctx.params.get("sleep", 0)))
    _conn(ctx.params["dsn"]).execute(
        "INSERT INTO effects (name, pid, attempt) VALUES (%s, %s, %s)",
        (ctx.task, os.getppid(), ctx.attempt))
    return {"pid": os.getppid()}
'''


class PgTaskplan(Taskplan):
    """`taskplan` in a test folder against a PostgreSQL database (maybe through a proxy)."""

    def __init__(self, home: Path, url: str) -> None:
        super().__init__(home=home, db_path=home / "unused.db")
        self.pg_url = url

    @property
    def url(self) -> str:
        return self.pg_url

    def agent(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [*self.argv(("agent", *args), True)], cwd=self.home,
            env=clean_env({**self.env, **(env or {})}), text=True, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.started.append(proc)
        return proc


@pytest.fixture
def pgtp(pg_url: str, tmp_path: Path) -> Iterator[PgTaskplan]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE effects (name text PRIMARY KEY, pid int NOT NULL,"
                     " attempt int NOT NULL)")
    tp = PgTaskplan(tmp_path, pg_url)
    tp.write("sidefx.py", SIDEFX)
    try:
        yield tp
    finally:
        tp.cleanup()


def job_file(tp: PgTaskplan, name: str, tasks: dict[str, str], **params: Any) -> Path:
    lines = [f"job: {name}", "params:", f"  dsn: '{tp.pg_url}'", f"  dir: '{tp.home}'"]
    lines += [f"  {k}: {v!r}" for k, v in params.items()]
    lines.append("tasks:")
    lines += [f"  {task}: {body}" for task, body in tasks.items()]
    return tp.write(f"{name}.yaml", "\n".join(lines) + "\n")


def sql(tp: PgTaskplan, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(tp.pg_url, autocommit=True) as conn:
        return list(conn.execute(query, args).fetchall())


def wait_until(what: str, cond: Any, timeout: float = 30.0,
               procs: tuple[subprocess.Popen[str], ...] = ()) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        for proc in procs:
            if proc.poll() is not None:
                _, err = proc.communicate()
                pytest.fail(f"agent exited {proc.returncode} while waiting for {what}\n{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def run_state(tp: PgTaskplan, run_id: int) -> str:
    return str(sql(tp, "SELECT state FROM runs WHERE id = %s", run_id)[0][0])


def effects(tp: PgTaskplan) -> int:
    return int(sql(tp, "SELECT COUNT(*) FROM effects")[0][0])


def assert_exactly_once(tp: PgTaskplan, run_id: int, n: int) -> None:
    assert run_state(tp, run_id) == "succeeded"
    assert sql(tp, "SELECT COUNT(*), COUNT(DISTINCT name) FROM effects") == [(n, n)]
    # No attempt beyond the one that wrote the effect succeeded.
    assert sql(tp, "SELECT COUNT(*) FROM attempts WHERE run_id = %s AND state = 'succeeded'",
               run_id) == [(n,)]
    assert sql(tp, "SELECT COUNT(*) FROM task_runs WHERE run_id = %s AND state = 'succeeded'"
               " AND kind = 'task'", run_id) == [(n,)]


def test_three_agents_execute_1000_tasks_exactly_once(pgtp: PgTaskplan) -> None:
    n = 1000
    path = job_file(pgtp, "thousand", {f"t{i:04d}": '{python: "sidefx:effect"}'
                                       for i in range(n)})
    run_id = int(pgtp.ok("run", str(path), "--detach").out)
    started = time.monotonic()
    agents = [pgtp.agent("--slots", "4", "--name", f"a{i}", "--exit-when-idle", "2s")
              for i in range(3)]
    results = [finish(p, timeout=80) for p in agents]
    elapsed = time.monotonic() - started
    for res in results:
        assert res.code == 0, res.err
    assert_exactly_once(pgtp, run_id, n)
    per_agent = sql(pgtp, "SELECT a.name, COUNT(*) FROM attempts t JOIN agents a"
                          " ON a.id = t.agent_id WHERE t.run_id = %s GROUP BY a.name", run_id)
    assert sum(c for _, c in per_agent) == n
    assert len(per_agent) >= 2, per_agent  # the work was shared
    listed = pgtp.ok("agents", "--json", "--all").json()
    assert sorted((a["name"], a["state"], a["slots"]) for a in listed) == [
        ("a0", "stopped", 4), ("a1", "stopped", 4), ("a2", "stopped", 4)]
    print(f"1000 tasks over 3 agents in {elapsed:.1f}s (incl. start-up): {per_agent}")


def test_a_killed_agents_task_is_finished_by_another(pgtp: PgTaskplan) -> None:
    # The task must outlast the second agent's start (a few seconds on a loaded machine).
    path = job_file(pgtp, "victim", {"slow": '{python: "sidefx:effect", retries: 1}'},
                    mark=1, sleep=4.0)
    run_id = int(pgtp.ok("run", str(path), "--detach").out)
    lease = {"TASKPLAN_LEASE_SECONDS": "3"}
    first = pgtp.agent("--slots", "2", "--name", "first", env=lease)
    marker = pgtp.home / "started-slow"
    wait_until("the task to start", marker.exists, procs=(first,))
    assert int(marker.read_text()) == first.pid
    second = pgtp.agent("--slots", "2", "--name", "second", "--exit-when-idle", "6s", env=lease)
    wait_until("the second agent", lambda: len(sql(
        pgtp, "SELECT 1 FROM agents WHERE name = 'second'")) == 1, procs=(second,))
    os.kill(first.pid, signal.SIGKILL)
    first.communicate()
    # Its process is gone: the second agent's next beat (within a second) or, at the latest,
    # the end of its 3 s lease hands the task back; 20 s only bounds the wait.
    wait_until("the run to end", lambda: run_state(pgtp, run_id) != "running", timeout=20,
               procs=(second,))
    assert_exactly_once(pgtp, run_id, 1)
    assert sql(pgtp, "SELECT pid FROM effects") == [(second.pid,)]
    assert sql(pgtp, "SELECT attempt, state, error FROM attempts WHERE run_id = %s"
                     " ORDER BY attempt", run_id) == [
        (1, "lost", "agent lost"), (2, "succeeded", None)]
    listed = {a["name"]: a for a in pgtp.ok("agents", "--json", "--all").json()}
    assert listed["first"]["state"] == "lost"
    assert listed["second"]["state"] in ("alive", "stopped")
    (lost_at, retried_at), = sql(pgtp, "SELECT a.finished_at, b.started_at FROM attempts a"
                                       " JOIN attempts b ON b.task_run_id = a.task_run_id"
                                       " WHERE a.run_id = %s AND a.attempt = 1"
                                       " AND b.attempt = 2", run_id)
    assert lost_at <= retried_at  # the lost attempt was closed before its retry started
    second.send_signal(signal.SIGTERM)
    assert finish(second).code == 0


def test_sigterm_drains_and_a_second_sigterm_cancels(pgtp: PgTaskplan) -> None:
    path = job_file(pgtp, "drainme", {f"d{i}": '{python: "sidefx:effect"}' for i in range(6)},
                    mark=1, sleep=1.0)
    run_id = int(pgtp.ok("run", str(path), "--detach").out)
    agent = pgtp.agent("--slots", "2", "--name", "drainer")
    wait_until("two tasks to start",
               lambda: len(list(pgtp.home.glob("started-d*"))) == 2, procs=(agent,))
    agent.send_signal(signal.SIGTERM)
    res = finish(agent, timeout=20)
    assert res.code == 0, res.err
    assert effects(pgtp) == 2  # the running ones finished ...
    counts = dict(sql(pgtp, "SELECT state, COUNT(*) FROM task_runs WHERE run_id = %s"
                            " GROUP BY state", run_id))
    assert counts == {"succeeded": 2, "ready": 4}  # ... and nothing new started
    assert [a["state"] for a in pgtp.ok("agents", "--json", "--all").json()] == ["stopped"]
    rest = pgtp.agent("--slots", "4", "--exit-when-idle", "1s")
    assert finish(rest).code == 0
    assert_exactly_once(pgtp, run_id, 6)

    long_path = pgtp.write("long.yaml", """
        job: long
        tasks:
          long: {shell: "touch started-long; sleep 30"}
        """)
    long_run = int(pgtp.ok("run", str(long_path), "--detach").out)
    agent = pgtp.agent("--slots", "1", "--name", "stubborn")
    wait_until("the long task", (pgtp.home / "started-long").exists, procs=(agent,))
    agent.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert agent.poll() is None  # draining: waits for the task
    agent.send_signal(signal.SIGTERM)
    res = finish(agent, timeout=15)  # fails if it waited for the 30 s task
    assert res.code == 0, res.err
    assert sql(pgtp, "SELECT state FROM task_runs WHERE run_id = %s", long_run) == [
        ("cancelled",)]
    assert sql(pgtp, "SELECT state FROM attempts WHERE run_id = %s", long_run) == [
        ("cancelled",)]


class CutProxy:
    """A TCP proxy to PostgreSQL that can drop every connection and refuse new ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._server: socket.socket | None = None
        self._stop = threading.Event()
        self.cuts = 0
        self.open()

    def open(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for s in (client, upstream):  # Nagle + delayed ACKs would add 40-200 ms stalls
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        raise OSError("closed")
                    (b if src is a else a).sendall(data)
        except (OSError, ValueError):
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self, seconds: float) -> None:
        """What clients of a restarting server see: connections reset, then refusals."""
        assert self._server is not None
        try:  # wakes the thread blocked in accept(); close() alone would not
            self._server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._server.close()
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass
        self.cuts += 1
        time.sleep(seconds)
        self.open()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        with self._lock:
            for s in self._socks:
                try:
                    s.close()
                except OSError:
                    pass


def test_the_run_succeeds_across_a_store_outage(pgtp: PgTaskplan) -> None:
    info = psycopg.conninfo.conninfo_to_dict(pgtp.pg_url)
    proxy = CutProxy((str(info.get("host", "127.0.0.1")), int(info.get("port", 5432))))
    direct = pgtp.pg_url
    try:
        via_proxy = (f"postgresql://{info.get('user', 'postgres')}@127.0.0.1:{proxy.port}/"
                     f"{info['dbname']}")
        n = 300
        path = job_file(pgtp, "outage", {f"o{i:03d}": '{python: "sidefx:effect"}'
                                         for i in range(n)}, sleep=0.02)
        pgtp.pg_url = via_proxy  # taskplan goes through the proxy; the effects (dsn) do not
        run_id = int(pgtp.ok("run", str(path), "--detach").out)
        agents = [pgtp.agent("--slots", "4", "--name", f"o{i}") for i in range(2)]
        pgtp.pg_url = direct
        wait_until("some progress", lambda: effects(pgtp) >= 60, procs=tuple(agents))
        cut_at = time.time()
        proxy.cut(2.0)
        done_before = effects(pgtp)
        wait_until("the run to end", lambda: run_state(pgtp, run_id) != "running", timeout=45,
                   procs=tuple(agents))
        assert done_before < n  # the outage really happened mid-run
        # Attempts that were running when the store went away were recorded once it was back
        # (the event's time is when the store recorded it; finished_at is when it ended).
        assert sql(pgtp, "SELECT COUNT(*) > 0 FROM attempts a JOIN events e"
                         " ON e.task_run_id = a.task_run_id AND e.state = 'succeeded'"
                         " WHERE a.run_id = %s AND a.started_at < %s AND e.at > %s",
                   run_id, cut_at, cut_at + 2.0) == [(True,)]
        assert_exactly_once(pgtp, run_id, n)
        for proc in agents:
            proc.send_signal(signal.SIGTERM)
        logs = [finish(p) for p in agents]
        for res in logs:
            assert res.code == 0, res.err
        assert any("store unavailable" in res.err for res in logs), [r.err for r in logs]
        assert any("store back" in res.err for res in logs)
    finally:
        pgtp.pg_url = direct
        proxy.close()


def test_taskplan_run_carries_on_across_a_store_outage(pgtp: PgTaskplan) -> None:
    info = psycopg.conninfo.conninfo_to_dict(pgtp.pg_url)
    proxy = CutProxy((str(info.get("host", "127.0.0.1")), int(info.get("port", 5432))))
    direct = pgtp.pg_url
    try:
        n = 100
        path = job_file(pgtp, "inproc", {f"r{i:03d}": '{python: "sidefx:effect"}'
                                         for i in range(n)}, sleep=0.02)
        pgtp.pg_url = (f"postgresql://{info.get('user', 'postgres')}@127.0.0.1:{proxy.port}/"
                       f"{info['dbname']}")
        proc = pgtp.popen("run", str(path), "--workers", "4")
        pgtp.pg_url = direct
        wait_until("some progress", lambda: effects(pgtp) >= 20, procs=(proc,))
        proxy.cut(2.0)
        res = finish(proc)
        assert res.code == 0, res.out + res.err
        assert "succeeded" in res.out
        run_id = int(sql(pgtp, "SELECT MAX(id) FROM runs")[0][0])
        assert_exactly_once(pgtp, run_id, n)
    finally:
        pgtp.pg_url = direct
        proxy.close()


def test_a_foreach_gets_its_end_line_on_the_server_step(pgtp: PgTaskplan) -> None:
    # On PostgreSQL the items' successes go through the server step; the one that ends the
    # foreach hands the step to the general path, which reports the foreach's end.
    pgtp.write("fe.yaml", "job: fe\ntasks:\n  each: {foreach: {values: [1, 2, 3, 4, 5]},"
               " shell: \"true\"}\n  after: {shell: \"true\", depends_on: [each]}\n")
    res = pgtp.ok("run", "fe.yaml", "--workers", "4")
    ends = [" ".join(ln.split()[2:]) for ln in res.out.splitlines()]
    assert ends.index("each succeeded") > max(i for i, e in enumerate(ends)
                                              if e.startswith("each[") and "succeeded" in e)
    assert ends.index("each succeeded") < ends.index("after running"), res.out
    assert res.out.splitlines()[-1].endswith(": 7 succeeded"), res.out


def test_ctrl_c_of_a_foreground_run_cancels_it(pgtp: PgTaskplan) -> None:
    # Ctrl-C killed the run's attempts before its cancel reached the store: on PostgreSQL the
    # kills were often recorded first ("cancelled: agent stopped"), the tasks after them ended
    # upstream_failed as after a failure, and a run they all ended that way ended failed, not
    # cancelled. The run is cancelled first, then what runs is killed.
    pgtp.write("slow.yaml", """
        job: slow
        tasks:
          a: {shell: "touch a_started; exec sleep 30"}
          b: {shell: "touch b_started; exec sleep 30"}
          c: {shell: echo c, depends_on: [a]}
          d: {shell: echo d, depends_on: [b]}
    """)
    for run_id in (1, 2, 3, 4):
        for name in ("a_started", "b_started"):
            (pgtp.home / name).unlink(missing_ok=True)
        proc = pgtp.popen("run", "slow.yaml", "--workers", "4")
        pgtp.wait_file("a_started", proc=proc)
        pgtp.wait_file("b_started", proc=proc)
        proc.send_signal(signal.SIGINT)
        assert finish(proc).code == 1
        status = pgtp.ok("status", str(run_id), "--json").json()
        assert status["state"] == "cancelled", status
        assert {t["name"]: (t["state"], t["error"]) for t in status["tasks"]} == {
            "a": ("cancelled", None), "b": ("cancelled", None),
            "c": ("skipped", None), "d": ("skipped", None)}, status
