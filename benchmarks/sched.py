"""sched_jitter: an `every: 1s` schedule for 60 s, scheduler + agent in one process (`serve`);
figure: p50/p99 of (task start - due instant) in ms.

`python -m benchmarks.sched [--seconds 60] [--db sqlite]`; `sched_jitter(target)` has the
signature of the rows in `workloads.WORKLOADS`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time

from benchmarks.targets import Target
from benchmarks.workloads import NOOP_MODULE, Figures, quantile, write_noop_module
from taskplan.agent import Agent
from taskplan.engine import Engine
from taskplan.scheduler import Scheduler
from taskplan.spec import load_job_text
from taskplan.store.db import Store

JOB = (f"job: jitter\non_overlap: allow\nschedules:\n  - every: 1s\n"
       f"tasks:\n  t:\n    python: {NOOP_MODULE}:run\n")


def sched_jitter(target: Target, seconds: float = 60.0) -> Figures:
    with target.fresh("sched_jitter") as url:
        store = Store(url)
        try:
            engine = Engine(store)
            engine.apply(load_job_text(JOB, "jitter.yaml", target.workdir))
            scheduler = Scheduler(engine)
            agent = Agent(engine, slots=2)
            threads = [threading.Thread(target=scheduler.run, daemon=True),
                       threading.Thread(target=agent.run, daemon=True)]
            for t in threads:
                t.start()
            time.sleep(seconds)
            scheduler.stop()
            agent.drain()
            for t in threads:
                t.join(30)
            with store.read() as tx:
                rows = tx.all(
                    "SELECT f.fire_at, t.started_at FROM schedule_firings f"
                    " JOIN task_runs t ON t.run_id = f.run_id WHERE t.started_at IS NOT NULL")
        finally:
            store.close()
    lags = sorted((float(s) - float(f)) * 1000 for f, s in rows)
    if not lags:
        raise RuntimeError("no scheduled run started")
    return {"p50_ms": quantile(lags, 0.5), "p99_ms": quantile(lags, 0.99),
            "max_ms": lags[-1], "firings": float(len(lags))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sched", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--db", default="sqlite")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="taskplan-bench-sched-") as workdir:
        write_noop_module(workdir)
        sys.path.insert(0, workdir)
        figures = sched_jitter(Target(args.db, workdir), args.seconds)
    print(json.dumps({"sched_jitter": figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
