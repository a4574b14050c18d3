"""The console's HTML pages, rendered on the server with Jinja2 (autoescaped)."""

from __future__ import annotations

import calendar as cal
import json
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from taskplan.engine.definitions import unknown_job
from taskplan.errors import UsageError
from taskplan.model import JobSpec, RunState, TaskRunKind, TaskState
from taskplan.store import console, ops, sched_ops
from taskplan.timing import without_schedules
from taskplan.timing.calendar import ExceptionRule
from taskplan.web import svg, text, views
from taskplan.web.api import EARLIEST, LATEST, TRIGGERS, RunId, ctx_of, number, run_filter
from taskplan.web.auth import COOKIE, Auth
from taskplan.web.views import Ctx

router = APIRouter(include_in_schema=False)
TABLE_PAGE = 100
RUNS_PAGE = 50
JOBS_PAGE = 200
AGENT_LINKS = 20  # running task runs linked per agent on the agents page
# A task page shows its attempt's whole stored output: the agent keeps at most about a
# megabyte of it, but in as many chunks as flushes (one every 0.25 s at most), which a task
# printing a line a second for two hours takes to 7,200; the first 5,000 were all it showed.
ALL_CHUNKS = 2**31 - 1

env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                  autoescape=select_autoescape(default=True, default_for_string=True),
                  trim_blocks=True, lstrip_blocks=True)
env.filters.update(when=text.when, ansi=text.ansi_html, masked=text.masked,
                   marks=text.run_marks,
                   tojson_pretty=lambda v: json.dumps(v, indent=2, default=str,
                                                      ensure_ascii=False))
env.globals.update(took=text.took, deadline=text.deadline, quote=lambda s: quote(str(s), safe=""),
                   RUN_STATES=[s.value for s in RunState], TRIGGERS=TRIGGERS,
                   TASK_STATES=[s.value for s in TaskState])


