"""Job definitions and business calendars: storing versions, and reading back (cached) the
definition a run pinned."""

from __future__ import annotations

from collections.abc import Sequence

from taskplan.engine.context import CalendarDays, Context
from taskplan.errors import NotFoundError, TaskplanError, UsageError
from taskplan.model import BusinessCalendar, JobSpec, TaskSpec
from taskplan.store import calendars as calendar_ops
from taskplan.store import ops, run_ops, sched_ops
from taskplan.store.db import Tx
from taskplan.store.ops import dumps, loads
from taskplan.store.run_ops import RunMeta
from taskplan.timing.business import closed_days_of

RUN_META_CACHE = 4096  # runs whose metadata an engine keeps in memory


def unknown_job(tx: Tx, name: str) -> NotFoundError:
    """"no job named 'nightyl'; did you mean 'nightly'?" (the names come from the store)."""
    import difflib

    # Job names are lowercase: `run Nightly` means nightly.
    guess = difflib.get_close_matches(name.lower(), sched_ops.job_names(tx), n=1)
    hint = f"; did you mean {guess[0]!r}?" if guess else " (taskplan jobs lists them)"
    return NotFoundError(f"no job named {name!r}{hint}")


def unknown_job_names(ctx: Context, specs: Sequence[JobSpec]) -> list[str]:
    """One warning per name a trigger's `after` or a job task gives that is no job of the store
    nor of `specs`: legal (that job may be applied later), but most often a typo that leaves a
    trigger waiting for ever or a job task failing at its first run."""
    import difflib

    with ctx.store.read() as tx:
        known = set(sched_ops.job_names(tx))
    known |= {s.name for s in specs}
    warnings = []
    for spec in specs:
        named = [(f"triggers[{t.index}].after", n) for t in spec.triggers for n in t.after]
        named += [(f"tasks.{t.name}.job", str(t.command)) for t in spec.tasks if t.kind == "job"]
        for where, name in named:
            if name in known:
                continue
            guess = difflib.get_close_matches(name.lower(), sorted(known), n=1)
            hint = f" (did you mean {guess[0]!r}?)" if guess else ""
            warnings.append(f"{spec.name}: {where} {name!r} names no job yet{hint}")
    warnings += _child_param_warnings(ctx, specs)
    return warnings


def _child_param_warnings(ctx: Context, specs: Sequence[JobSpec]) -> list[str]:
    """A job task's params that its stored child job would refuse when the task runs (a
    child of the same command was checked with the files). Legal, since the child may be
    changed later, but most often a typo that fails every run of the task."""
    from taskplan.rules import child_param_problem
    from taskplan.spec.loader import has_template

    given = {s.name for s in specs}
    warnings: list[str] = []
    for spec in specs:
        for task in spec.tasks:
            if task.kind != "job" or not task.params or str(task.command) in given:
                continue
            try:
                child = job_spec(ctx, current_version(ctx, str(task.command)))
            except TaskplanError:
                continue  # no such job (warned above), or one that no longer loads
            for name, value in task.params.items():
                problem = child_param_problem(child, name, value, typed=not has_template(value))
                if problem is not None:
                    warnings.append(f"{spec.name}: tasks.{task.name}.params.{name}: {problem}")
    return warnings


# -- business calendars ---------------------------------------------------------------------
def apply_calendar(ctx: Context, cal: BusinessCalendar) -> tuple[int, bool]:
    """Store a business calendar. Returns (version number, changed)."""
    from taskplan.spec import definition_hash

    with ctx.store.tx() as tx:
        return calendar_ops.apply_calendar(
            tx, cal.name, dumps(cal.definition), definition_hash(cal.definition),
            cal.source_path, ctx.clock())


def calendar_preview(ctx: Context, cal: BusinessCalendar) -> tuple[int, bool]:
    """`apply --dry-run` of a calendar: (the version number it would get, changed)."""
    from taskplan.spec import definition_hash

    with ctx.store.read() as tx:
        return calendar_ops.preview_calendar(tx, cal.name, definition_hash(cal.definition))


def business_calendars(ctx: Context) -> dict[str, BusinessCalendar]:
    """Every applied calendar at its current version."""
    from taskplan.spec import calendar_from_definition

    with ctx.store.read() as tx:
        rows = calendar_ops.current_calendars(tx)
    return {r.name: calendar_from_definition(r.definition, r.source_path) for r in rows}


