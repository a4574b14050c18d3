"""The run page's pictures, drawn on the server: a layered task graph and a Gantt chart.

Both are plain SVG text; every name, state and reason goes through `escape`, so what a task or
a user wrote is shown, never interpreted. Sizes are bounded: a foreach group is one node and
one bar however many items it has, and past `MAX_NODES` top-level task runs the graph gives way
to a note (the paged table still lists them).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from urllib.parse import quote

from markupsafe import Markup, escape

from taskplan.dag import decisive_chain
from taskplan.model import TaskRunKind
from taskplan.store.console import AttemptBar, GraphNode, RunGraph

MAX_NODES = 300
MAX_GANTT_ROWS = 200
NODE_W, NODE_H, GAP_X, GAP_Y = 176, 40, 56, 14
ORDER = ("succeeded", "running", "retrying", "ready", "pending", "failed", "upstream_failed",
         "skipped", "cancelled")


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def upstreams(graph: RunGraph) -> dict[int, list[int]]:
    """Each node's upstream task runs, stage barriers looked through."""
    by_id = {n.id: n for n in graph.nodes}
    direct: dict[int, list[int]] = {}
    for e in graph.edges:
        direct.setdefault(e.down_id, []).append(e.up_id)

    def resolve(i: int, seen: set[int]) -> list[int]:
        out: list[int] = []
        for u in direct.get(i, []):
            node = by_id.get(u)
            if node is not None and node.kind == TaskRunKind.BARRIER:
                if u not in seen:
                    seen.add(u)
                    out.extend(resolve(u, seen))
            elif node is not None:
                out.append(u)
        return out

    return {n.id: resolve(n.id, set()) for n in graph.nodes if n.kind != TaskRunKind.BARRIER}


def _end(n: GraphNode) -> float | None:
    return n.items_finished if n.kind == TaskRunKind.FOREACH else n.finished_at


def _start(n: GraphNode) -> float | None:
    return n.items_started if n.kind == TaskRunKind.FOREACH and n.items_started else n.started_at


def critical_path(graph: RunGraph) -> list[int]:
    """The chain that decided the finish: from the last task run to end, back through the
    upstream that finished last each time."""
    ends = {n.id: end for n in graph.nodes
            if n.kind != TaskRunKind.BARRIER and (end := _end(n)) is not None}
    return decisive_chain(upstreams(graph), ends)


def _layers(graph: RunGraph) -> dict[int, int]:
    direct: dict[int, list[int]] = {}
    for e in graph.edges:
        direct.setdefault(e.down_id, []).append(e.up_id)
    layer: dict[int, int] = {}

    def depth(i: int, trail: set[int]) -> int:
        if i in layer:
            return layer[i]
        trail.add(i)
        value = 1 + max((depth(u, trail) for u in direct.get(i, []) if u not in trail),
                        default=-1)
        trail.discard(i)
        layer[i] = value
        return value

    for n in graph.nodes:
        depth(n.id, set())
    return layer


def item_summary(items: dict[str, int]) -> str:
    return " · ".join(f"{items[s]} {s}" for s in ORDER if items.get(s)) or "no items yet"


