"""The duration model: what the next attempt of a task is expected to take, from history.

The store hands over a bounded `History` (the successful attempts of the job's last runs,
read at forecast time: nothing is aggregated while tasks run). Each estimate is the median of
the newest `SAMPLES` durations, robust to the odd slow night. Foreach tasks are estimated per
item and scaled by the item count (the literal `values`, else the median count of past runs);
a `job` task by the child job's own run durations. A task never seen takes `DEFAULT_SECONDS`.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import field

from taskplan.dataclass import dataclass
from taskplan.model import TaskSpec

DEFAULT_SECONDS = 60.0
SAMPLES = 20
# A foreach never seen, with items from SQL or an upstream result, is assumed to have this many.
DEFAULT_ITEMS = 1


@dataclass(frozen=True)
class Estimate:
    seconds: float
    samples: int  # 0: the default, nothing was known


@dataclass
class History:
    """Durations in seconds, newest first, as read from the store."""

    tasks: dict[str, list[float]] = field(default_factory=dict)  # plain and job tasks
    items: dict[str, list[float]] = field(default_factory=dict)  # foreach: one item each
    item_counts: dict[str, list[int]] = field(default_factory=dict)  # foreach: items per run
    jobs: dict[str, list[float]] = field(default_factory=dict)  # a job's successful runs
    runs: int = 0  # how many past runs were read


def estimate(samples: Sequence[float]) -> Estimate:
    recent = [max(0.0, s) for s in samples[:SAMPLES]]
    if not recent:
        return Estimate(DEFAULT_SECONDS, 0)
    return Estimate(statistics.median(recent), len(recent))


class DurationModel:
    """Estimates for the tasks of one job, remembering which fell back to the default."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.default = DEFAULT_SECONDS
        self.unknown: list[str] = []
        self._known: dict[str, Estimate] = {}

    def task(self, spec: TaskSpec) -> Estimate:
        """One attempt of a plain or job task; for a foreach task, one of its items."""
        got = self._known.get(spec.name)
        if got is None:
            got = self._known[spec.name] = self._estimate(spec)
        return got

    def _estimate(self, spec: TaskSpec) -> Estimate:
        if spec.foreach is not None:
            found = self.history.items.get(spec.name, [])
        elif spec.kind == "job":
            found = (self.history.jobs.get(str(spec.command))
                     or self.history.tasks.get(spec.name, []))
        else:
            found = self.history.tasks.get(spec.name, [])
        got = estimate(found)
        if spec.foreach is not None and spec.foreach.values is not None and not spec.foreach.values:
            return got  # no item ever to run: nothing to know (the basis names none)
        if got.samples == 0 and spec.name not in self.unknown:
            self.unknown.append(spec.name)
        return got

    def item_count(self, spec: TaskSpec) -> int:
        """How many items a foreach task is expected to expand into."""
        if spec.foreach is not None and spec.foreach.values is not None:
            return len(spec.foreach.values)
        counts = self.history.item_counts.get(spec.name, [])[:SAMPLES]
        if not counts:
            return DEFAULT_ITEMS
        return round(statistics.median(counts))

    def basis(self, slots: int) -> str:
        """One line saying what the forecast rests on."""
        runs = self.history.runs
        text = (f"median of successful attempts in the last {runs} run(s)" if runs
                else "no history")
        text += f"; {slots} slot(s)"
        if self.unknown:
            shown = ", ".join(self.unknown[:5]) + (" ..." if len(self.unknown) > 5 else "")
            text += f"; never seen, {self.default:g}s each: {shown}"
        return text