def closed_days(ctx: Context) -> CalendarDays:
    """The closed days of every applied calendar, and the stamp they were read at; rebuilt
    only when a calendar changed (one cheap query otherwise)."""
    with ctx.store.read() as tx:
        stamp = calendar_ops.calendars_stamp(tx)
    cached = ctx.specs.calendars
    if cached is not None and cached.stamp == stamp:
        return cached
    fresh = CalendarDays(stamp, closed_days_of(business_calendars(ctx)) if stamp[0] else {})
    ctx.specs.calendars = fresh
    return fresh


# -- job definitions ------------------------------------------------------------------------
def apply(ctx: Context, spec: JobSpec) -> tuple[int, int, bool]:
    """Store a job definition. Returns (version_id, version number, changed)."""
    from taskplan.spec import definition_hash  # the parser is heavy; load it on use

    digest = definition_hash(spec.definition)
    now = ctx.clock()
    with ctx.store.tx() as tx:
        check_job_calls(tx, spec)
        job, current = _job_and_current(tx, spec.name)
        if _same_version(current, digest, spec):
            assert current is not None
            vid, number, changed = current.id, current.version, False
        else:
            job_id = job.id if job else ops.insert_job(tx, spec.name, now)
            # The file's own key order (digest is order-free): a foreach's `values:` items
            # reach an agent with their keys as written.
            vid, number = ops.insert_version(tx, job_id, ops.dumps_value(spec.definition), digest,
                                             spec.source_path, spec.base_dir, now)
            tx.wake = changed = True
        for name, size in spec.pools.items():
            if name not in ctx.configured_pools:  # taskplan.toml's size stands
                ops.upsert_pool(tx, name, size)
    # The version holds exactly this definition: `run` after `apply` need not rebuild it.
    with ctx.specs.lock:
        ctx.specs.specs.setdefault(vid, spec)
    return vid, number, changed


def _same_version(current: ops.VersionRow | None, digest: str, spec: JobSpec) -> bool:
    """The stored version holds this definition, from this folder. A job file moved to
    another folder is a new version: its tasks run in (and import from) its folder, and the
    old one may be gone."""
    return (current is not None and current.spec_hash == digest
            and current.base_dir == spec.base_dir)


def _job_and_current(tx: Tx, name: str) -> tuple[ops.JobRow | None, ops.VersionRow | None]:
    """A job by name and its current version (None: no such job, or it was deleted)."""
    job = ops.job_by_name(tx, name)
    if job is None or job.current_version_id is None:
        return job, None
    return job, ops.version_row(tx, job.current_version_id)


def apply_preview(ctx: Context, spec: JobSpec) -> tuple[int, bool]:
    """What apply(spec) would do, writing nothing: (version number, changed)."""
    from taskplan.spec import definition_hash
    from taskplan.store import job_admin

    with ctx.store.read() as tx:
        job, current = _job_and_current(tx, spec.name)
        if job is None:
            return 1, True
        if _same_version(current, definition_hash(spec.definition), spec):
            assert current is not None
            return current.version, False
        return job_admin.latest_version(tx, job.id) + 1, True


def job_spec(ctx: Context, version_id: int, tx: Tx | None = None) -> JobSpec:
    """The definition a run pinned. Versions never change, so they are cached forever.

    Inside a write transaction pass it as `tx`: the read then goes through it.
    """
    spec = ctx.specs.specs.get(version_id)
    if spec is not None:
        return spec
    if tx is not None:
        return _load_spec(ctx, version_id, tx)
    with ctx.specs.load_lock:
        spec = ctx.specs.specs.get(version_id)
        if spec is not None:
            return spec
        with ctx.store.read() as rtx:
            return _load_spec(ctx, version_id, rtx)


def _load_spec(ctx: Context, version_id: int, tx: Tx) -> JobSpec:
    row = ops.version_row(tx, version_id)
    if row is None:
        raise NotFoundError(f"no job version {version_id}")
    from taskplan.spec.checked import job_from_stored

    spec = job_from_stored(row.definition, row.source_path, row.base_dir)
    with ctx.specs.lock:
        ctx.specs.specs[version_id] = spec
    return spec


def known_spec(ctx: Context, version_id: int) -> JobSpec | None:
    """The definition if this process has it already; None rather than a read."""
    return ctx.specs.specs.get(version_id)


