"""Helpers of the web suite: the demo job, running a run to its end in this process, and
`taskplan web|serve` subprocesses on free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from taskplan.agent import Agent
from taskplan.engine import Engine
from taskplan.model import TERMINAL_RUN_STATES
from taskplan.spec import load_job_text

TASKPLAN = str(Path(sys.executable).parent / "taskplan")
TERMINAL = {str(s) for s in TERMINAL_RUN_STATES}
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"

DEMO = """
job: demo
description: a job for the console tests
params: {day: "2026-11-20", note: "x"}
schedules:
  - cron: "0 2 * * *"
    name: nightly
tasks:
  extract:
    shell: printf 'extract {{ params.day }}\\n\\033[31mred\\033[0m <script>alert(1)</script>\\n'
  items:
    foreach: {values: [1, 2, 3]}
    shell: echo item {{ item }}
    depends_on: [extract]
  fail:
    shell: echo "postgresql://bob:secret@db/x failed" >&2; exit 3
    depends_on: [extract]
  load:
    shell: echo done
    depends_on: [items, fail]
    trigger: all_done
"""


def apply_text(engine: Engine, text: str, base_dir: Path | None = None) -> int:
    spec = load_job_text(textwrap.dedent(text), "job.yaml", str(base_dir or Path.cwd()))
    version_id, _, _ = engine.apply(spec)
    return version_id


def run_to_end(engine: Engine, run_id: int, timeout: float = 30.0) -> str:
    agent = Agent(engine, slots=4, root_run_id=run_id, lease=30.0)
    deadline = time.monotonic() + timeout

    def done(a: Agent) -> bool:
        if time.monotonic() > deadline:
            a.cancel_running()
            raise AssertionError(f"run {run_id} did not end within {timeout}s")
        return run_id in a.finished_runs or engine.run_state(run_id) in TERMINAL

    agent.run(until=done)
    return engine.run_state(run_id)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(db: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKPLAN_")}
    env.update(TASKPLAN_DB=db, PYTHONUNBUFFERED="1")
    return env


def wait_until(check: Callable[[], bool], timeout: float = 20.0, what: str = "condition"
               ) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Server:
    """A `taskplan web` or `taskplan serve --port` subprocess on a free port."""

    def __init__(self, args: list[str], db: str, cwd: Path, token: str | None = None,
                 port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.token = token
        self.stderr = ""  # what the server wrote there, once stopped
        self.proc = subprocess.Popen([TASKPLAN, *args, "--port", str(self.port)], cwd=cwd,
                                     env=clean_env(db), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.base, headers=headers, timeout=10.0)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.proc.communicate()}")
            try:
                return self.http.get("/api/v1/agents").status_code in (200, 401)
            except httpx.TransportError:
                return False

        wait_until(up, 30.0, "the server to answer")

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()
        if self.proc.stderr:
            self.stderr = self.proc.stderr.read()
            self.proc.stderr.close()