def render(request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
    auth: Auth = request.app.state.auth
    body = env.get_template(name).render(
        request=request, path=request.url.path, csrf=auth.csrf,
        # Log out only where there is a session to end (not on the login page before it).
        login=auth.cookie_ok(request.cookies.get(COOKIE)),
        now=time.time(), **values)
    # Text that is not Unicode (a lone surrogate: a file name decoded from bytes that are not
    # UTF-8, in a result or a param) is shown as its escape, \udce9: it made the page a 500.
    return HTMLResponse(body.encode("utf-8", "backslashreplace"), status_code=status,
                        headers={"Cache-Control": "no-store"})


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return render(request, "error.html", status=status, status_code=status, message=message)


def login_page(request: Request, target: str, error: str | None, status: int = 200
               ) -> HTMLResponse:
    return render(request, "login.html", status=status, target=target, error=error)


@router.get("/")
def home() -> Response:
    return RedirectResponse("/jobs", status_code=303)


@router.get("/jobs")
def jobs_page(request: Request, q: str | None = None, after: str | None = None) -> Response:
    jobs = views.jobs_list(ctx_of(request), after=after or None, contains=q or None,
                           limit=JOBS_PAGE + 1)
    more = len(jobs) > JOBS_PAGE
    jobs = jobs[:JOBS_PAGE]
    return render(request, "jobs.html", jobs=jobs, q=q or "", after=after or "",
                  next_after=jobs[-1]["name"] if more else None)


@router.get("/jobs/{job}")
def job_page(request: Request, job: str) -> Response:
    ctx = ctx_of(request)
    obj = views.job_detail(ctx, job)
    spec = views.job_spec(ctx, job)
    paused = {s["schedule"] for s in obj["schedules"] if s["paused"]}
    upcoming = ([] if obj["paused"]
                else views.next_list(ctx, views.without_paused(ctx, spec, paused), 10))
    with ctx.engine.store.read() as tx:
        runs = console.runs_page(tx, console.RunFilter(job=job), 20)
    # (name, shown, is JSON): a default that is not text is shown as JSON, and the form's
    # script reads what is typed there back as JSON (console.js, paramsOf). A null default
    # takes what is typed as text, as --param does (rules: it has no kind to hold to).
    fields = [(k, v, False) if isinstance(v, str) else (k, "", False) if v is None
              else (k, json.dumps(v, ensure_ascii=False), True) for k, v in spec.params.items()]
    return render(request, "job.html", job=obj, upcoming=upcoming, runs=runs, fields=fields)


@router.get("/runs")
def runs_page(request: Request, job: str | None = None, state: str | None = None,
              trigger: str | None = None, since: str | None = None, until: str | None = None,
              before: int | None = number()) -> Response:
    f = run_filter(job, state, trigger, since, until, before)
    mark = views.live_mark(ctx_of(request))
    with ctx_of(request).engine.store.read() as tx:
        rows = console.runs_page(tx, f, RUNS_PAGE + 1)
        # As the API's 404: a name never applied is a typo (a deleted job keeps its runs).
        unknown = (str(unknown_job(tx, f.job)) if not rows and f.job is not None
                   and ops.job_by_name(tx, f.job) is None else None)
    more = len(rows) > RUNS_PAGE
    rows = rows[:RUNS_PAGE]
    query = {k: v for k, v in (("job", job), ("state", state), ("trigger", trigger),
                               ("since", since), ("until", until)) if v}
    return render(request, "runs.html", runs=rows, filters=query, unknown=unknown,
                  next_before=rows[-1].run_id if more and rows else None, since=mark)


def run_parts(ctx: Ctx, run_id: int, after: int, state: str | None) -> dict[str, Any]:
    """What the live region of the run page shows (re-fetched on each change)."""
    store = ctx.engine.store
    # The mark comes first: the page's stream starts from it (see views.live_mark).
    mark, graph = views.run_graph(ctx, run_id)
    info = views.run_or_404(ctx, run_id)
    spec = ctx.engine.job_spec(ctx.engine.run_meta(run_id).version_id)
    first = min((n.id for n in graph.nodes), default=1)
    with store.read() as tx:
        links = console.run_links(tx, info, sorted(sub_jobs(spec)))
        counts: dict[str, int] = {}
        for n in graph.nodes:
            if n.kind == TaskRunKind.FOREACH:
                for s, c in n.items.items():
                    counts[s] = counts.get(s, 0) + c
            elif n.kind != TaskRunKind.BARRIER:
                counts[n.state] = counts.get(n.state, 0) + 1
        # The attempts of the rows the Gantt draws (by start, not by id).
        gantt_ids = [n.id for n in svg.gantt_rows(graph) if n.kind == TaskRunKind.TASK]
        bars = console.attempt_bars(tx, gantt_ids)
        table = console.task_runs_page(tx, run_id, state=state,
                                       after_id=after if state else max(after, first - 1),
                                       limit=TABLE_PAGE + 1)
    reasons = views.waiting_reasons(ctx, info)
    critical = set(svg.critical_path(graph)) if info.state != "queued" else set()
    predicted = views.forecast(ctx, run_id) if info.state in ("running", "stopping") else None
    return {
        "run": info, "since": mark, "links": links, "counts": counts, "total": graph.total,
        "graph_svg": svg.graph_svg(run_id, graph, reasons, critical),
        "gantt_svg": svg.gantt_svg(graph, bars, run_start=info.started_at, critical=critical,
                                   predicted=predicted),
        "table": table[:TABLE_PAGE], "table_more": len(table) > TABLE_PAGE,
        "reasons": reasons, "predicted": predicted, "sub_jobs": sub_jobs(spec),
        "foreach": [n for n in graph.nodes if n.kind == TaskRunKind.FOREACH],
        # (job, pinned, current) when a newer version was applied since the run started.
        "stale": (ctx.engine.stale_pin(run_id)
                  if info.state in ("failed", "cancelled", "succeeded") else None),
    }


def sub_jobs(spec: JobSpec) -> set[str]:
    """Tasks that run another job: their rows are stored as `task`, `status` calls them
    `job`, and so do the pages."""
    return {t.name for t in spec.tasks if t.kind == "job"}


def check_task_state(state: str | None) -> None:
    if state and state not in {s.value for s in TaskState}:
        raise UsageError(f"state must be a task run state, got {state!r}")


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: RunId, after: int = number(0, ge=0),
             state: str | None = None) -> Response:
    check_task_state(state)
    parts = run_parts(ctx_of(request), run_id, after, state or None)
    return render(request, "run.html", after=after, state_filter=state or "", **parts)