def graph_svg(run_id: int, graph: RunGraph, reasons: dict[int, str],
              critical: set[int] | None = None) -> Markup:
    nodes = graph.nodes
    if not nodes:
        return Markup('<p class="note">No task runs.</p>')
    if len(nodes) > MAX_NODES:
        return Markup(f'<p class="note">The graph of {len(nodes)} top-level task runs is not'
                      " drawn; the table below lists them.</p>")
    layer = _layers(graph)
    columns: dict[int, list[GraphNode]] = {}
    for n in nodes:
        columns.setdefault(layer[n.id], []).append(n)
    pos: dict[int, tuple[int, int]] = {}
    for col, members in columns.items():
        for row, n in enumerate(members):
            pos[n.id] = (10 + col * (NODE_W + GAP_X), 10 + row * (NODE_H + GAP_Y))
    width = 20 + (max(columns) + 1) * (NODE_W + GAP_X) - GAP_X
    height = 20 + max(len(m) for m in columns.values()) * (NODE_H + GAP_Y) - GAP_Y
    out = [f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="{width}"'
           f' height="{height}" viewBox="0 0 {width} {height}" role="img"'
           ' aria-label="task graph">']
    for e in graph.edges:
        u, d = e.up_id, e.down_id
        if u in pos and d in pos:
            x1, y1 = pos[u][0] + NODE_W, pos[u][1] + NODE_H // 2
            x2, y2 = pos[d][0], pos[d][1] + NODE_H // 2
            mid = (x1 + x2) // 2
            cls = "edge crit" if critical and u in critical and d in critical else "edge"
            out.append(f'<path class="{cls}" d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"/>')
    for n in nodes:
        x, y = pos[n.id]
        if n.kind == TaskRunKind.BARRIER:
            label = f"stage {n.stage} done" if n.stage is not None else "stage"
            out.append(f'<g class="node barrier st-{escape(n.state)}" data-state="'
                       f'{escape(n.state)}"><rect x="{x + NODE_W // 2 - 40}" y="{y + 8}"'
                       f' width="80" height="{NODE_H - 16}" rx="12"/><text x="{x + NODE_W // 2}"'
                       f' y="{y + NODE_H // 2 + 4}" text-anchor="middle">{escape(label)}</text>'
                       "</g>")
            continue
        crit = " crit" if critical and n.id in critical else ""
        href = f"/runs/{run_id}/tasks/{quote(n.name, safe='')}"
        tip = n.name + f" — {n.state}"
        if n.id in reasons:
            tip += f" — {reasons[n.id]}"
        if n.kind == TaskRunKind.FOREACH:
            sub = item_summary(n.items)
        else:
            sub = n.state + (f" · try {n.attempts}" if n.attempts > 1 else "")
        out.append(
            f'<a href="{escape(href)}"><g class="node st-{escape(n.state)}{crit}"'
            f' data-task="{escape(n.name)}" data-state="{escape(n.state)}">'
            f"<title>{escape(tip)}</title>"
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="5"/>'
            f'<text x="{x + 8}" y="{y + 16}" class="name">{escape(_short(n.name, 24))}'
            f"{' x' + str(sum(n.items.values())) if n.kind == TaskRunKind.FOREACH else ''}</text>"
            f'<text x="{x + 8}" y="{y + 32}" class="sub">{escape(_short(sub, 30))}</text>')
        total = sum(n.items.values())
        if n.kind == TaskRunKind.FOREACH and total:
            bx = float(x)
            for s in ORDER:
                if n.items.get(s):
                    w = NODE_W * n.items[s] / total
                    out.append(f'<rect class="bar st-{s}" x="{bx:.1f}" y="{y + NODE_H - 4}"'
                               f' width="{w:.1f}" height="4"/>')
                    bx += w
        out.append("</g></a>")
    out.append("</svg>")
    return Markup("".join(out))


def _ticks(t0: float, t1: float) -> list[float]:
    span = max(t1 - t0, 1e-3)
    for step in (0.1, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
                 14400, 21600, 43200, 86400):
        if span / step <= 8:
            break
    first = (int(t0 / step) + 1) * step
    return [round(first + i * step, 3) for i in range(int((t1 - first) / step) + 1)]


def gantt_rows(graph: RunGraph) -> list[GraphNode]:
    """The Gantt's rows: top-level task runs by start, the first MAX_GANTT_ROWS (the bars to
    read are theirs)."""
    rows = [n for n in graph.nodes if n.kind != TaskRunKind.BARRIER]
    rows.sort(key=lambda n: (_start(n) is None, _start(n) or 0.0, n.id))
    return rows[:MAX_GANTT_ROWS]


