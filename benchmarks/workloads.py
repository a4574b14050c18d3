"""The taskplan rows of the benchmark plan: job texts, one timed execution each, and their figures.

SQLite: one process, an in-process `Agent` with N slots. A workload is timed from just before
`create_run` to the moment the agent sees the run end.

PostgreSQL (the plan: `run --detach` plus 2 agent processes of 4 slots each): the job is
applied and the run created in this process, as `taskplan run --detach` would; two real
`taskplan agent --slots 4` subprocesses are started and have registered and issued LISTEN
before the run is created. The timing runs from just before `create_run` to the moment this
process sees the `runs` row terminal (woken by the agents' NOTIFYs, one SELECT per wake).

Either way parsing the job file, applying it, opening the store and starting agents are
outside the timing, and so is the agents' shutdown after the run ended.
"""

from __future__ import annotations

import gc
import itertools
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from benchmarks.procs import Agents
from benchmarks.targets import Target
from taskplan.agent import Agent
from taskplan.engine import Engine
from taskplan.spec import load_job_text
from taskplan.store.db import Store

NOOP_MODULE = "noop"
NOOP_SOURCE = (
    '"""The no-op python task of the benchmarks."""\n\n\ndef run(ctx):\n    return None\n'
    "\n\ndef items(ctx):\n    return list(range(int(ctx.params['n'])))\n"
)
NAP_MODULE = "nap"  # fairness: a python task of 10 ms
NAP_SOURCE = (
    '"""A 10 ms python task (fairness)."""\n\nimport time\n\n\ndef run(ctx):\n'
    "    time.sleep(0.01)\n"
)
PG_AGENTS = 2  # the plan: 2 agent processes of 4 slots each on PostgreSQL
PG_SLOTS = 4
TERMINAL = ("succeeded", "failed", "cancelled")

Figures = dict[str, float]


def write_noop_module(workdir: str) -> None:
    with open(os.path.join(workdir, f"{NOOP_MODULE}.py"), "w", encoding="utf-8") as fh:
        fh.write(NOOP_SOURCE)
    with open(os.path.join(workdir, f"{NAP_MODULE}.py"), "w", encoding="utf-8") as fh:
        fh.write(NAP_SOURCE)


# -- job texts ------------------------------------------------------------------------------
def _job(name: str, tasks: list[str]) -> str:
    # The rows measure dispatch, so their no-op python tasks run on the agent's slot threads
    # (`in_process`); in worker processes, the default, each call adds a pipe round trip
    # (docs/benchmarks.md gives both figures).
    return f"job: {name}\ndefaults:\n  in_process: true\ntasks:\n" + "".join(tasks)


def _noop(name: str, extra: str = "") -> str:
    return f"  {name}:\n    python: {NOOP_MODULE}:run\n{extra}"


def chain_text(n: int) -> str:
    return _job(f"chain{n}", [
        _noop(f"t{i:04d}", f"    depends_on: [t{i - 1:04d}]\n" if i else "") for i in range(n)
    ])


def wide_text(n: int) -> str:
    return _job(f"wide{n}", [_noop(f"t{i:04d}") for i in range(n)])


def stages_text(stages: int, per_stage: int) -> str:
    return _job(f"stages{stages}x{per_stage}", [
        _noop(f"s{s:02d}_t{i:03d}", f"    stage: {s}\n")
        for s in range(1, stages + 1) for i in range(per_stage)
    ])


def fanout_text(n: int) -> str:
    """One foreach task whose items come from an upstream task's list result."""
    return (f"job: fanout{n}\nparams:\n  n: {n}\ndefaults:\n  in_process: true\ntasks:\n"
            f"  make_items:\n    python: {NOOP_MODULE}:items\n"
            f"  each:\n    foreach:\n      from: make_items\n    python: {NOOP_MODULE}:run\n")


def fanout_stream_text(n: int, workdir: str) -> str:
    """One foreach task whose n items are streamed from a query (read 5,000 at a time), so
    that nothing in taskplan holds the whole list: what its memory does as n grows."""
    query = ("WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c"
             f" WHERE i < {n - 1}) SELECT i FROM c")
    gen = os.path.join(workdir, "gen.db")  # an empty SQLite file: the query needs no table
    return (f"job: stream{n}\nconnections:\n  gen: 'sqlite:///{gen}'\ndefaults:\n"
            f"  in_process: true\ntasks:\n  each:\n    foreach:\n      sql: \"{query}\"\n"
            f"      connection: gen\n    python: {NOOP_MODULE}:run\n")


def shell_text(name: str, n: int, command: str) -> str:
    return _job(name, [f"  t{i:04d}:\n    shell: \"{command}\"\n" for i in range(n)])


