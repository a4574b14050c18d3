"""fairness: run A of 2,000 python tasks of 10 ms; 1 s later run B of 10 such tasks; 8 slots.

Figure: B's wall, from just before its `create_run` to the moment its end is seen (SQLite:
the in-process agent's `until`; PostgreSQL: this process sees B's `runs` row terminal). The
ideal is about B's own work (10 x 10 ms over the slots it gets); a FIFO dispatcher would make
B wait for most of A (2,000 x 10 ms / 8 slots = 2.5 s).

SQLite: one in-process `Agent` with 8 slots on a thread. PostgreSQL: 2 `taskplan agent
--slots 4` subprocesses started before A is created.
"""

from __future__ import annotations

import gc
import threading
import time

from benchmarks.procs import Agents
from benchmarks.targets import Target
from benchmarks.workloads import (
    NAP_MODULE,
    PG_AGENTS,
    PG_SLOTS,
    Figures,
    _job,
    wait_run_end,
)
from taskplan.agent import Agent
from taskplan.engine import Engine
from taskplan.spec import load_job_text
from taskplan.store.db import Store

A_TASKS = 2000
B_TASKS = 10
B_DELAY = 1.0
SLOTS = 8


def _nap_job(name: str, n: int) -> str:
    return _job(name, [f"  t{i:04d}:\n    python: {NAP_MODULE}:run\n" for i in range(n)])


def fairness(target: Target) -> Figures:
    with target.fresh("fairness") as url:
        store = Store(url)
        try:
            engine = Engine(store)
            va = engine.apply(load_job_text(_nap_job("fair_a", A_TASKS), "fair_a.yaml",
                                            target.workdir))[0]
            vb = engine.apply(load_job_text(_nap_job("fair_b", B_TASKS), "fair_b.yaml",
                                            target.workdir))[0]
            engine.job_spec(va)
            engine.job_spec(vb)
            if target.backend == "postgresql":
                times, ids = _pg(target, url, store, engine, va, vb)
            else:
                times, ids = _sqlite(engine, va, vb)
            for key, run_id in ids.items():
                state = engine.run_state(run_id)
                if state != "succeeded":
                    raise RuntimeError(f"fairness: run {key} ({run_id}) ended {state}")
            with store.read() as tx:
                b_db = tx.one("SELECT finished_at - created_at FROM runs WHERE id = :r",
                              {"r": ids["b"]})
        finally:
            store.close()
    return {
        "b_wall_s": times["b_end"] - times["b_start"],
        "a_wall_s": times["a_end"] - times["a_start"],
        "b_wall_db_s": float(b_db[0]) if b_db else float("nan"),
    }


def _create_a_then_b(engine: Engine, va: int, vb: int, times: dict[str, float],
                     ids: dict[str, int]) -> None:
    """Run A at once, run B B_DELAY later, each timed from just before its creation."""
    gc.collect()
    times["a_start"] = time.perf_counter()
    ids["a"] = engine.create_run(va)
    time.sleep(max(0.0, times["a_start"] + B_DELAY - time.perf_counter()))
    times["b_start"] = time.perf_counter()
    ids["b"] = engine.create_run(vb)


def _sqlite(engine: Engine, va: int, vb: int) -> tuple[dict[str, float], dict[str, int]]:
    ids: dict[str, int] = {}
    times: dict[str, float] = {}

    def until(agent: Agent) -> bool:
        for key, run_id in list(ids.items()):
            if f"{key}_end" not in times and run_id in agent.finished_runs:
                times[f"{key}_end"] = time.perf_counter()
        return "a_end" in times and "b_end" in times

    agent = Agent(engine, slots=SLOTS)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            agent.run(until=until)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work, name="bench-agent", daemon=True)
    thread.start()
    time.sleep(0.2)  # the agent has registered and waits for work
    _create_a_then_b(engine, va, vb, times, ids)
    thread.join(600)
    if errors:
        raise errors[0]
    if thread.is_alive():
        agent.drain()
        raise RuntimeError("fairness: runs did not end in 600 s")
    return times, ids


def _pg(target: Target, url: str, store: Store, engine: Engine, va: int, vb: int
        ) -> tuple[dict[str, float], dict[str, int]]:
    ids: dict[str, int] = {}
    times: dict[str, float] = {}
    with Agents(url, target.workdir, PG_AGENTS, PG_SLOTS) as agents:
        agents.start(store)
        _create_a_then_b(engine, va, vb, times, ids)
        times["b_end"] = wait_run_end(store, ids["b"], agents)
        times["a_end"] = wait_run_end(store, ids["a"], agents)
    return times, ids