@router.get("/runs/{run_id}/tasks/{task}")
def task_page(request: Request, run_id: RunId, task: str, item: int | None = number(ge=0),
              attempt: int | None = number(), after: int = number(0, ge=0),
              state: str | None = None) -> Response:
    check_task_state(state)
    ctx = ctx_of(request)
    mark = views.live_mark(ctx, run_id)
    info = views.run_or_404(ctx, run_id)
    tr = views.task_run_of(ctx, run_id, task, item)
    store = ctx.engine.store
    spec = ctx.engine.job_spec(ctx.engine.run_meta(run_id).version_id)
    values: dict[str, Any] = {"run": info, "tr": tr, "task": task, "item": item,
                              "kind": ("job" if tr.kind == TaskRunKind.TASK
                                       and tr.name in sub_jobs(spec) else tr.kind),
                              "since": mark, "stale": (
                                  ctx.engine.stale_pin(run_id)
                                  if info.state in ("failed", "cancelled") else None)}
    if tr.kind == TaskRunKind.FOREACH:
        _, graph = views.run_graph(ctx, run_id)
        with store.read() as tx:
            # The task's rows are its own (the group) and its items': one more than a page
            # and the group tells whether items are left past this page.
            items = [t for t in console.task_runs_page(
                tx, run_id, task=task, state=state or None, after_id=after,
                limit=TABLE_PAGE + 2) if t.item_index is not None]
        node = next((n for n in graph.nodes if n.id == tr.id), None)
        values.update(items=items[:TABLE_PAGE], items_more=len(items) > TABLE_PAGE,
                      counts=node.items if node else {}, after=after, state_filter=state or "")
    else:
        # An attempt asked for must exist; without one the page shows the task run as it
        # is, attempts or none.
        which = views.attempt_of(task, tr, attempt) if attempt is not None else tr.attempts
        with store.read() as tx:
            attempts = console.attempts_of(tx, tr.id)
            chunks = console.log_chunks(tx, tr.id, which, 0, ALL_CHUNKS) if which else []
        values.update(attempts=attempts, attempt=which,
                      output="".join(c.data for c in chunks),
                      next_offset=chunks[-1].seq + 1 if chunks else 0,
                      running=any(a.attempt == which and a.state == "running"
                                  for a in attempts))
    return render(request, "task.html", **values)


@router.get("/agents")
def agents_page(request: Request) -> Response:
    now = time.time()
    mark = views.live_mark(ctx_of(request))
    with ctx_of(request).engine.store.read() as tx:
        found = console.agents(tx, now)
        live = [a for a in found if a.state in ("alive", "draining", "expired")]
        running = console.running_on_agents(tx, [a.id for a in live if a.running],
                                            per_agent=AGENT_LINKS)
    by_agent: dict[int, list[console.RunningTask]] = {}
    for r in running:
        by_agent.setdefault(r.agent_id, []).append(r)
    gone = [a for a in found if a not in live][-50:]
    return render(request, "agents.html", live=live, gone=gone, running=by_agent, since=mark,
                  agent_links=AGENT_LINKS)


def _month(text: str | None) -> date:
    if not text:
        return date.today().replace(day=1)
    try:
        month = datetime.strptime(text, "%Y-%m").date()
    except ValueError:
        raise UsageError(f"month expects YYYY-MM, got {text!r}") from None
    if not EARLIEST <= month <= LATEST:  # the dates the runs page takes
        raise UsageError(f"month expects YYYY-MM between {EARLIEST:%Y-%m} and {LATEST:%Y-%m},"
                         f" got {text!r}")
    return month


def _dst_days(zone: ZoneInfo, first: date, last: date) -> set[date]:
    out = set()
    day = first
    while day <= last:
        start = datetime.combine(day, datetime.min.time(), zone)
        end = datetime.combine(day + timedelta(days=1), datetime.min.time(), zone)
        if start.utcoffset() != end.utcoffset():
            out.add(day)
        day += timedelta(days=1)
    return out


# A day shows at most this many of a job's firings, counted ("100+ from 00:00"): a job firing
# every second would otherwise cost millions of firings a month.
DAY_FIRINGS = 100
FIRINGS_BATCH = 400