# -- one timed execution --------------------------------------------------------------------
@dataclass
class Execution:
    wall: float  # seconds from create_run to the agent seeing the run end
    tasks: int
    hop_gaps: list[float]  # finished_at of task i -> started_at of task i+1 (chains only)
    hop_periods: list[float]  # started_at of task i -> started_at of task i+1 (chains only)
    agent_rss_mb: float | None = None  # PostgreSQL: the larger peak RSS of the two agents
    agents_cpu_s: float | None = None  # PostgreSQL: both agents' CPU from create_run to the end


@contextmanager
def applied(target: Target, label: str, text: str) -> Iterator[tuple[str, Store, Engine, int]]:
    """A fresh store of the target with the job applied: (url, store, engine, version id)."""
    with target.fresh(label) as url:
        store = Store(url)
        try:
            engine = Engine(store)
            version_id, _, _ = engine.apply(load_job_text(text, f"{label}.yaml",
                                                          target.workdir))
            yield url, store, engine, version_id
        finally:
            store.close()


def execute(target: Target, label: str, text: str, slots: int, *, chain: bool = False
            ) -> Execution:
    if target.backend == "postgresql":
        return execute_pg(target, label, text, chain=chain)
    with applied(target, label, text) as (_, store, engine, version_id):
        engine.job_spec(version_id)  # as an agent that already knows the job would
        ended: list[float] = []

        def until(agent: Agent) -> bool:
            if run_id in agent.finished_runs:
                ended.append(time.perf_counter())
                return True
            return False

        gc.collect()
        start = time.perf_counter()
        run_id = engine.create_run(version_id)
        Agent(engine, slots=slots, root_run_id=run_id).run(until=until)
        wall = ended[0] - start
        return _check(store, engine, run_id, wall, chain)


def execute_pg(target: Target, label: str, text: str, *, chain: bool = False) -> Execution:
    """PostgreSQL: the run created here, executed by 2 agent subprocesses of 4 slots."""
    with applied(target, label, text) as (url, store, engine, version_id):
        with Agents(url, target.workdir, PG_AGENTS, PG_SLOTS) as agents:
            agents.start(store)
            gc.collect()
            cpu = agents.cpu_s()
            start = time.perf_counter()
            run_id = engine.create_run(version_id)
            end = wait_run_end(store, run_id, agents)
            cpu = agents.cpu_s() - cpu
            rss = agents.peak_rss_mb()
        ex = _check(store, engine, run_id, end - start, chain)
        ex.agent_rss_mb = rss
        ex.agents_cpu_s = cpu
        return ex


def run_end_pg(store: Store, run_id: int) -> tuple[str, float | None]:
    with store.read() as tx:
        row = tx.one("SELECT state, finished_at FROM runs WHERE id = :r", {"r": run_id})
    assert row is not None
    return str(row[0]), None if row[1] is None else float(row[1])


def wait_run_end(store: Store, run_id: int, agents: Agents, timeout: float = 1800.0,
                 poll: float = 0.02) -> float:
    """The run's end as recorded by the agent that ended it (`runs.finished_at`), on this
    process's perf_counter() timeline.

    `run --detach` leaves nobody watching the run, so the watcher here must not load the
    agents: it polls every `poll` seconds (one read) and takes the end time from the store,
    not from when it happened to look. Both clocks are this machine's.
    """
    deadline = time.monotonic() + timeout
    checked = time.monotonic()
    while True:
        state, finished_at = run_end_pg(store, run_id)
        if state in TERMINAL and finished_at is not None:
            return time.perf_counter() - (time.time() - finished_at)
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} did not end in {timeout:.0f}s")
        if time.monotonic() - checked >= 1.0:
            agents.check_alive()
            checked = time.monotonic()
        time.sleep(poll)


def _check(store: Store, engine: Engine, run_id: int, wall: float, chain: bool) -> Execution:
    state = engine.run_state(run_id)
    with store.read() as tx:
        # Counted by the database: a million rows read back here would make the benchmark's
        # own memory the peak RSS it reports.
        total = int(tx.scalar("SELECT COUNT(*) FROM task_runs WHERE run_id = :r"
                              " AND kind = 'task'", {"r": run_id}))
        bad = tx.all("SELECT task, state FROM task_runs WHERE run_id = :r AND kind = 'task'"
                     " AND state <> 'succeeded' LIMIT 5", {"r": run_id})
        rows = tx.all(
            "SELECT task, state, started_at, finished_at FROM task_runs"
            " WHERE run_id = :r AND kind = 'task' ORDER BY task", {"r": run_id}) if chain else []
    if state != "succeeded" or bad:
        raise RuntimeError(f"run {run_id} ended {state}; not succeeded: {bad}")
    gaps: list[float] = []
    periods: list[float] = []
    for (_, _, start0, end0), (_, _, start1, _) in itertools.pairwise(rows):
        gaps.append(float(start1) - float(end0))
        periods.append(float(start1) - float(start0))
    return Execution(wall, total, gaps, periods)


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (q in 0..1) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
    return ordered[rank - 1]


