"""Command-level rows: what a user times, from the shell prompt back to the prompt.

Every figure here is a ratio or a difference against a reference measured in the same
repetition on the same machine (machines differ from day to day):

* `cli_help`: `taskplan --help`, `--version`, `status` and `runs` against
  `python -c "import click"` (target: at most 3x).
* `cli_run_one` / `cli_run_one_fresh`: `taskplan run` of a one-task shell job on an existing
  (or a new) SQLite store, minus `python -c pass` and the task's own command run alone
  (targets: at most 0.3 s over; a new store at most 0.2 s more than an existing one).
* `load1000` / `load10000`: parse, validate and apply a 1,000 (10,000)-task file in one process
  (targets: 0.15 s and 1.5 s).
* `cli_chain200`, `cli_wide1000`, `cli_stages10x100`: the whole `taskplan run FILE` process, as a
  peer harness times Luigi or Prefect (`python -m benchmarks.peers` runs Luigi beside it).
  Beside the process wall, the run as that process's engine recorded it in the store: from
  the run's creation to its end (`runs.created_at` -> `finished_at`), tasks per second, and
  for the chain the hop times (start of task i -> start of task i+1), so the engine's pace
  through the CLI can be set against the floor measured in the same invocation.
  Each repetition runs the file twice on a fresh store, with an empty cache of checked job
  files (spec/checked.py): `first_process_wall_s` is the first run, which parses and checks
  the file; `process_wall_s` the second, which finds it checked, as a user's every later run
  of an unchanged file does.
* `load1000` / `load10000` always parse and check (the loader itself, not the cache), in a
  process that has checked a one-task file first, untimed: the schema's import and validators
  are a cost per process, not per task, and are in `cli_run_one` and the "file not yet
  checked" figures.
* `cli_wide1000` also runs on PostgreSQL (`--db postgresql://...`): the same command on a fresh
  database of the server, its one process creating the schema, applying the file and executing
  every task with its in-process agent (`--workers 8`), as a user's first run would.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence

from benchmarks.targets import Target
from benchmarks.workloads import chain_text, quantile, stages_text, wide_text

Figures = dict[str, float]
TASKPLAN = os.path.join(os.path.dirname(sys.executable), "taskplan")
SAMPLES = 5  # per command per repetition; the median is kept


# Where timed commands keep checked job files (spec/checked.py), rather than the user's cache.
BENCH_CACHE = os.path.join(tempfile.gettempdir(), "taskplan-bench-checked-cache")


def _env(cache: str = BENCH_CACHE) -> dict[str, str]:
    # PYTHONDONTWRITEBYTECODE (set in some shells and CI images) would make every timed
    # process compile taskplan from source: a user's installed package has its bytecode.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TASKPLAN_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONUNBUFFERED"] = "1"
    env["TASKPLAN_CACHE_DIR"] = cache  # "off": every run checks its file
    return env


def _bytecode() -> None:
    """Compile taskplan's modules as `pip install` does, so no timed process compiles one."""
    import compileall

    import taskplan

    compileall.compile_dir(os.path.dirname(taskplan.__file__), quiet=1)


