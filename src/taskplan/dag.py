"""Pure graph code over a job's tasks: edges, cycles, topological order, critical path
(and the walk back through a finished or predicted run that the forecast and the console
share).

Edges come from `depends_on`, from `foreach: {from: X}` (X must finish before its list can be
read) and from stages: a staged task waits for every task of every lower stage. Stages are
modelled with one virtual node per stage ("stage N is done") chained in stage order, so a
barrier costs O(tasks) edges instead of O(tasks of stage N x tasks of stage N+1).

Names that are not tasks of the job are ignored here; the validator reports them.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TypeVar

from taskplan.model import TaskSpec

# Virtual nodes are tuples so they can never collide with a task name.
Node = str | tuple[str, int]
K = TypeVar("K", bound=Hashable)


def upstreams(tasks: Sequence[TaskSpec]) -> dict[str, set[str]]:
    """Each task's explicit upstreams: `depends_on` plus a foreach `from:` task."""
    names = {t.name for t in tasks}
    out: dict[str, set[str]] = {}
    for t in tasks:
        ups = {d for d in t.depends_on if d in names}
        if t.foreach is not None and t.foreach.from_task in names:
            ups.add(t.foreach.from_task)
        out[t.name] = ups
    return out


def _stage_node(stage: int) -> Node:
    return ("stage", stage)


def waits_for(tasks: Sequence[TaskSpec]) -> dict[Node, list[Node]]:
    """The full graph, node -> the nodes it waits for, with one virtual node per stage."""
    graph: dict[Node, list[Node]] = {}
    for name, ups in upstreams(tasks).items():
        graph[name] = sorted(ups)
    stages = sorted({t.stage for t in tasks if t.stage is not None})
    previous: dict[int, int | None] = {s: (stages[i - 1] if i else None)
                                       for i, s in enumerate(stages)}
    for i, s in enumerate(stages):
        graph[_stage_node(s)] = [_stage_node(stages[i - 1])] if i else []
    for t in tasks:
        if t.stage is None:
            continue
        graph[_stage_node(t.stage)].append(t.name)
        before = previous[t.stage]
        if before is not None:
            graph[t.name].append(_stage_node(before))
    return graph


def find_cycle(tasks: Sequence[TaskSpec]) -> list[str] | None:
    """A cycle as task names, first == last, read "waits for": ['a', 'b', 'a'] means a waits
    for b and b waits for a. It starts at the cycle's task that comes first in `tasks`."""
    graph = waits_for(tasks)
    order = {t.name: i for i, t in enumerate(tasks)}
    raw = _find_raw_cycle(graph, [t.name for t in tasks])
    if raw is None:
        return None
    names = [n for n in raw[:-1] if isinstance(n, str)]
    start = min(range(len(names)), key=lambda i: order[names[i]])
    rotated = names[start:] + names[:start]
    return [*rotated, rotated[0]]


def _find_raw_cycle(graph: dict[Node, list[Node]], roots: list[str]) -> list[Node] | None:
    # Iterative DFS with colours, so deep chains do not hit the recursion limit.
    colour: dict[Node, int] = {}
    for root in roots:
        if root in colour:
            continue
        stack: list[tuple[Node, int]] = [(root, 0)]
        path: list[Node] = [root]
        colour[root] = 1
        while stack:
            node, i = stack[-1]
            nexts = graph.get(node, [])
            if i == len(nexts):
                stack.pop()
                path.pop()
                colour[node] = 2
                continue
            stack[-1] = (node, i + 1)
            nxt = nexts[i]
            state = colour.get(nxt, 0)
            if state == 1:
                return [*path[path.index(nxt):], nxt]
            if state == 0:
                colour[nxt] = 1
                stack.append((nxt, 0))
                path.append(nxt)
    return None


