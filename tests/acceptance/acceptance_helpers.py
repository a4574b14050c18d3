"""Acceptance helpers: the real `taskplan` console script in subprocesses, one store per test.

Every test gets its own folder (tmp_path) holding its job files and its SQLite store. Commands
run with that folder as the working directory and with TASKPLAN_DB removed from the
environment, so only what a test sets decides which store is used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

TASKPLAN = str(Path(sys.executable).parent / "taskplan")
STEP_TIMEOUT = 60.0


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKPLAN_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Taskplan:
    """Runs `taskplan` in a test's folder against that folder's SQLite store."""

    home: Path
    db_path: Path
    env: dict[str, str] = field(default_factory=dict)
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db_path}"

    def write(self, name: str, text: str) -> Path:
        path = self.home / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    def argv(self, args: tuple[str, ...], db: bool) -> list[str]:
        return [TASKPLAN, *(["--db", self.url] if db else []), *args]

    def __call__(self, *args: str, db: bool = True, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None, timeout: float = STEP_TIMEOUT) -> Result:
        proc = subprocess.run(
            self.argv(args, db), cwd=cwd or self.home, env=clean_env({**self.env, **(env or {})}),
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str, **kw: Any) -> Result:
        res = self(*args, **kw)
        assert res.code == 0, f"taskplan {' '.join(args)} -> {res.code}\n{res.out}\n{res.err}"
        return res

    def popen(self, *args: str, db: bool = True) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            self.argv(args, db), cwd=self.home, env=clean_env(self.env), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )
        self.started.append(proc)
        return proc

    def cleanup(self) -> None:
        """Stop what a failed test left running (SIGTERM cancels a run and kills its tasks)."""
        for proc in self.started:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.communicate(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()

    def many(self, *commands: tuple[str, ...], db: bool = True) -> list[Result]:
        """Independent commands at once (each start-up costs most of a second of CPU)."""
        procs = [self.popen(*args, db=db) for args in commands]
        return [finish(p) for p in procs]

    def wait_file(self, name: str, proc: subprocess.Popen[str] | None = None,
                  timeout: float = 30.0) -> Path:
        """Wait until a task has created the file `name` in the test folder."""
        path = self.home / name
        deadline = time.monotonic() + timeout
        while not path.exists():
            if proc is not None and proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"taskplan exited {proc.returncode} while waiting\n{out}\n{err}")
            if time.monotonic() > deadline:
                said = ""
                if proc is not None:  # what the process printed says why it never came
                    proc.kill()
                    out, err = proc.communicate()
                    said = f"\nits process printed:\n{out}\n{err}"
                pytest.fail(f"{name} never appeared{said}")
            time.sleep(0.02)
        return path

    def status(self, run_id: int | str) -> dict[str, Any]:
        data = self.ok("status", str(run_id), "--json").json()
        assert isinstance(data, dict)
        return data

    def wait_for(self, run_id: int | str, predicate: Callable[[dict[str, Any]], bool],
                 proc: subprocess.Popen[str] | None = None, timeout: float = 30.0
                 ) -> dict[str, Any]:
        """Poll `status RUN --json` until predicate(status) holds."""
        deadline = time.monotonic() + timeout
        while True:
            res = self("status", str(run_id), "--json")
            if res.code == 0:
                data = res.json()
                if predicate(data):
                    return data
            if proc is not None and proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"taskplan exited {proc.returncode} while waiting\n{out}\n{err}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting on run {run_id}: {res.out}{res.err}")
            time.sleep(0.1)


def tasks_by_name(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in status["tasks"]}


def states(status: dict[str, Any]) -> dict[str, str]:
    return {t["name"]: t["state"] for t in status["tasks"]}


def finish(proc: subprocess.Popen[str], timeout: float = STEP_TIMEOUT) -> Result:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"taskplan did not exit in {timeout}s\n{out}\n{err}")
    return Result(proc.returncode, out, err)


def live_processes(marker: str) -> list[str]:
    """Processes (not zombies) whose command line contains marker, as `ps` lines."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,stat=,args="], capture_output=True, text=True,
                         check=True).stdout
    found = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and marker in parts[2] and not parts[1].startswith("Z") \
                and "ps -eo" not in parts[2]:
            found.append(line.strip())
    return found