def gantt_svg(graph: RunGraph, bars: list[AttemptBar], *, run_start: float | None,
              critical: set[int] | None = None, predicted: Any = None) -> Markup:
    """One row per top-level task run: its attempts as bars (retries visible), a foreach group
    as one bar from its first item's start to its last item's end, predicted bars dashed."""
    now = time.time()
    rows = gantt_rows(graph)
    by_task: dict[int, list[AttemptBar]] = {}
    for b in bars:
        by_task.setdefault(b.task_run_id, []).append(b)
    guesses: dict[str, tuple[float, float]] = {}
    if predicted is not None:
        guesses = dict(getattr(predicted, "tasks", {}) or {})
    starts = [s for n in rows if (s := _start(n)) is not None]
    if run_start is not None:
        starts.append(run_start)
    if not starts:
        return Markup('<p class="note">Nothing has started yet.</p>')
    t0 = min(starts)
    ends = [e for n in rows if (e := _end(n)) is not None] + [
        now for n in rows if n.state in ("running", "retrying") or (
            n.kind == TaskRunKind.FOREACH and n.items.get("running"))]
    ends += [f for _, f in guesses.values()]
    t1 = max([*ends, t0 + 1.0])
    label_w, axis_w, row_h = 190, 760, 20
    width, height = label_w + axis_w + 50, 30 + row_h * len(rows)  # room for the last label

    def x(t: float) -> float:
        return label_w + (t - t0) / (t1 - t0) * axis_w

    out = [f'<svg class="gantt" xmlns="http://www.w3.org/2000/svg" width="{width}"'
           f' height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="Gantt">']
    ticks = _ticks(t0, t1)
    fine = len(ticks) > 1 and ticks[1] - ticks[0] < 1
    for t in ticks:
        xt = x(t)
        label = datetime.fromtimestamp(t).strftime("%H:%M:%S.%f")[:-5 if fine else -7]
        out.append(f'<line class="tick" x1="{xt:.1f}" y1="16" x2="{xt:.1f}" y2="{height}"/>'
                   f'<text class="tick" x="{xt:.1f}" y="12" text-anchor="middle">{label}</text>')
    for i, n in enumerate(rows):
        y = 22 + i * row_h
        crit = critical is not None and n.id in critical
        out.append(f'<g class="row{" crit" if crit else ""}" data-task="{escape(n.name)}">'
                   f'<text class="label" x="4" y="{y + 13}">{"★ " if crit else ""}'
                   f"{escape(_short(n.name, 26))}</text>")
        if n.kind == TaskRunKind.FOREACH:
            s, e = _start(n), _end(n)
            if s is not None:
                end = now if n.items.get("running") or e is None else e
                out.append(f'<rect class="bar st-{escape(n.state)}" x="{x(s):.1f}" y="{y + 3}"'
                           f' width="{max(2.0, x(end) - x(s)):.1f}" height="{row_h - 6}">'
                           f"<title>{escape(n.name)}: {escape(item_summary(n.items))}</title>"
                           "</rect>")
        for b in by_task.get(n.id, []):
            end = b.finished_at if b.finished_at is not None else now
            out.append(f'<rect class="bar st-{escape(b.state)}" x="{x(b.started_at):.1f}"'
                       f' y="{y + 3}" width="{max(2.0, x(end) - x(b.started_at)):.1f}"'
                       f' height="{row_h - 6}"><title>{escape(n.name)} attempt {b.attempt}:'
                       f" {escape(b.state)} ({end - b.started_at:.1f}s)</title></rect>")
        guess = guesses.get(n.name)
        if guess is not None and n.state not in ("succeeded", "failed", "upstream_failed",
                                                 "skipped", "cancelled"):
            gs, gf = guess
            out.append(f'<rect class="bar predicted" x="{x(gs):.1f}" y="{y + 3}"'
                       f' width="{max(2.0, x(gf) - x(gs)):.1f}" height="{row_h - 6}">'
                       f"<title>{escape(n.name)}: predicted</title></rect>")
        out.append("</g>")
    out.append("</svg>")
    return Markup("".join(out))
