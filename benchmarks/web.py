"""The console at scale: `web_run100k` (the run page of a 100,000-task-run run) and
`web_history` (jobs and runs pages over 1,000 jobs and 100,000 runs).

Pages are fetched in process through FastAPI's TestClient (routing, the store reads, Jinja and
the SVG drawing: everything but the socket). Each page is fetched 5 times; the figure is the
median, and the first (cold) fetch is kept beside it. Element counts are the HTML and SVG tags
a browser would build (the DOM-node budget of the plan).
"""

from __future__ import annotations

import re
import statistics
import time
from typing import Any

from benchmarks.targets import Target
from benchmarks.workloads import Figures, applied, fanout_text
from taskplan.agent import Agent
from taskplan.engine import Engine
from taskplan.spec import load_job_text
from taskplan.store import ops
from taskplan.store.db import Store

FETCHES = 5
_TAG = re.compile(r"<[a-zA-Z]")


def _client(engine: Engine) -> Any:
    from fastapi.testclient import TestClient

    from taskplan.web.app import create_app

    return TestClient(create_app(engine))


def _time_page(client: Any, url: str) -> tuple[float, float, int, int]:
    """(median ms, first ms, bytes, elements) of GET url."""
    times = []
    body = ""
    for _ in range(FETCHES):
        start = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code)
        body = response.text
    return statistics.median(times), times[0], len(body.encode()), len(_TAG.findall(body))


def web_run100k(target: Target) -> Figures:
    """A finished fanout100k run (executed for real), then its pages."""
    n = 100_000
    with applied(target, "web_run100k", fanout_text(n)) as (_, _store, engine, version_id):
        run_id = engine.create_run(version_id)
        Agent(engine, slots=8, root_run_id=run_id).run(
            until=lambda a: run_id in a.finished_runs)
        with _client(engine) as client:
            page_ms, cold_ms, size, elements = _time_page(client, f"/runs/{run_id}")
            items_ms, _, _, items_elements = _time_page(client, f"/runs/{run_id}/tasks/each")
            deep_ms, _, _, _ = _time_page(client, f"/runs/{run_id}?after={n // 2}")
            api_ms, _, _, _ = _time_page(client, "/api/v1/runs?limit=20")
    return {"run_page_ms": page_ms, "run_page_cold_ms": cold_ms, "run_page_kb": size / 1024,
            "run_page_elements": float(elements), "items_page_ms": items_ms,
            "items_page_elements": float(items_elements), "table_page_50k_ms": deep_ms,
            "api_runs_ms": api_ms}


def _job_text(i: int) -> str:
    return (f"job: job{i:04d}\nschedules:\n  - cron: \"{i % 60} {i % 24} * * *\"\n"
            "tasks:\n  a:\n    shell: \"true\"\n  b:\n    shell: \"true\"\n"
            "    depends_on: [a]\n")


def _fill_history(store: Store, engine: Engine, jobs: int, runs: int, workdir: str) -> None:
    versions = []
    job_of = {}
    for i in range(jobs):
        version_id, _, _ = engine.apply(load_job_text(_job_text(i), f"job{i}.yaml", workdir))
        versions.append(version_id)
        with store.read() as tx:
            row = ops.job_by_name(tx, f"job{i:04d}")
        assert row is not None
        job_of[version_id] = row.id
    now = time.time() - runs * 10.0
    batch = 5_000
    for first in range(0, runs, batch):
        with store.tx() as tx:
            for k in range(first, min(runs, first + batch)):
                version_id = versions[k % jobs]
                at = now + k * 10.0
                run_id = ops.insert_run(
                    tx, job_id=job_of[version_id], version_id=version_id, params={},
                    trigger="schedule" if k % 3 else "manual", trigger_ref=None, priority=0,
                    max_parallel=None, on_failure="continue", parent_task_run_id=None,
                    root_run_id=None, now=at)
                ops.set_run_state(tx, run_id, "failed" if k % 17 == 0 else "succeeded",
                                  now=at + 5.0, started=True, finished=True)


def web_history(target: Target) -> Figures:
    """1,000 jobs with 100,000 runs between them, then the jobs and runs pages."""
    jobs, runs = 1_000, 100_000
    with target.fresh("web_history") as url:
        store = Store(url)
        try:
            engine = Engine(store)
            start = time.perf_counter()
            _fill_history(store, engine, jobs, runs, target.workdir)
            fill_s = time.perf_counter() - start
            with _client(engine) as client:
                jobs_ms, jobs_cold_ms, jobs_size, jobs_elements = _time_page(client, "/jobs")
                api_jobs_ms, _, _, _ = _time_page(client, "/api/v1/jobs")
                runs_ms, _, _, _ = _time_page(client, "/runs")
                deep_ms, _, _, _ = _time_page(client, f"/runs?before={runs // 2}")
                by_job_ms, _, _, _ = _time_page(client, "/runs?job=job0500")
                by_state_ms, _, _, _ = _time_page(client, "/runs?state=failed")
                job_ms, _, _, _ = _time_page(client, "/jobs/job0500")
            watch_qps = _idle_watch(engine)
        finally:
            store.close()
    return {"jobs_page_ms": jobs_ms, "jobs_page_cold_ms": jobs_cold_ms,
            "jobs_page_kb": jobs_size / 1024, "jobs_page_elements": float(jobs_elements),
            "api_jobs_ms": api_jobs_ms, "runs_page_ms": runs_ms, "runs_page_50k_deep_ms": deep_ms,
            "runs_by_job_ms": by_job_ms, "runs_by_state_ms": by_state_ms, "job_page_ms": job_ms,
            "idle_watch_queries_per_s": watch_qps, "fill_s": fill_s}


def _idle_watch(engine: Engine, seconds: float = 10.0) -> float:
    """Store reads per second of the live-update watcher while nothing changes (one watcher
    serves every open tab of a process)."""
    from taskplan.web.live import ChangeWatcher

    watcher = ChangeWatcher(engine.store)
    watcher.start()
    time.sleep(1.0)  # its first read
    before = watcher.queries
    time.sleep(seconds)
    watcher.stop()
    return (watcher.queries - before) / seconds
