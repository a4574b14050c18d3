"""What follows the end of a run, inside the transaction that ends it: queued runs of the same
job start (the next runs of a backfill, up to its max_active), and cross-job `triggers` whose
upstream set is now complete fire.

A trigger fires exactly once per set of qualifying upstream runs:
* the set is the latest ended top-level run of every job in `after`, each `succeeded` (or any
  end state with `status: finished`), each ended within `within` of now, and each newer than
  the run of that job used by the trigger's previous firing;
* the firing is a `trigger_firings` row keyed by that set (`job:run_id` sorted, joined by `,`),
  inserted with ON CONFLICT DO NOTHING; the dependent run is created in the same transaction
  only if this transaction's insert took;
* a paused dependent job fires nothing (and records nothing), so once resumed it fires when
  its next upstream run ends, if the set is then complete;
* checks of one dependent job are serialised by a row lock on PostgreSQL (on SQLite every write
  transaction is already exclusive), so when the last two upstreams end at the same instant in
  two processes, whichever checks second sees the other's commit.
"""

from __future__ import annotations

import logging
from dataclasses import field

from taskplan.dataclass import dataclass
from taskplan.engine import definitions, runs
from taskplan.engine.context import Context, TriggerIndex
from taskplan.engine.records import StepResult
from taskplan.errors import DefinitionError
from taskplan.model import RunState, TriggerSpec
from taskplan.store import run_ops, sched_ops
from taskplan.store.db import Tx
from taskplan.store.ops import RunRow

log = logging.getLogger(__name__)

# Primary-key column width of trigger_firings.upstream_key; longer sets are hashed.
_KEY_MAX = 500


@dataclass
class TriggerCheck:
    ready: bool
    key: str | None = None
    runs: str | None = None  # the set as `job:run_id,...` when `key` is its hash
    waiting: list[str] = field(default_factory=list)  # why not, one entry per upstream job


