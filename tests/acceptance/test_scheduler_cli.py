"""The scheduler as real processes: `serve` runs an `every: 1s` job, two schedulers never fire
twice, a SIGKILLed leader is replaced within seconds, and a four-upstream fan-in trigger fires
exactly once when its upstream runs end at the same instant in four processes."""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from taskplan.store.db import Store

TASKPLAN = str(Path(sys.executable).parent / "taskplan")


class TP:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.db = home / "tp.db"
        self.procs: list[subprocess.Popen[str]] = []

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKPLAN_")}
        env["TASKPLAN_DB"] = f"sqlite:///{self.db}"
        return env

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([TASKPLAN, *args], cwd=self.home, env=self.env(),
                              capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    def ok(self, *args: str) -> str:
        res = self(*args)
        assert res.returncode == 0, f"{args}: {res.returncode}\n{res.stdout}\n{res.stderr}"
        return res.stdout

    def start(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([TASKPLAN, *args], cwd=self.home, env=self.env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def apply(self, name: str, text: str) -> None:
        path = self.home / f"{name}.yaml"
        path.write_text(textwrap.dedent(text).lstrip())
        self.ok("apply", str(path))

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.db, timeout=30)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()


@pytest.fixture
def tp(tmp_path: Path) -> Iterator[TP]:
    t = TP(tmp_path)
    Store(f"sqlite:///{t.db}").close()  # the schema exists before processes race to
    try:
        yield t
    finally:
        for p in t.procs:
            if p.poll() is None:
                p.kill()
            p.communicate()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err


TICK = """
    job: tick
    on_overlap: allow
    schedules:
      - every: 1s
        params: {who: sched}
    tasks:
      a:
        shell: echo "hello {{ params.who }}"
"""


def test_serve_creates_and_executes_a_run_per_second(tp: TP) -> None:
    tp.apply("tick", TICK)
    serve = tp.start("serve", "--slots", "2")
    wait_until(lambda: len(tp.query("SELECT id FROM runs WHERE state = 'succeeded'")) >= 3,
               15, "three scheduled runs to succeed")
    code, err = stop(serve)
    assert code == 0, err
    # The stop is logged, as an agent's is (serve said nothing while it drained).
    assert "INFO SIGTERM: draining (running tasks finish, nothing new starts)" in err
    rows = json.loads(tp.ok("runs", "--json"))
    assert {r["trigger"] for r in rows} == {"schedule"}
    firings = tp.query("SELECT fire_at, run_id FROM schedule_firings ORDER BY fire_at")
    assert all(b - a == 1.0 for (a, _), (b, _) in itertools.pairwise(firings))
    assert tp.query("SELECT holder FROM leases WHERE until > 0") == []  # released on exit
    out = tp.ok("logs", str(rows[-1]["run_id"]), "a")
    assert "hello sched" in out


def test_serve_with_a_console_logs_json_lines_only(tp: TP) -> None:
    """With --log-format json, serve's line naming the console's address was plain text, so a
    log shipper reading stderr as JSON lines choked on it."""
    tp.apply("tick", TICK)
    serve = tp.start("serve", "--slots", "1", "--port", "0", "--log-format", "json")
    wait_until(lambda: bool(tp.query("SELECT id FROM runs WHERE state = 'succeeded'")), 15,
               "a scheduled run to succeed")
    code, err = stop(serve)
    assert code == 0, err
    lines = [json.loads(line) for line in err.splitlines()]
    [console] = [line for line in lines if line["message"].startswith("taskplan serve:")]
    assert console["url"].startswith("http://127.0.0.1:") and console["level"] == "info"
    assert any(line["message"].startswith("SIGTERM: draining") for line in lines)


def test_two_schedulers_fire_each_instant_once(tp: TP) -> None:
    tp.apply("tick", TICK)
    a = tp.start("scheduler", "--lease", "2")
    b = tp.start("scheduler", "--lease", "2")
    # (Firings missed before a scheduler started are recorded too, without a run.)
    wait_until(lambda: len(tp.query("SELECT 1 FROM schedule_firings WHERE run_id IS NOT NULL"))
               >= 4, 15, "4 firings")
    for p in (a, b):
        code, err = stop(p)
        assert code == 0, err
        assert "INFO SIGTERM: stopping" in err
    per_instant = tp.query(
        "SELECT f.fire_at, COUNT(r.id) FROM schedule_firings f JOIN runs r"
        " ON r.id = f.run_id GROUP BY f.fire_at")
    runs = tp.query("SELECT COUNT(*) FROM runs")[0][0]
    assert all(n == 1 for _, n in per_instant)
    assert runs == len(per_instant)
    assert len(tp.query("SELECT fire_at FROM schedule_firings")) == len(
        {f for (f,) in tp.query("SELECT fire_at FROM schedule_firings")})


def test_a_killed_leader_is_replaced_within_seconds(tp: TP) -> None:
    tp.apply("tick", TICK)
    first = tp.start("scheduler", "--lease", "2")
    wait_until(lambda: bool(tp.query("SELECT 1 FROM schedule_firings")), 10, "a first firing")
    second = tp.start("scheduler", "--lease", "2")
    [(holder,)] = tp.query("SELECT holder FROM leases WHERE name = 'scheduler'")
    assert f":{first.pid}:" in holder
    time.sleep(1.0)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    killed_at = time.time()
    wait_until(lambda: f":{second.pid}:" in tp.query(
        "SELECT holder FROM leases WHERE name = 'scheduler'")[0][0],
               10, "the standby to take the lease")
    # Within a few leases of 2 s, or the wait fails.
    wait_until(lambda: bool(tp.query(
        f"SELECT 1 FROM schedule_firings WHERE created_at > {killed_at}")), 10,
        "a firing by the new leader")
    # The firings missed while nobody led were caught up once (on_misfire: run_once default).
    per_instant = tp.query("SELECT fire_at, COUNT(*) FROM schedule_firings GROUP BY fire_at")
    assert all(n == 1 for _, n in per_instant)
    code, err = stop(second)
    assert code == 0, err


UPSTREAM = """
    job: {name}
    tasks:
      work:
        shell: "{command}"
"""


def test_fan_in_trigger_fires_once_when_upstreams_end_together(tp: TP) -> None:
    names = ["extract_a", "extract_b", "extract_c", "extract_d"]
    gate = tp.home / "gate"
    # Every upstream waits for the gate file, so the four runs end at the same instant.
    command = f"while [ ! -e {gate} ]; do sleep 0.01; done; [ ! -e {tp.home / 'fail'} ]"
    for name in names:
        tp.apply(name, UPSTREAM.format(name=name, command=command))
    tp.apply("load", """
        job: load
        triggers:
          - after: [extract_a, extract_b, extract_c, extract_d]
            within: 1h
            params: {mode: fanin}
        tasks:
          go:
            shell: echo "load {{ params.mode }}"
    """)

    def round_of_upstreams() -> list[int]:
        procs = [tp.start("run", name, "--workers", "1") for name in names]
        wait_until(lambda: len(tp.query(
            "SELECT 1 FROM task_runs WHERE state = 'running'")) >= 4, 20, "upstreams running")
        gate.touch()
        codes = []
        for p in procs:
            p.communicate(timeout=30)
            codes.append(p.returncode)
        gate.unlink()
        return codes

    assert round_of_upstreams() == [0, 0, 0, 0]
    rows = tp.query("SELECT job_id, upstream_key, run_id FROM trigger_firings")
    assert len(rows) == 1 and rows[0][2] is not None
    assert rows[0][1].count(":") == 4
    [(trigger, ref, params)] = tp.query(
        "SELECT r.trigger, r.trigger_ref, r.params FROM runs r JOIN jobs j ON j.id = r.job_id"
        " WHERE j.name = 'load'")
    assert trigger == "trigger" and ref == rows[0][1] and '"mode":"fanin"' in params

    # A failed upstream holds the next round back, and `jobs` says what the trigger waits for.
    (tp.home / "fail").touch()
    codes = round_of_upstreams()
    assert codes == [1, 1, 1, 1]
    assert len(tp.query("SELECT 1 FROM trigger_firings")) == 1
    listing = tp.ok("jobs")
    assert "waits for" in listing and "extract_a (run" in listing and "failed" in listing
    (tp.home / "fail").unlink()

    assert round_of_upstreams() == [0, 0, 0, 0]
    assert len(tp.query("SELECT 1 FROM trigger_firings")) == 2
    assert len(tp.query("SELECT 1 FROM runs WHERE trigger = 'trigger'")) == 2
