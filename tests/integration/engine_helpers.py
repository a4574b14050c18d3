"""Drive whole runs through the real engine and agent on a real store, and read back results."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from taskplan.agent import Agent
from taskplan.engine import Engine
from taskplan.model import TERMINAL_RUN_STATES
from taskplan.spec import load_job_text
from taskplan.store.db import Store

JOBCODE = Path(__file__).parent / "jobcode"
TERMINAL = {str(s) for s in TERMINAL_RUN_STATES}


def apply_job(engine: Engine, text: str, base_dir: Path = JOBCODE) -> int:
    spec = load_job_text(textwrap.dedent(text), "job.yaml", str(base_dir))
    version_id, _, _ = engine.apply(spec)
    return version_id


def start_run(engine: Engine, text: str, params: dict[str, Any] | None = None,
              base_dir: Path = JOBCODE) -> int:
    return engine.create_run(apply_job(engine, text, base_dir), params)


def run_agent(engine: Engine, run_id: int | None, *, slots: int = 4, timeout: float = 30.0,
              until: Callable[[Agent], bool] | None = None, lease: float = 30.0,
              root: bool = True) -> Agent:
    """Run an agent in this thread until the run ends (or `until`); fail if it takes forever."""
    agent = Agent(engine, slots=slots, root_run_id=run_id if root else None, lease=lease)
    deadline = time.monotonic() + timeout

    def done(a: Agent) -> bool:
        if time.monotonic() > deadline:
            a.cancel_running()  # kill what still runs, so that run() returns and we report
            raise AssertionError(f"run {run_id} did not end within {timeout}s")
        if until is not None:
            return until(a)
        assert run_id is not None
        return run_id in a.finished_runs or engine.run_state(run_id) in TERMINAL

    agent.run(until=done)
    return agent


def run_job(engine: Engine, text: str, params: dict[str, Any] | None = None, *,
            slots: int = 4, base_dir: Path = JOBCODE) -> tuple[int, Agent]:
    run_id = start_run(engine, text, params, base_dir)
    agent = run_agent(engine, run_id, slots=slots)
    return run_id, agent


def in_thread(fn: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


# -- reading back ----------------------------------------------------------------------------
def run_state(store: Store, run_id: int) -> str:
    with store.read() as tx:
        return str(tx.scalar("SELECT state FROM runs WHERE id = :r", {"r": run_id}))


def tasks(store: Store, run_id: int) -> dict[str, dict[str, Any]]:
    """Top-level task runs of a run by name (barriers excluded)."""
    with store.read() as tx:
        rows = tx.all(
            "SELECT id, task, state, attempts, result, error, started_at, finished_at, exit_code"
            " FROM task_runs WHERE run_id = :r AND parent_id IS NULL AND kind <> 'barrier'",
            {"r": run_id})
    return {
        str(r[1]): {"id": int(r[0]), "state": str(r[2]), "attempts": int(r[3]),
                    "result": None if r[4] is None else json.loads(r[4]), "error": r[5],
                    "started_at": r[6], "finished_at": r[7], "exit_code": r[8]}
        for r in rows
    }


def states(store: Store, run_id: int) -> dict[str, str]:
    return {name: t["state"] for name, t in tasks(store, run_id).items()}


def attempts(store: Store, task_run_id: int) -> list[dict[str, Any]]:
    with store.read() as tx:
        rows = tx.all(
            "SELECT attempt, state, started_at, finished_at, error, output_bytes, truncated"
            " FROM attempts WHERE task_run_id = :t ORDER BY attempt", {"t": task_run_id})
    return [{"attempt": int(r[0]), "state": str(r[1]), "started_at": float(r[2]),
             "finished_at": None if r[3] is None else float(r[3]), "error": r[4],
             "output_bytes": int(r[5]), "truncated": bool(r[6])} for r in rows]


def log_text(store: Store, task_run_id: int, attempt: int = 1) -> str:
    with store.read() as tx:
        rows = tx.all("SELECT data FROM log_chunks WHERE task_run_id = :t AND attempt = :a"
                      " ORDER BY seq", {"t": task_run_id, "a": attempt})
    return "".join(str(r[0]) for r in rows)


def events(store: Store, run_id: int) -> list[tuple[int | None, str, str | None]]:
    with store.read() as tx:
        rows = tx.all("SELECT task_run_id, state, detail FROM events WHERE run_id = :r"
                      " ORDER BY id", {"r": run_id})
    return [(None if r[0] is None else int(r[0]), str(r[1]), r[2]) for r in rows]


def intervals(store: Store, run_id: int) -> dict[str, tuple[float, float]]:
    """(start, end) recorded by `tpjobs.record` tasks, on one monotonic clock."""
    return {name: (t["result"]["start"], t["result"]["end"])
            for name, t in tasks(store, run_id).items()
            if isinstance(t["result"], dict) and "start" in t["result"]}


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant."""
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans],
                    key=lambda p: (p[0], p[1]))  # ends before starts at equal times
    best = cur = 0
    for _, d in points:
        cur += d
        best = max(best, cur)
    return best


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
             ) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def pid_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def written_rows(tx: Any, run_id: int, names: dict[int, str], task_run_columns: str
                 ) -> dict[str, Any]:
    """What a run's transitions wrote, comparable between two engines driven alike: its task
    runs (`task_run_columns`), attempts, run row and events, task run ids replaced by
    `names`. One step's events share its time; their order inside it carries no meaning."""
    return {
        "task_runs": sorted((names[int(r[0])], *r[1:]) for r in tx.all(
            f"SELECT id, {task_run_columns} FROM task_runs WHERE run_id = :r", {"r": run_id})),
        "attempts": sorted((names[int(r[0])], *r[1:]) for r in tx.all(
            "SELECT task_run_id, attempt, state, started_at, finished_at, exit_code, error"
            " FROM attempts WHERE run_id = :r", {"r": run_id})),
        "run": tx.all(
            "SELECT state, halt, halt_stage, unfinished, running, ready, failed, started_at,"
            " finished_at, error FROM runs WHERE id = :r", {"r": run_id}),
        "events": sorted(
            (r[0], "" if r[1] is None else names[int(r[1])], r[2], r[3] or "")
            for r in tx.all("SELECT at, task_run_id, state, detail FROM events"
                            " WHERE run_id = :r", {"r": run_id})),
    }