def parse_key(key: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in (key or "").split(","):
        name, sep, rid = part.rpartition(":")
        if sep and rid.isdigit():
            out[name] = int(rid)
    return out


def firing_key(parts: dict[str, int]) -> str:
    key = upstream_runs(parts)
    if len(key) <= _KEY_MAX:
        return key
    import hashlib  # (a long key only: not loaded by every run's import of this module)

    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def upstream_runs(parts: dict[str, int]) -> str:
    return ",".join(f"{n}:{r}" for n, r in sorted(parts.items()))


def check_trigger(tx: Tx, job_id: int, trig: TriggerSpec, now: float) -> TriggerCheck:
    """Does this trigger of job `job_id` have a complete, new set of upstream runs?"""
    ids = sched_ops.job_ids(tx, trig.after)
    last = sched_ops.last_trigger_firing(tx, job_id, trig.index)
    # (A hash: a firing stored before its set was kept beside it; no set to compare with.)
    previous = parse_key(last) if last and not last.startswith("sha256:") else {}
    parts: dict[str, int] = {}
    waiting: list[str] = []
    for name in trig.after:
        jid, live = ids.get(name, (None, True))
        if not live:
            # `delete --force` of a job a trigger waits for: it never fires again (its last
            # runs, or the cancel of its active ones, do not complete a set) until the job is
            # applied again.
            waiting.append(f"{name} (deleted)")
            continue
        if jid is None:
            # Never applied (a typo in `after`, or a job applied later): said so, since "no
            # ended run" sent the operator to wait for runs of a job that does not exist.
            waiting.append(f"{name} (no job of that name)")
            continue
        last_run = sched_ops.latest_finished_run(tx, jid)
        if last_run is None:
            waiting.append(f"{name} (no ended run)")
            continue
        rid, state, finished = last_run.run_id, last_run.state, last_run.finished_at or 0.0
        if trig.status == "succeeded" and state != RunState.SUCCEEDED:
            waiting.append(f"{name} (run {rid} {state})")
        elif trig.within is not None and finished < now - trig.within:
            waiting.append(f"{name} (run {rid} ended over {trig.within:g}s ago)")
        elif rid <= previous.get(name, 0):
            waiting.append(f"{name} (a run after {rid})")
        else:
            parts[name] = rid
    if waiting:
        return TriggerCheck(False, waiting=waiting)
    key = firing_key(parts)
    return TriggerCheck(True, key=key, runs=None if key == upstream_runs(parts)
                        else upstream_runs(parts))


def trigger_waits(tx: Tx, version_id: int, triggers: tuple[TriggerSpec, ...], now: float
                  ) -> list[dict[str, object]]:
    """Each cross-job trigger of a job version with the upstream jobs it still waits for, by
    the rule the scheduler fires it with (`jobs --json` and the console show this)."""
    if not triggers:
        return []
    job_id = sched_ops.job_of_version(tx, version_id)
    return [{"index": trig.index, "after": list(trig.after), "status": trig.status,
             "waiting": check_trigger(tx, job_id, trig, now).waiting} for trig in triggers]


def _index(ctx: Context, tx: Tx) -> TriggerIndex:
    mark = sched_ops.definitions_mark(tx)
    found = ctx.trigger_index
    if found is not None and found.mark == mark:
        return found
    by_upstream: dict[str, list[tuple[int, int, TriggerSpec]]] = {}
    for job in sched_ops.current_jobs(tx, triggers_only=True):
        try:
            spec = definitions.job_spec(ctx, job.version_id, tx)
        except DefinitionError as exc:
            # A stored definition this taskplan cannot build any more (a time zone the
            # system lost, say): its triggers cannot fire, but every other run must still
            # be able to end.
            log.warning("job %s: its triggers are ignored, its definition no longer loads:"
                        " %s", job.name, str(exc).splitlines()[0])
            continue
        if not spec.enabled:
            continue  # a disabled job is started by hand only
        for trig in spec.triggers:
            for up in trig.after:
                by_upstream.setdefault(up, []).append((job.job_id, job.version_id, trig))
    found = TriggerIndex(mark, by_upstream)
    ctx.trigger_index = found
    return found


def after_run_end(ctx: Context, tx: Tx, run: RunRow, now: float,
                  _result: StepResult | None) -> None:
    """A run-end effect: start the job's next queued runs; fire cross-job triggers."""
    if run.parent_task_run_id is not None:
        return
    started = [q for q in sched_ops.startable_queued(tx, run.job_id)
               if sched_ops.start_queued(tx, q, now)]
    if run.trigger == "backfill" and run.trigger_ref and run.trigger_ref.isdigit():
        started += sched_ops.start_backfill_runs(tx, int(run.trigger_ref), now)
    runs.queued_runs_started(ctx, tx, started)
    tx.wake = tx.wake or bool(started)
    name = run_ops.job_name(tx, run.job_id)
    dependants = _index(ctx, tx).by_upstream.get(str(name), [])
    for job_id in sorted({d[0] for d in dependants}):
        sched_ops.lock_job(tx, job_id)
    for job_id, version_id, trig in dependants:
        if sched_ops.job_paused(tx, job_id):
            continue  # no firing recorded: the upstream set still counts once resumed
        check = check_trigger(tx, job_id, trig, now)
        if not check.ready or check.key is None:
            continue
        if not sched_ops.insert_trigger_firing(tx, job_id, trig.index, check.key, now,
                                               check.runs):
            continue  # another transaction fired this set already
        run_id = runs.create_run(ctx, version_id, dict(trig.params), trigger="trigger",
                                 trigger_ref=check.key, tx=tx)
        sched_ops.set_trigger_run(tx, job_id, trig.index, check.key, run_id)
        if log.isEnabledFor(logging.INFO):  # as a schedule's firing is, for the daemons' log
            job = str(run_ops.job_name(tx, job_id))
            log.info("trigger: job %s trigger %d after %s (run %s ended): run %s", job,
                     trig.index, ", ".join(trig.after), run.id, run_id,
                     extra={"event": "trigger_firing", "job": job, "trigger": trig.index,
                            "after": list(trig.after), "upstream_run_id": run.id,
                            "run_id": run_id})