def describe_cycle(tasks: Sequence[TaskSpec], cycle: Sequence[str]) -> str:
    """`a -> b -> a`, plus a note for each step that exists only because of stages."""
    ups = upstreams(tasks)
    stage = {t.name: t.stage for t in tasks}
    notes = []
    for a, b in itertools.pairwise(cycle):
        if b not in ups.get(a, set()) and stage.get(b) is not None:
            notes.append(
                f"{a} is in stage {stage[a]} so it waits for every task of stage {stage[b]}"
            )
    shown = list(cycle)
    if len(shown) > _CYCLE_SHOWN:  # a line a user can read: its start, and its way back
        keep = _CYCLE_SHOWN // 2
        shown = [*cycle[:keep], f"... ({len(cycle) - 2 * keep} more)", *cycle[-keep:]]
    if len(notes) > 3:
        notes = [*notes[:3], f"and {len(notes) - 3} more such steps"]
    text = " -> ".join(shown)
    return f"{text} ({'; '.join(notes)})" if notes else text


_CYCLE_SHOWN = 12  # tasks of a cycle named in its message


class CycleError(ValueError):
    def __init__(self, cycle: list[str], text: str) -> None:
        self.cycle = cycle
        super().__init__(f"dependency cycle: {text}")


def _kahn(tasks: Sequence[TaskSpec]) -> list[Node]:
    graph = waits_for(tasks)
    rank: dict[Node, tuple[int, int]] = {t.name: (0, i) for i, t in enumerate(tasks)}
    for node in graph:
        if not isinstance(node, str):
            rank[node] = (1, node[1])
    dependants: dict[Node, list[Node]] = {n: [] for n in graph}
    missing = {n: len(ups) for n, ups in graph.items()}
    for node, ups in graph.items():
        for up in ups:
            dependants[up].append(node)
    heap = [(rank[n], n) for n, count in missing.items() if count == 0]
    heapq.heapify(heap)
    out: list[Node] = []
    while heap:
        _, node = heapq.heappop(heap)
        out.append(node)
        for down in dependants[node]:
            missing[down] -= 1
            if missing[down] == 0:
                heapq.heappush(heap, (rank[down], down))
    if len(out) != len(graph):
        cycle = find_cycle(tasks) or []
        raise CycleError(cycle, describe_cycle(tasks, cycle))
    return out


def topological_order(tasks: Sequence[TaskSpec]) -> list[str]:
    """Every task after all it waits for; ties keep file order. Raises CycleError."""
    return [n for n in _kahn(tasks) if isinstance(n, str)]


def critical_path(
    tasks: Sequence[TaskSpec], durations: Mapping[str, float]
) -> tuple[float, list[str]]:
    """The longest chain of waits by summed duration (missing durations count as 0),
    as (total seconds, task names from first to last). Raises CycleError."""
    graph = waits_for(tasks)
    finish: dict[Node, float] = {}
    for node in _kahn(tasks):
        own = durations.get(node, 0.0) if isinstance(node, str) else 0.0
        finish[node] = max((finish[up] for up in graph[node]), default=0.0) + own
    # With every task starting as soon as it may, the chain that decides the finish is the
    # longest one. A stage node ends with one of its tasks, which comes before it in `finish`,
    # so the chain never ends on a stage node.
    path = [n for n in decisive_chain(graph, finish) if isinstance(n, str)]
    return (finish[path[-1]], path) if path else (0.0, [])


def chain_back(last: K, before: Callable[[K], K | None]) -> list[K]:
    """The chain that decided a finish, first to last: `last`, then `before(last)` (the step
    whose end let it start), the step before that, ... until `before` gives None or a step
    already in the chain."""
    chain = [last]
    seen = {last}
    step = before(last)
    while step is not None and step not in seen:
        chain.append(step)
        seen.add(step)
        step = before(step)
    return chain[::-1]


def decisive_chain(ups: Mapping[K, Sequence[K]], finish: Mapping[K, float]) -> list[K]:
    """The critical path read off finish times: from the node that finished last, back each
    time through its upstream that finished last (the first of `finish` / of `ups` on a tie).
    Nodes absent from `finish` (not finished, or not to be counted) are not on it."""
    if not finish:
        return []

    def before(node: K) -> K | None:
        done = [u for u in ups.get(node, ()) if u in finish]
        return max(done, key=finish.__getitem__) if done else None

    return chain_back(max(finish, key=finish.__getitem__), before)
