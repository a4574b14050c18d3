"""What every engine function is given: the store, the clock, the settings of this process,
the caches of immutable definitions, and the ordered effects of a run's end."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import field

from taskplan.dataclass import dataclass
from taskplan.engine.records import StepResult
from taskplan.model import JobSpec, TaskSpec, TriggerSpec
from taskplan.store.db import Store, Tx
from taskplan.store.ops import RunRow
from taskplan.store.run_ops import RunMeta
from taskplan.timing.business import ClosedDays

Clock = Callable[[], float]


@dataclass(frozen=True)
class CalendarDays:
    """The closed days of every applied business calendar, as of `stamp` (a mark of the
    calendars table that changes whenever a calendar does)."""

    stamp: tuple[int, float]
    closed: dict[str, ClosedDays]


@dataclass
class SpecCache:
    """Job versions never change, so their parsed definitions are kept for good; run metadata
    is bounded, since a daemon sees runs without end but is only asked about active ones."""

    specs: dict[int, JobSpec] = field(default_factory=dict)
    tasks: dict[int, dict[str, TaskSpec]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # One thread at a time rebuilds a definition: the slots that claim the first tasks of a
    # new version would otherwise each parse it (20 ms for 1,000 tasks), all at once.
    load_lock: threading.Lock = field(default_factory=threading.Lock)
    run_meta: OrderedDict[int, RunMeta] = field(default_factory=OrderedDict)
    # rebuilt when a calendar changes
    calendars: CalendarDays | None = None


@dataclass
class LabelCache:
    """Label sets and agents' labels, both immutable once committed; what an agent may claim
    is derived from them (claims.label_sets_of)."""

    ids: dict[str, int] = field(default_factory=dict)  # "a,b" -> id, only committed ones
    sets: dict[int, frozenset[str]] = field(default_factory=dict)  # id -> labels, up to `upto`
    upto: int = 0
    agents: dict[int, frozenset[str]] = field(default_factory=dict)


@dataclass
class TriggerIndex:
    """Which jobs' cross-job triggers wait for each job, as of a mark of the definitions."""

    mark: tuple[int, float]
    # upstream job name -> (dependent job id, its current version id, the trigger)
    by_upstream: dict[str, list[tuple[int, int, TriggerSpec]]]


# A run-end effect runs inside the transaction that ended the run, in the order listed in
# Context.run_end_effects (engine/facade.py sets them).
RunEndEffect = Callable[["Context", Tx, RunRow, float, StepResult | None], None]


@dataclass
class Context:
    store: Store
    clock: Clock
    run_end_effects: tuple[RunEndEffect, ...]
    # The zone of jobs that name none (taskplan.toml `timezone`): `run.fire_time` and a
    # deadline's `finish_by` use it.
    default_tz: str = "UTC"
    # taskplan.toml's [connections] (name -> URL, references unresolved), for sql tasks.
    shared_connections: dict[str, str] = field(default_factory=dict)
    # taskplan.toml's [pools]: they keep that size whatever a job file's `pools:` says.
    configured_pools: dict[str, int] = field(default_factory=dict)
    specs: SpecCache = field(default_factory=SpecCache)
    labels: LabelCache = field(default_factory=LabelCache)
    trigger_index: TriggerIndex | None = None
    # The reference path: every finish recorded on its own, in Python on every backend. The
    # batched and server-side steps are checked against it (tests/integration).
    one_by_one: bool = False