def task_spec(ctx: Context, version_id: int, name: str) -> TaskSpec:
    """One task of a pinned definition, by name (KeyError if absent); O(1), cached."""
    tasks = ctx.specs.tasks.get(version_id)
    if tasks is None:
        tasks = {t.name: t for t in job_spec(ctx, version_id).tasks}
        ctx.specs.tasks[version_id] = tasks
    return tasks[name]


def current_version(ctx: Context, job_name: str) -> int:
    with ctx.store.read() as tx:
        job = ops.job_by_name(tx, job_name)
        if job is None or job.current_version_id is None:
            raise unknown_job(tx, job_name)
    return job.current_version_id


def check_calls(ctx: Context, specs: Sequence[JobSpec]) -> None:
    """Before a command stores any of `specs`: refuse it if one would lead back to itself
    through the jobs stored now, read with the new definitions of `specs` in their place."""
    with ctx.store.read() as tx:
        for spec in specs:
            check_job_calls(tx, spec, specs)


def check_job_calls(tx: Tx, spec: JobSpec, given: Sequence[JobSpec] = ()) -> None:
    """Refuse a definition whose job tasks lead back to itself (a -> b -> a); the jobs of
    `given` count with their new definitions."""
    calls: dict[str, list[str]] = {
        s.name: sorted({str(t.command) for t in s.tasks if t.kind == "job"})
        for s in (*given, spec)}

    def callees(name: str) -> list[str]:
        if name not in calls:
            _, row = _job_and_current(tx, name)
            tasks = loads(row.definition).get("tasks", {}) if row else {}
            calls[name] = sorted({str(t["job"]) for t in tasks.values()
                                  if isinstance(t, dict) and "job" in t})
        return calls[name]

    path = [spec.name]
    seen: set[str] = set()

    def visit(name: str) -> None:
        for callee in callees(name):
            if callee == spec.name:
                raise UsageError("job cycle: " + " -> ".join([*path, callee]))
            if callee not in seen:
                seen.add(callee)
                path.append(callee)
                visit(callee)
                path.pop()

    visit(spec.name)
    _check_trigger_rings(tx, spec, given)


def _check_trigger_rings(tx: Tx, spec: JobSpec, given: Sequence[JobSpec]) -> None:
    """Refuse a definition whose triggers wait, through other jobs' triggers, for a run of
    itself (q after r, r after q): each run of one would start the next, for ever."""
    waits: dict[str, list[str]] = {
        s.name: sorted({n for t in s.triggers for n in t.after}) for s in (*given, spec)}

    def upstreams(name: str) -> list[str]:
        if name not in waits:
            _, row = _job_and_current(tx, name)
            triggers = loads(row.definition).get("triggers", []) if row else []
            names: set[str] = set()
            for trig in triggers if isinstance(triggers, list) else []:
                after = trig.get("after") if isinstance(trig, dict) else None
                names.update(str(n) for n in (after if isinstance(after, list) else [after])
                             if n is not None)
            waits[name] = sorted(names)
        return waits[name]

    path = [spec.name]
    seen: set[str] = {spec.name}

    def visit(name: str) -> None:
        for up in upstreams(name):
            if up == spec.name and name != spec.name:
                raise UsageError("trigger cycle: " + " after ".join([*path, up])
                                 + " (each run of one would start the next, for ever)")
            if up not in seen:
                seen.add(up)
                path.append(up)
                visit(up)
                path.pop()

    visit(spec.name)


# -- what never changes about a run ---------------------------------------------------------
def run_state(ctx: Context, run_id: int) -> str:
    with ctx.store.read() as tx:
        state = run_ops.run_state(tx, run_id)
    if state is None:
        raise NotFoundError(f"no run {run_id}")
    return state


def run_meta(ctx: Context, run_id: int) -> RunMeta:
    """A run's version, params and fire time; cached (bounded) since they never change."""
    cache = ctx.specs
    with cache.lock:
        meta = cache.run_meta.get(run_id)
        if meta is not None:
            cache.run_meta.move_to_end(run_id)
            return meta
    with ctx.store.read() as tx:
        meta = run_ops.run_meta(tx, run_id)
    if meta is None:
        raise NotFoundError(f"no run {run_id}")
    with cache.lock:
        cache.run_meta[run_id] = meta
        if len(cache.run_meta) > RUN_META_CACHE:
            cache.run_meta.popitem(last=False)
    return meta


def forget_run_meta(ctx: Context, run_id: int) -> None:
    """The run was moved to another version (retry --latest): read it again next time."""
    with ctx.specs.lock:
        ctx.specs.run_meta.pop(run_id, None)