def _month_firings(ctx: Ctx, spec: JobSpec, start: datetime, end: datetime, zone: ZoneInfo,
                   per_day: dict[date, dict[str, list[str]]]) -> None:
    """The job's firings after `start` and before `end` by day, every day of the month
    covered: past a day's DAY_FIRINGS the reading resumes at the next day's start."""
    cursor, batch = start, FIRINGS_BATCH
    while cursor < end:
        found = views.next_of(ctx, spec, batch, cursor)  # firings after `cursor`
        if not found:
            return
        for at, _ in found:
            if at >= end:
                return
            times = per_day.setdefault(at.date(), {}).setdefault(spec.name, [])
            times.append(at.strftime("%H:%M"))
            if len(times) > DAY_FIRINGS:
                # The day is full: on from the last instant before the next day.
                nxt = datetime.combine(at.date() + timedelta(days=1), datetime.min.time(), zone)
                cursor, batch = max(nxt - timedelta(seconds=1), at), DAY_FIRINGS + 1
                break
        else:
            if len(found) < batch:
                return  # no firings left
            cursor = found[-1][0]


@router.get("/calendar")
def calendar_page(request: Request, month: str | None = None) -> Response:
    ctx = ctx_of(request)
    first = _month(month)
    days_in = cal.monthrange(first.year, first.month)[1]
    last = first.replace(day=days_in)
    per_day: dict[date, dict[str, list[str]]] = {}
    skipped: dict[date, list[str]] = {}
    dst: dict[date, list[str]] = {}
    zones: set[str] = {ctx.timezone}
    with ctx.engine.store.read() as tx:
        overviews = console.job_overviews(tx, recent=1)
        paused = sched_ops.paused_schedules_by_job(tx)
    now = datetime.now().astimezone()
    for ov in overviews:
        spec = without_schedules(ctx.engine.job_spec(ov.version_id),
                                 paused.get(ov.job_id, set()))
        if not spec.schedules:
            continue
        zone = ZoneInfo(spec.timezone or ctx.timezone)
        zones.add(str(zone))
        start = max(datetime.combine(first, datetime.min.time(), zone) - timedelta(seconds=1),
                    now)
        end = datetime.combine(last + timedelta(days=1), datetime.min.time(), zone)
        if start < end:
            _month_firings(ctx, spec, start, end, zone, per_day)
            for at, _, why in views.skips_of(ctx, spec, start, end):
                skipped.setdefault(at.date(), []).append(f"{spec.name}: {why}")
        plain = [e for e in spec.exceptions if e.closed_on is None]
        for s in spec.schedules:
            plain += [e for e in s.exceptions if e.closed_on is None]
        for exc in plain:
            rule = ExceptionRule(exc)
            for d in range(1, days_in + 1):
                day = first.replace(day=d)
                if rule.matches_day(day):
                    skipped.setdefault(day, []).append(
                        spec.name + ("" if rule.whole_day else " (some times)"))
    for z in sorted(zones):
        for day in _dst_days(ZoneInfo(z), first, last):
            dst.setdefault(day, []).append(z)
    weeks = cal.Calendar().monthdatescalendar(first.year, first.month)
    prev = (first - timedelta(days=1)).replace(day=1)
    nxt = last + timedelta(days=1)
    return render(request, "calendar.html", first=first, weeks=weeks, per_day=per_day,
                  skipped=skipped, dst=dst, prev=prev.strftime("%Y-%m"),
                  next=nxt.strftime("%Y-%m"), today=date.today(), day_firings=DAY_FIRINGS,
                  paused_jobs={ov.name for ov in overviews if ov.paused})


@router.get("/api/docs")
def api_docs(request: Request) -> Response:
    """The REST API as its OpenAPI description lists it, rendered here (no CDN)."""
    spec = request.app.openapi()
    endpoints = []
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            params = [(p.get("name", ""), p.get("in", ""), p.get("required", False),
                       p.get("description", "")) for p in op.get("parameters", [])]
            endpoints.append((method.upper(), path, op.get("summary", ""), params,
                              "requestBody" in op))
    return render(request, "api_docs.html", endpoints=endpoints)