def walls(commands: Mapping[str, Sequence[str]], cwd: str, samples: int = SAMPLES,
          before: dict[str, Callable[[], None]] | None = None,
          env: dict[str, str] | None = None) -> dict[str, float]:
    """Median wall seconds of each command, its output discarded (as a pipe would take it).
    The commands are sampled in turn, one of each per round, so that a change in the load of
    a shared machine falls on a figure and its reference alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(samples):
        for name, argv in commands.items():
            hook = (before or {}).get(name)
            if hook is not None:
                hook()
            start = time.perf_counter()
            subprocess.run(argv, cwd=cwd, env=env or _env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, check=True)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(taken) for name, taken in times.items()}


def _sqlite_only(target: Target) -> None:
    if target.backend != "sqlite":
        raise SystemExit("command-level rows run on SQLite (a user's first store)")
    _bytecode()


def cli_help(target: Target) -> Figures:
    _sqlite_only(target)
    work = target.workdir
    db = ["--db", f"sqlite:///{os.path.join(work, 'help.db')}"]
    subprocess.run([TASKPLAN, *db, "validate", os.devnull], cwd=work, env=_env(),
                   capture_output=True, check=False)
    _one_run(work, db)  # `status` and `runs` on a store that has a run
    took = walls({"ref": [sys.executable, "-c", "import click"],
                  "help": [TASKPLAN, "--help"], "version": [TASKPLAN, "--version"],
                  "status": [TASKPLAN, *db, "status"], "runs": [TASKPLAN, *db, "runs"]}, work)
    ref = took.pop("ref")
    figures = {"ref_import_click_s": ref}
    for name, seconds in took.items():
        figures[f"{name}_s"] = seconds
        figures[f"{name}_ratio"] = seconds / ref
    return figures


ONE_TASK = "job: one\ntasks:\n  only:\n    shell: [\"true\"]\n"


def _one_run(work: str, db: list[str]) -> None:
    path = os.path.join(work, "one.yaml")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(ONE_TASK)
    subprocess.run([TASKPLAN, *db, "run", path], cwd=work, env=_env(), capture_output=True,
                   check=True)


def _run_one(target: Target, fresh: bool) -> Figures:
    """`run` of the one-task job on an existing store (and, if `fresh`, on a new one), and
    the reference, sampled in turn."""
    _sqlite_only(target)
    work = target.workdir
    path = os.path.join(work, "one.yaml")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(ONE_TASK)
    existing = ["--db", f"sqlite:///{os.path.join(work, 'run-one.db')}"]
    new_store = os.path.join(work, "run-one-new.db")

    def remove_new_store() -> None:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(new_store + suffix):
                os.unlink(new_store + suffix)

    _one_run(work, existing)
    commands = {"run": [TASKPLAN, *existing, "run", path],
                "pass": [sys.executable, "-c", "pass"], "true": [shutil.which("true") or "true"]}
    if fresh:
        commands["new"] = [TASKPLAN, "--db", f"sqlite:///{new_store}", "run", path]
    took = walls(commands, work, before={"new": remove_new_store})
    ref = took["pass"] + took["true"]
    if not fresh:
        return {"wall_s": took["run"], "ref_s": ref, "over_ref_s": took["run"] - ref}
    return {"wall_s": took["new"], "ref_s": ref, "over_ref_s": took["new"] - ref,
            "over_existing_s": took["new"] - took["run"]}


def cli_run_one(target: Target) -> Figures:
    return _run_one(target, fresh=False)


def cli_run_one_fresh(target: Target) -> Figures:
    return _run_one(target, fresh=True)


def _load(target: Target, n: int) -> Figures:
    """Parse, validate and apply an n-task file in this process, as `apply` does.

    A one-task file is checked first, untimed: the schema's import and the building of its
    validators are paid once per process whatever the file's size (the whole-process rows
    `cli_run_one` and "file not yet checked" include them), and without it the first
    repetition alone would carry them."""
    from taskplan.engine import Engine
    from taskplan.spec.loader import load_job_file  # the checking itself, never the cache
    from taskplan.store.db import Store

    text = chain_text(n)
    with tempfile.TemporaryDirectory(dir=target.workdir) as folder:
        path = os.path.join(folder, f"load{n}.yaml")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(chain_text(1))
        load_job_file(path)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        with target.fresh(f"load{n}") as url:
            store = Store(url)
            try:
                engine = Engine(store)
                start = time.perf_counter()
                spec = load_job_file(path)
                parsed = time.perf_counter()
                engine.apply(spec)
                done = time.perf_counter()
            finally:
                store.close()
    return {"wall_s": done - start, "parse_validate_s": parsed - start,
            "apply_s": done - parsed}


def load1000(target: Target) -> Figures:
    return _load(target, 1000)


def load10000(target: Target) -> Figures:
    return _load(target, 10_000)


def _cli_run(target: Target, label: str, text: str, workers: int, chain: bool = False
             ) -> Figures:
    if target.backend == "postgresql" and label == "wide1000":
        return _cli_run_pg(target, label, text, workers)
    _sqlite_only(target)
    work = target.workdir
    path = os.path.join(work, f"{label}.yaml")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    store = os.path.join(work, f"{label}.db")

    def remove_store() -> None:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(store + suffix):
                os.unlink(store + suffix)

    # The file is run twice on a fresh store with an empty cache of checked files: the first
    # run checks the file (a user's first run of it), the second finds it checked.
    cache = tempfile.mkdtemp(dir=work, prefix="checked-")
    argv = [TASKPLAN, "--db", f"sqlite:///{store}", "run", path, "--workers", str(workers)]
    took = walls({"first": argv, "again": argv}, work, samples=1,
                 before={"first": remove_store, "again": remove_store}, env=_env(cache))
    shutil.rmtree(cache)
    return {"process_wall_s": took["again"], "first_process_wall_s": took["first"],
            **_recorded(store, chain)}


def _recorded(store: str, chain: bool) -> Figures:
    """The run as the timed process recorded it: its span, tasks/s, and hop times."""
    conn = sqlite3.connect(store)
    try:
        created, finished, state = conn.execute(
            "SELECT created_at, finished_at, state FROM runs").fetchone()
        starts = [float(r[0]) for r in conn.execute(
            "SELECT started_at FROM task_runs WHERE kind = 'task' ORDER BY task")]
    finally:
        conn.close()
    if state != "succeeded":
        raise RuntimeError(f"the run ended {state}")
    run_s = float(finished) - float(created)
    figures = {"run_s": run_s, "tasks_per_s": len(starts) / run_s}
    if chain:
        hops = [(b - a) * 1000 for a, b in itertools.pairwise(starts)]
        figures.update(ms_per_hop=run_s * 1000 / len(starts), hop_p50_ms=quantile(hops, 0.5),
                       hop_p99_ms=quantile(hops, 0.99))
    return figures


def _cli_run_pg(target: Target, label: str, text: str, workers: int) -> Figures:
    """`taskplan run FILE --db postgresql://...` on a fresh database of the server."""
    from taskplan.store.db import Store

    _bytecode()
    work = target.workdir
    path = os.path.join(work, f"{label}.yaml")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    with target.fresh(f"cli_{label}") as url:
        took = walls({"run": [TASKPLAN, "--db", url, "run", path, "--workers", str(workers)]},
                     work, samples=1)
        store = Store(url)
        try:
            with store.read() as tx:
                row = tx.one("SELECT created_at, finished_at, state FROM runs")
                tasks = int(tx.scalar("SELECT COUNT(*) FROM task_runs WHERE kind = 'task'"))
        finally:
            store.close()
    if row is None or row[2] != "succeeded":
        raise RuntimeError(f"the run ended {None if row is None else row[2]}")
    run_s = float(row[1]) - float(row[0])
    return {"process_wall_s": took["run"], "run_s": run_s, "tasks_per_s": tasks / run_s}


def cli_chain200(target: Target) -> Figures:
    return _cli_run(target, "chain200", chain_text(200), 1, chain=True)


def cli_wide1000(target: Target) -> Figures:
    return _cli_run(target, "wide1000", wide_text(1000), 8)


def cli_stages10x100(target: Target) -> Figures:
    return _cli_run(target, "stages10x100", stages_text(10, 100), 8)


COMMAND_WORKLOADS: dict[str, Callable[[Target], Figures]] = {
    "cli_help": cli_help,
    "cli_run_one": cli_run_one,
    "cli_run_one_fresh": cli_run_one_fresh,
    "load1000": load1000,
    "load10000": load10000,
    "cli_chain200": cli_chain200,
    "cli_wide1000": cli_wide1000,
    "cli_stages10x100": cli_stages10x100,
}
