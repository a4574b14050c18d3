"""Play the rest of one or more runs forward, event by event, with the engine's own rules.

Every unfinished task run is a `Node` with an estimated duration. The simulator starts from the
state the store holds now and repeats what agents and transactions do:

* a finished node decrements its dependants; one that reaches zero is resolved by
  `rules.resolve_trigger` (ready, skipped, upstream_failed; barriers settle at once);
* at every instant something changed, free slots are split between runs by
  `rules.fair_shares` (job priority, then the run with the fewest running tasks, capped by
  `max_parallel`), and each run hands out its share in claim order (higher task priority
  first, then first ready), passing over candidates whose pool is full and reading on, as a
  claim does;
* a foreach parent expands into its items when claimed (its items, not the parent, take slots
  and pool room); a `job` task holds no slot: it ends when its child run does (simulated too
  when it exists) or after the child job's usual duration;
* a halted run starts nothing new (`finish_stage`: nothing above the failed stage).

The future is assumed to succeed: a task that has not failed yet is predicted to succeed on
its next attempt. Nothing here reads a clock or a store: `now` and the nodes are given.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from dataclasses import field

from taskplan.dag import chain_back
from taskplan.dataclass import dataclass
from taskplan.model import FAILED_LIKE, Halt, OnFailure, TaskRunKind, TaskState
from taskplan.rules import RunShare, fair_shares, pool_has_room, resolve_trigger

ACTIVE = frozenset({"pending", "ready", "running", "retrying"})
# Halts after which no new task run starts at all (finish_stage still starts low stages).
FULL_HALTS = frozenset({Halt.STOP, Halt.CANCEL, Halt.USER_STOP, Halt.USER_CANCEL})
# An expanded foreach that the simulator invents items for is simulated item by item up to
# this many items; past it, in this many equal groups (the finish barely moves, the cost does).
MAX_ITEMS = 2000


@dataclass
class Node:
    """One task run (or one expected task run) of a run.

    `kind`: task | job | foreach | barrier | item. `seconds` is one attempt's expected duration
    (an item's for foreach parents and items). `items`: for a foreach parent not expanded yet,
    how many items it is expected to have.
    """

    key: str
    task: str
    kind: str
    state: str = "pending"
    ups: tuple[str, ...] = ()
    parent: str | None = None
    seconds: float = 0.0
    started_at: float | None = None
    ready_at: float | None = None
    priority: int = 0
    pool: str | None = None
    stage: int | None = None
    trigger: str = "all_success"
    items: int | None = None
    child_run: int | None = None  # a running job task: the run it started
    shown: bool = True  # whether its span is reported (invented items are not)


@dataclass
class SimRun:
    run_id: int
    nodes: list[Node]
    priority: int = 0
    max_parallel: int | None = None
    on_failure: str = "continue"
    halt: str | None = None
    halt_stage: int | None = None


@dataclass
class Prediction:
    """What a run is predicted to do: its finish (None: it cannot finish, e.g. no slot),
    each node's (start, finish), and the chain of task names that decides the finish."""

    finish_at: float | None
    spans: dict[str, tuple[float, float]] = field(default_factory=dict)
    critical_path: list[str] = field(default_factory=list)


# A ready node in its run's claim order: (rank, ready at, creation order, node index).
_Ready = tuple[int, float, int, int]


def _claim_pool(node: Node) -> str | None:
    """The pool a claim counts the node in: a foreach parent takes none (its items do)."""
    return node.pool if node.kind != TaskRunKind.FOREACH else None


@dataclass
class _N:
    """The simulator's working copy of a node."""

    node: Node
    run: int
    order: int
    state: str
    waiting: int = 0
    failed_up: int = 0
    dependants: list[int] = field(default_factory=list)
    parent: int | None = None
    children_left: int = 0
    failed_children: int = 0
    start: float | None = None
    finish: float | None = None
    cause: int | None = None  # the node whose end let this one become ready
    holds_slot: bool = False
    carries_failure: bool = False


class _Sim:
    def __init__(self, runs: Sequence[SimRun], now: float, slots: int,
                 pools: dict[str, int]) -> None:
        self.now = now
        self.slots = slots
        self.pools = dict(pools)
        self.runs = {r.run_id: r for r in runs}
        self.nodes: list[_N] = []
        self.index: dict[tuple[int, str], int] = {}
        # A run's ready nodes, a heap per pool they take (None: no pool), so that a claim
        # reads past a full pool without popping every node of it.
        self.ready: dict[int, dict[str | None, list[_Ready]]] = {r.run_id: {} for r in runs}
        self.ready_n = dict.fromkeys(self.runs, 0)
        self.running = dict.fromkeys(self.runs, 0)  # the run's `running` counter
        self.unfinished = dict.fromkeys(self.runs, 0)
        self.run_end: dict[int, float] = {}
        self.pool_used: dict[str, int] = {}
        self.busy = 0
        self.expanded = False
        self.events: list[tuple[float, int, str, int]] = []
        self.seq = itertools.count()
        self.last_end: dict[int, int] = {}
        self.child_of: dict[int, int] = {}  # child run id -> the job node waiting for it
        for r in runs:
            for node in r.nodes:
                self._add(r.run_id, node)
        for i, n in enumerate(self.nodes):
            for up in n.node.ups:
                j = self.index.get((n.run, up))
                if j is not None:
                    self.nodes[j].dependants.append(i)
            if n.node.parent is not None:
                p = self.index.get((n.run, n.node.parent))
                if p is not None:
                    n.parent = p
                    if n.state in ACTIVE:
                        self.nodes[p].children_left += 1
                    elif n.state in FAILED_LIKE or n.state == TaskState.CANCELLED:
                        self.nodes[p].failed_children += 1

    def _add(self, run_id: int, node: Node) -> int:
        i = len(self.nodes)
        self.nodes.append(_N(node, run_id, i, node.state))
        self.index[(run_id, node.key)] = i
        if node.state in ACTIVE:
            self.unfinished[run_id] += 1
        return i

    # -- setting out from the present ---------------------------------------------------
    def start(self) -> None:
        for i, n in enumerate(list(self.nodes)):
            node = n.node
            if n.state == "running":
                self._resume_running(i)
            elif n.state == "retrying":
                due = max(self.now, node.ready_at or self.now)
                self._push(due, "ready", i)
            elif n.state == "ready":
                self._make_ready(i, node.ready_at if node.ready_at is not None else self.now)
            elif n.state == "pending":
                for up in node.ups:
                    j = self.index.get((n.run, up))
                    if j is None:
                        continue
                    upstate = self.nodes[j].state
                    if upstate in ACTIVE:
                        n.waiting += 1
                    elif upstate in FAILED_LIKE or upstate == TaskState.CANCELLED:
                        n.failed_up += 1
        for i, n in enumerate(self.nodes):  # pending with nothing left to wait for
            if n.state == "pending" and n.waiting == 0 and n.node.kind != TaskRunKind.ITEM:
                self._resolve(i, self.now)
        for run_id, left in self.unfinished.items():
            if left == 0:
                self.run_end[run_id] = self.now
                waiting = self.child_of.pop(run_id, None)
                if waiting is not None:
                    self._push(self.now, "end", waiting)

    def _resume_running(self, i: int) -> None:
        n = self.nodes[i]
        node = n.node
        n.start = node.started_at if node.started_at is not None else self.now
        if node.kind == TaskRunKind.FOREACH:
            if n.children_left:  # expanded: it ends with its last item, off any slot
                return
            self.running[n.run] += 1
            self._expand(i, self.now)
            return
        self.running[n.run] += 1
        if node.kind == TaskRunKind.JOB:
            if node.child_run is not None and node.child_run in self.runs:
                self.child_of[node.child_run] = i
                return
        else:
            self._take_slot(n)
        self._push(max(self.now, n.start + node.seconds), "end", i)

    def _take_slot(self, n: _N) -> None:
        """A started task (not a foreach parent, not a job task) holds a slot and its pool."""
        n.holds_slot = True
        self.busy += 1
        if n.node.pool is not None:
            self.pool_used[n.node.pool] = self.pool_used.get(n.node.pool, 0) + 1

    # -- events -------------------------------------------------------------------------
    def _push(self, at: float, what: str, i: int) -> None:
        heapq.heappush(self.events, (at, next(self.seq), what, i))

    def _make_ready(self, i: int, at: float) -> None:
        n = self.nodes[i]
        n.state = "ready"
        rank = -n.node.priority
        heap = self.ready[n.run].setdefault(_claim_pool(n.node), [])
        heapq.heappush(heap, (rank, at, n.order, i))
        self.ready_n[n.run] += 1

    def run(self) -> None:
        self.start()
        self._dispatch(self.now)
        while self.events:
            t = self.events[0][0]
            while self.events and self.events[0][0] == t:
                _, _, what, i = heapq.heappop(self.events)
                if what == "end":
                    self._end(i, t)
                else:
                    self._make_ready(i, t)
            self._dispatch(t)

    def _end(self, i: int, t: float) -> None:
        n = self.nodes[i]
        if n.holds_slot:
            n.holds_slot = False
            self.busy -= 1
            if n.node.pool is not None:
                self.pool_used[n.node.pool] -= 1
        if n.node.kind != TaskRunKind.FOREACH:
            self.running[n.run] -= 1
        self._settle(i, TaskState.SUCCEEDED, t)

    def _settle(self, first: int, state: str, t: float) -> None:
        """A node reached a terminal state at t: propagate as `engine.transitions.settle` does."""
        work = [(first, state)]
        skip_failed = self.runs[self.nodes[first].run].on_failure != OnFailure.CONTINUE
        while work:
            i, st = work.pop()
            n = self.nodes[i]
            n.state = st
            n.finish = t
            run_id = n.run
            self.unfinished[run_id] -= 1
            if st == TaskState.SUCCEEDED and n.node.kind != TaskRunKind.BARRIER:
                self.last_end[run_id] = i  # events come in time order: this is the latest
            failed = 1 if (st in FAILED_LIKE or st == TaskState.CANCELLED
                           or n.carries_failure) else 0
            if n.parent is not None:
                p = self.nodes[n.parent]
                p.children_left -= 1
                p.failed_children += failed
                if p.children_left == 0 and p.state in ACTIVE:
                    p.cause = i
                    work.append((n.parent, TaskState.FAILED if p.failed_children
                                 else TaskState.SUCCEEDED))
            else:
                for d in n.dependants:
                    dn = self.nodes[d]
                    if dn.state != "pending":
                        continue
                    dn.waiting -= 1
                    dn.failed_up += failed
                    if dn.waiting > 0:
                        continue
                    dn.cause = i
                    new = resolve_trigger(dn.node.kind if dn.node.kind == TaskRunKind.BARRIER
                                          else TaskRunKind.TASK,
                                          dn.node.trigger, dn.failed_up)
                    if (skip_failed and new == TaskState.UPSTREAM_FAILED
                            and dn.node.kind != TaskRunKind.BARRIER):
                        new = TaskState.SKIPPED
                        dn.carries_failure = True
                    if new == TaskState.READY:
                        self._make_ready(d, t)
                    else:
                        work.append((d, new))
            if self.unfinished[run_id] == 0:
                self.run_end[run_id] = t
                waiting = self.child_of.pop(run_id, None)
                if waiting is not None:
                    self._push(t, "end", waiting)

    def _resolve(self, i: int, t: float) -> None:
        n = self.nodes[i]
        new = resolve_trigger(n.node.kind if n.node.kind == TaskRunKind.BARRIER
                              else TaskRunKind.TASK, n.node.trigger, n.failed_up)
        if new == TaskState.READY:
            self._make_ready(i, t)
        else:
            self._settle(i, new, t)

    # -- claims ---------------------------------------------------------------------------
    def _dispatch(self, t: float) -> None:
        # As an agent: claim for the free slots; go round again at once only when every free
        # slot got work or a foreach expanded (its items wake the dispatcher); fewer claims
        # than slots waits for the next change.
        while True:
            free = self.slots - self.busy
            if free <= 0:
                return
            self.expanded = False
            shares = fair_shares([
                RunShare(run_id, r.priority, self.running[run_id], self.ready_n[run_id],
                         r.max_parallel)
                for run_id, r in self.runs.items()
                if self.ready_n[run_id] and r.halt not in FULL_HALTS
            ], free)
            claimed = 0
            for run_id, share in sorted(shares.items()):
                claimed += self._claim(run_id, share, t)
            if claimed == 0 or (claimed < free and not self.expanded):
                return

    def _claim(self, run_id: int, share: int, t: float) -> int:
        run = self.runs[run_id]
        max_stage = run.halt_stage if run.halt == Halt.FINISH_STAGE else None
        heaps = self.ready[run_id]
        taken: list[int] = []
        kept: list[tuple[str | None, _Ready]] = []
        # As a claim does, the best ready node whose pool has room, one after another: a full
        # pool's nodes are passed over and stay ready. The nodes start only once chosen, so
        # that a foreach's items wait for the next round as they wait for the next step.
        used = dict(self.pool_used)
        while len(taken) < share:
            best: str | None = None
            head: _Ready | None = None
            for pool, heap in heaps.items():
                if heap and (head is None or heap[0] < head) and pool_has_room(
                        pool, self.pools, used):
                    best, head = pool, heap[0]
            if head is None:
                break
            entry = heapq.heappop(heaps[best])
            node = self.nodes[entry[3]].node
            if max_stage is not None and (node.stage or 0) > max_stage:
                kept.append((best, entry))
                continue
            if best is not None:
                used[best] = used.get(best, 0) + 1
            taken.append(entry[3])
        for pool, entry in kept:
            heapq.heappush(heaps[pool], entry)
        self.ready_n[run_id] -= len(taken)
        for i in taken:
            self._start_node(i, t)
        return len(taken)

    def _start_node(self, i: int, t: float) -> None:
        n = self.nodes[i]
        node = n.node
        n.state = "running"
        n.start = t
        self.running[n.run] += 1
        if node.kind == TaskRunKind.FOREACH:
            self._expand(i, t)
            return
        if node.kind != TaskRunKind.JOB:
            self._take_slot(n)
        self._push(t + node.seconds, "end", i)

    def _expand(self, i: int, t: float) -> None:
        """A claimed foreach parent reads its items: each becomes a ready node under it."""
        n = self.nodes[i]
        node = n.node
        self.running[n.run] -= 1  # the parent leaves the running counter
        self.expanded = True
        count = max(0, node.items or 0)
        if count == 0:
            self._settle(i, TaskState.SUCCEEDED, t)
            return
        groups = min(count, MAX_ITEMS)
        seconds = node.seconds * count / groups
        for k in range(groups):
            child = Node(key=f"{node.key}[{k}]", task=node.task, kind=TaskRunKind.ITEM,
                         state="ready", parent=node.key, seconds=seconds, priority=node.priority,
                         pool=node.pool, stage=node.stage, shown=False)
            j = self._add(n.run, child)
            c = self.nodes[j]
            c.order = len(self.nodes) + 1_000_000_000  # created after every existing one
            c.parent = i
            c.cause = n.cause  # items chain to what readied their parent
            n.children_left += 1
            self._make_ready(j, t)

    # -- results --------------------------------------------------------------------------
    def predictions(self) -> dict[int, Prediction]:
        spans: dict[int, dict[str, tuple[float, float]]] = {r: {} for r in self.runs}
        ends: dict[int, float] = {}
        for n in self.nodes:
            if n.finish is not None:
                ends[n.run] = max(ends.get(n.run, n.finish), n.finish)
            if (n.start is not None and n.finish is not None and n.node.kind != TaskRunKind.BARRIER
                    and n.node.shown and n.node.state in ACTIVE):
                spans[n.run][n.node.key] = (n.start, n.finish)
        out: dict[int, Prediction] = {}
        for run_id, run in self.runs.items():
            finish = self.run_end.get(run_id)
            if finish is None and run.halt is not None:
                # A halted run ends once what runs has ended; the rest is skipped then.
                finish = ends.get(run_id, self.now)
            pred = Prediction(finish_at=finish, spans=spans[run_id])
            last = self.last_end.get(run_id)
            if finish is not None and last is not None:
                pred.critical_path = self._chain(last)
            out[run_id] = pred
        return out

    def _chain(self, last: int) -> list[str]:
        # Each node's `cause` is the upstream whose end let it become ready; the chain of what
        # is still to happen ends at what had already happened when the prediction began.
        def before(i: int) -> int | None:
            cause = self.nodes[i].cause
            return cause if cause is not None and self.nodes[cause].node.state in ACTIVE else None

        names: list[str] = []
        for i in chain_back(last, before):
            n = self.nodes[i]
            if (n.node.kind != TaskRunKind.BARRIER and n.state == TaskState.SUCCEEDED
                    and (not names or names[-1] != n.node.task)):
                names.append(n.node.task)
        return names


def simulate(runs: Sequence[SimRun], now: float, slots: int,
             pools: dict[str, int] | None = None) -> dict[int, Prediction]:
    """Predict every given run from `now` with `slots` agent slots shared between them.

    `pools`: declared pool sizes (a pool not listed is unlimited, as at claim time).
    A run whose remaining work can never start (no slot at all) gets `finish_at` None.
    """
    sim = _Sim(runs, now, slots, pools or {})
    sim.run()
    return sim.predictions()