# -- the rows -------------------------------------------------------------------------------
def _rss(ex: Execution, figures: Figures) -> Figures:
    """PostgreSQL rows: the agents' peak RSS and their CPU per task (what a log line or a
    read added to each task shows here first)."""
    if ex.agent_rss_mb is not None:
        figures["agent_peak_rss_mb"] = ex.agent_rss_mb
    if ex.agents_cpu_s is not None:
        figures["agents_cpu_ms_per_task"] = ex.agents_cpu_s * 1000 / ex.tasks
    return figures


def chain200(target: Target) -> Figures:
    n = 200
    ex = execute(target, "chain200", chain_text(n), slots=1, chain=True)
    ms = [g * 1000 for g in ex.hop_gaps]
    period = [p * 1000 for p in ex.hop_periods]
    return _rss(ex, {
        "ms_per_hop": ex.wall * 1000 / n,
        "gap_p50_ms": quantile(ms, 0.5),
        "gap_p99_ms": quantile(ms, 0.99),
        "hop_p50_ms": quantile(period, 0.5),
        "hop_p99_ms": quantile(period, 0.99),
        "wall_s": ex.wall,
    })


def wide1000(target: Target) -> Figures:
    ex = execute(target, "wide1000", wide_text(1000), slots=8)
    return _rss(ex, {"tasks_per_s": ex.tasks / ex.wall, "wall_s": ex.wall})


def stages10x100(target: Target) -> Figures:
    ex = execute(target, "stages10x100", stages_text(10, 100), slots=8)
    return _rss(ex, {"wall_s": ex.wall, "tasks_per_s": ex.tasks / ex.wall})


def sleep64(target: Target) -> Figures:
    ex = execute(target, "sleep64", shell_text("sleep64", 64, "sleep 0.5"), slots=8)
    return _rss(ex, {"makespan_s": ex.wall})


def shell500(target: Target) -> Figures:
    ex = execute(target, "shell500", shell_text("shell500", 500, "true"), slots=8)
    return _rss(ex, {"tasks_per_s": ex.tasks / ex.wall, "wall_s": ex.wall})


def _fanout(target: Target, n: int) -> Figures:
    ex = execute(target, f"fanout{n}", fanout_text(n), slots=8)
    return _rss(ex, {"wall_s": ex.wall, "tasks_per_s": ex.tasks / ex.wall})


def fanout10k(target: Target) -> Figures:
    return _fanout(target, 10_000)


def fanout100k(target: Target) -> Figures:
    return _fanout(target, 100_000)


def _fanout_stream(target: Target, n: int) -> Figures:
    ex = execute(target, f"stream{n}", fanout_stream_text(n, target.workdir), slots=8)
    return _rss(ex, {"wall_s": ex.wall, "tasks_per_s": ex.tasks / ex.wall})


def fanout100k_stream(target: Target) -> Figures:
    return _fanout_stream(target, 100_000)


def fanout1m(target: Target) -> Figures:
    return _fanout_stream(target, 1_000_000)


def history1m(target: Target) -> Figures:
    from benchmarks import history  # imports this module

    return history.history1m(target)


def floor(target: Target) -> Figures:
    from benchmarks import floor as floor_mod

    return floor_mod.measure(target)


def fairness(target: Target) -> Figures:
    from benchmarks import fairness as fairness_mod  # imports this module

    return fairness_mod.fairness(target)


def idle50(target: Target) -> Figures:
    from benchmarks import idle  # imports this module

    return idle.idle50(target)


def sched_jitter(target: Target) -> Figures:
    from benchmarks import sched  # imports this module: load it only when asked

    return sched.sched_jitter(target)


def forecast_accuracy(target: Target) -> Figures:
    from benchmarks import forecast_accuracy as accuracy

    return accuracy.forecast_accuracy(target)


def web_run100k(target: Target) -> Figures:
    from benchmarks import web  # imports this module, and FastAPI: load it only when asked

    return web.web_run100k(target)


def web_history(target: Target) -> Figures:
    from benchmarks import web

    return web.web_history(target)


WORKLOADS: dict[str, Callable[[Target], Figures]] = {
    "chain200": chain200,
    "wide1000": wide1000,
    "stages10x100": stages10x100,
    "sleep64": sleep64,
    "shell500": shell500,
    "fanout10k": fanout10k,
    "fanout100k": fanout100k,
    "fanout100k_stream": fanout100k_stream,
    "fanout1m": fanout1m,
    "history1m": history1m,
    "floor": floor,
    "sched_jitter": sched_jitter,
    "fairness": fairness,
    "idle50": idle50,
    "forecast_accuracy": forecast_accuracy,
    "web_run100k": web_run100k,
    "web_history": web_history,
}


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def summary(values: list[float]) -> dict[str, Any]:
    return {"median": median(values), "min": min(values), "max": max(values), "values": values}
