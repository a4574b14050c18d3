"""/metrics in the Prometheus text format, read from the store at each scrape.

A custom collector, not counters kept in this process: any one `taskplan web` reports the
whole cluster (every agent, scheduler and run in the store), and two of them report the same.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from taskplan.store import console
from taskplan.store.db import Store

BOUNDS = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0]


def _histogram(name: str, doc: str, labels: list[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, labels=labels)


def _buckets(h: console.Histogram) -> list[tuple[str, float]]:
    return [*((repr(b), float(c)) for b, c in zip(BOUNDS, h.buckets, strict=True)),
            ("+Inf", float(h.count))]


class StoreCollector(Collector):
    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        with self.store.read() as tx:
            m = console.cluster_metrics(tx, time.time(), BOUNDS)
        runs = GaugeMetricFamily("taskplan_runs", "Runs in the store by job and state.",
                                 labels=["job", "state"])
        for (job, state), n in sorted(m.runs.items()):
            runs.add_metric([job, state], n)
        yield runs
        tasks = GaugeMetricFamily("taskplan_task_runs",
                                  "Task runs (foreach items included) by job and state.",
                                  labels=["job", "state"])
        for (job, state), n in sorted(m.task_runs.items()):
            tasks.add_metric([job, state], n)
        yield tasks
        yield GaugeMetricFamily("taskplan_task_runs_ready_unclaimed",
                                "Task runs ready to run that no agent has claimed yet.",
                                value=m.ready_unclaimed)
        agents = GaugeMetricFamily("taskplan_agents", "Agents by state.", labels=["state"])
        for state in ("alive", "draining", "expired", "stopped", "lost"):
            agents.add_metric([state], m.agents.get(state, 0))
        yield agents
        yield GaugeMetricFamily("taskplan_agent_slots", "Slots of alive and draining agents.",
                                value=m.slots_total)
        yield GaugeMetricFamily("taskplan_agent_slots_busy",
                                "Slots of alive and draining agents running a task run.",
                                value=m.slots_busy)
        durations = _histogram("taskplan_task_duration_seconds",
                               "Duration of finished attempts by job.", ["job"])
        for job, h in sorted(m.task_duration.items()):
            durations.add_metric([job], _buckets(h), h.total)
        yield durations
        lag = _histogram("taskplan_schedule_lag_seconds",
                         "From a schedule's fire time to its run's start.", [])
        lag.add_metric([], _buckets(m.schedule_lag), m.schedule_lag.total)
        yield lag
        latency = _histogram("taskplan_dispatch_latency_seconds",
                             "From a task run becoming ready to an agent claiming it.", [])
        latency.add_metric([], _buckets(m.dispatch_latency), m.dispatch_latency.total)
        yield latency


_registries: dict[int, CollectorRegistry] = {}


def render(store: Store) -> tuple[bytes, str]:
    registry = _registries.get(id(store))
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StoreCollector(store))
        _registries[id(store)] = registry
    return generate_latest(registry), CONTENT_TYPE_LATEST


__all__ = ["render"]
