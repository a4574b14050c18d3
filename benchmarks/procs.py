"""Agent subprocesses for the PostgreSQL rows and idle50, and what /proc says about them.

`Agents` starts N real `taskplan agent --slots S --db URL --exit-when-idle ...` processes and
waits until each has registered and is LISTENing (or, on SQLite, registered), so that agent
start-up is never inside a timing; `stop()` sends SIGTERM (drain) and waits.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from taskplan.store.db import Store
from taskplan.store.dialects.postgresql import PostgresDialect
from taskplan.store.pgserver import NOTIFY_CHANNEL

HERE = os.path.dirname(os.path.abspath(__file__))
COUNT_DIR = os.path.join(HERE, "_count")  # holds the sitecustomize of the idle50 row
TICKS = os.sysconf("SC_CLK_TCK")
EXIT_WHEN_IDLE = "600s"  # a safety net only: the benchmark stops its agents with SIGTERM


def taskplan_exe() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "taskplan")
    return beside if os.path.exists(beside) else (shutil.which("taskplan") or "taskplan")


def proc_status_kb(pid: int, key: str) -> float:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM), 0 if the process is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return float(line.split()[1])
    except FileNotFoundError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads) from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of stat(5)


def cpu_seconds_of(pids: Iterable[int]) -> float:
    """The CPU seconds these processes used so far, those already gone left out."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue
    return total


@dataclass
class Agents:
    url: str
    workdir: str
    count: int
    slots: int
    env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    def start(self, store: Store, timeout: float = 60.0) -> None:
        env = dict(os.environ, **self.env)
        for i in range(self.count):
            log = os.path.join(self.workdir, f"agent-{os.getpid()}-{len(self.logs)}.log")
            self.logs.append(log)
            with open(log, "wb") as err:
                self.procs.append(subprocess.Popen(
                    [taskplan_exe(), "agent", "--slots", str(self.slots), "--db", self.url,
                     "--name", f"bench-{i}", "--exit-when-idle", EXIT_WHEN_IDLE],
                    cwd=self.workdir, env=env, stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=err))
        self._wait_ready(store, timeout)

    def _wait_ready(self, store: Store, timeout: float) -> None:
        pids = [p.pid for p in self.procs]
        marks = ", ".join(str(p) for p in pids)
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            with store.read() as tx:
                registered = int(tx.scalar(
                    f"SELECT COUNT(*) FROM agents WHERE state = 'alive' AND pid IN ({marks})"))
                listening = len(pids)
                dialect = store.dialect
                if isinstance(dialect, PostgresDialect):
                    # Each agent's listener connection's last statement is its LISTEN.
                    listening = int(tx.scalar(
                        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname ="
                        " current_database() AND query = :listen AND NOT (pid = ANY(:own))",
                        {"listen": f"LISTEN {NOTIFY_CHANNEL}",
                         "own": sorted(dialect.own_pids)}))
                    listening -= 1 if dialect.listening.is_set() else 0
            if registered >= len(pids) and listening >= len(pids):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"agents not ready after {timeout:.0f}s: {self.tail()}")
            time.sleep(0.05)

    def check_alive(self) -> None:
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"agent {p.pid} exited {p.returncode}: {self.tail()}")

    def tail(self) -> str:
        out = []
        for log in self.logs:
            try:
                with open(log, encoding="utf-8", errors="replace") as fh:
                    out.append(fh.read()[-2000:])
            except FileNotFoundError:
                pass
        return "\n".join(out)

    def cpu_s(self) -> float:
        """The agents' CPU seconds so far (all their threads), the exited ones' left out."""
        return cpu_seconds_of(p.pid for p in self.procs)

    def peak_rss_mb(self) -> float:
        """The largest VmHWM (peak RSS) among the agent processes, in MB."""
        return max((proc_status_kb(p.pid, "VmHWM") for p in self.procs), default=0.0) / 1024

    def stop(self, timeout: float = 60.0) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def __enter__(self) -> Agents:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
