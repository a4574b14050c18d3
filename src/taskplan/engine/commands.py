"""What users ask of jobs (pause, resume, delete) and of runs: stop (drain), cancel (kill now),
and retry in place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taskplan.engine.definitions import unknown_job as unknown_job  # re-exported
from taskplan.engine.records import _Delta
from taskplan.engine.rules import (
    resolve_trigger,
)
from taskplan.engine.subruns import SubRuns
from taskplan.errors import ConflictError, NotFoundError
from taskplan.model import (
    FAILED_LIKE,
    TERMINAL_RUN_STATES,
    JobSpec,
    RunState,
    TaskState,
)
from taskplan.store import job_admin, ops, sched_ops


@dataclass(frozen=True)
class JobDeletion:
    name: str
    cancelled: list[int]  # active runs cancelled first (with force)
    runs: int  # runs of the job: kept as history, or deleted with purge_history
    purged: bool


class Commands(SubRuns):
    # -- jobs -------------------------------------------------------------------------------
    def pause_job(self, name: str) -> bool:
        """Schedules and triggers of the job make no runs until resumed; manual runs still
        start. Returns False if it was paused already."""
        return self._set_paused(name, True)

    def resume_job(self, name: str) -> bool:
        """Undo pause_job. Firings that fell in the pause are not made up (see backfill)."""
        return self._set_paused(name, False)

    def delete_job(self, name: str, *, force: bool = False, purge_history: bool = False,
                   dry_run: bool = False) -> JobDeletion:
        """Delete a job: it leaves `jobs`, the scheduler and triggers; its runs stay readable
        unless `purge_history`. Refused (ConflictError) while a run of it is active, unless
        `force`, which cancels those runs first."""
        callers = self._callers_of(name)
        if callers and not force:
            raise ConflictError(
                f"job {name} is used by {', '.join(callers)}; delete or change those first,"
                " or delete with --force")
        cancelled: list[int] = []
        for _ in range(5):  # a run created between the cancel and the delete: cancel it too
            with self.store.read() as tx:
                job = job_admin.live_job(tx, name)
                if job is None:
                    raise unknown_job(tx, name)
                active = job_admin.active_runs(tx, job.job_id)
                total = job_admin.run_count(tx, job.job_id)
            if active and not force:
                ids = ", ".join(str(r) for r in active)
                raise ConflictError(
                    f"job {name} has {len(active)} active run(s) ({ids}); stop or cancel them"
                    " first, or delete with --force to cancel them")
            if dry_run:
                return JobDeletion(name, active, total, purge_history)
            for run_id in active:
                try:
                    self.cancel_run(run_id)
                    cancelled.append(run_id)
                except ConflictError:
                    pass  # it ended meanwhile
            with self.store.tx() as tx:
                job = job_admin.live_job(tx, name)
                if job is None:
                    raise unknown_job(tx, name)
                if job_admin.active_runs(tx, job.job_id):
                    continue
                if purge_history:
                    total = job_admin.purge_job(tx, job.job_id)
                else:
                    job_admin.retire_job(tx, job.job_id, self.clock())
                tx.wake = True
                return JobDeletion(name, cancelled, total, purge_history)
        raise ConflictError(f"job {name} keeps starting runs; pause it, then delete it")

    def _callers_of(self, name: str) -> list[str]:
        """The other jobs whose current version starts `name` (a `job:` task) or waits for it
        (a cross-job trigger), as "job fe (task sub)" / "job down (trigger)"."""
        with self.store.read() as tx:
            versions = [(j.name, j.version_id) for j in sched_ops.current_jobs(tx)]
        found = []
        for job, version_id in versions:
            if job == name:
                continue
            spec = self.job_spec(version_id)
            found += [f"job {job} (task {t.name})" for t in spec.tasks
                      if t.kind == "job" and t.command == name]
            if any(name in trig.after for trig in spec.triggers):
                found.append(f"job {job} (trigger)")
        return found

    def apply_preview(self, spec: JobSpec) -> tuple[int, bool]:
        """What apply(spec) would do, writing nothing: (version number, changed)."""
        from taskplan.spec import definition_hash

        with self.store.read() as tx:
            job = ops.job_by_name(tx, spec.name)
            if job is None:
                return 1, True
            current = ops.version_row(tx, int(job[2])) if job[2] is not None else None
            if current is not None and current[3] == definition_hash(spec.definition):
                return int(current[2]), False
            return job_admin.latest_version(tx, int(job[0])) + 1, True

    def pause_schedule(self, name: str, key: str) -> bool:
        """Pause one schedule of a job (its firings are recorded as skipped; the job's other
        schedules and its triggers go on). Returns False if it was paused already."""
        return self._set_schedule_paused(name, key, True)

    def resume_schedule(self, name: str, key: str) -> bool:
        return self._set_schedule_paused(name, key, False)

    def paused_schedules(self, name: str) -> set[str]:
        """The keys of the job's schedules paused one at a time."""
        with self.store.read() as tx:
            job = job_admin.live_job(tx, name)
            if job is None:
                raise unknown_job(tx, name)
            return sched_ops.paused_schedules(tx, job.job_id)

    def _set_schedule_paused(self, name: str, key: str, paused: bool) -> bool:
        with self.store.read() as tx:
            job = job_admin.live_job(tx, name)
            if job is None:
                raise unknown_job(tx, name)
            version_id = job_admin.current_version_id(tx, job.job_id)
        keys = [s.key for s in self.job_spec(version_id).schedules]
        if key not in keys:
            known = ", ".join(keys) or "it has none"
            raise NotFoundError(f"job {name} has no schedule {key!r} (schedules: {known})")
        with self.store.tx() as tx:
            changed = sched_ops.set_schedule_paused(tx, job.job_id, key, paused, self.clock())
            tx.wake = changed
            return changed

    def _set_paused(self, name: str, paused: bool) -> bool:
        with self.store.tx() as tx:
            changed = sched_ops.set_job_paused(tx, name, paused)
            if changed is None:
                raise unknown_job(tx, name)
            tx.wake = changed
            return changed

    # -- commands from users ----------------------------------------------------------------
    def cancel_run(self, run_id: int) -> str:
        """Kill the run's running tasks and end it cancelled; ConflictError if it has ended."""
        return self._halt_by_user(run_id, "user_cancel")

    def stop_run(self, run_id: int) -> str:
        """Drain the run (nothing new starts); ConflictError if it has ended."""
        return self._halt_by_user(run_id, "user_stop")

    def _halt_by_user(self, run_id: int, halt: str) -> str:
        with self.store.tx() as tx:
            run = ops.run_row(tx, run_id, lock=True)
            if run is None:
                raise NotFoundError(f"no run {run_id}")
            if run.state in TERMINAL_RUN_STATES:
                verb = "cancel" if halt == "user_cancel" else "stop"
                raise ConflictError(f"run {run_id} already {run.state}, nothing to {verb}")
            now = self.clock()
            ops.set_halt(tx, run_id, halt, None)
            run.halt = halt
            if halt == "user_cancel" or run.running == 0:
                run = self._finalize(tx, run, now, cancel_running=halt == "user_cancel")
                self._on_run_end(tx, run, now)
            else:
                ops.set_run_state(tx, run_id, RunState.STOPPING, now=now)
                run.state = str(RunState.STOPPING)
            tx.wake = True
            return run.state

    def stale_pin(self, run_id: int) -> tuple[str, int, int] | None:
        """(job, pinned version number, current number) when a newer version is current."""
        with self.store.read() as tx:
            found = ops.pinned_and_current(tx, run_id)
        if found is None:
            raise NotFoundError(f"no run {run_id}")
        job, pinned_id, pinned, current_id, current = found
        if current_id is None or current is None or current_id == pinned_id:
            return None
        return job, pinned, current

    def _latest_spec(self, run_id: int) -> tuple[int, JobSpec] | None:
        """The job's current version for `retry --latest`, if it differs from the pinned one;
        ConflictError when its tasks or their wiring changed (in place would not fit)."""
        with self.store.read() as tx:
            found = ops.pinned_and_current(tx, run_id)
        if found is None:
            raise NotFoundError(f"no run {run_id}")
        job, pinned_id, pinned, current_id, current = found
        if current_id is None:
            raise ConflictError(f"job {job} was deleted; run {run_id} can only be retried"
                                f" on its own version (v{pinned})")
        if current_id == pinned_id:
            return None
        old, new = self.job_spec(pinned_id), self.job_spec(current_id)

        def shape(spec: JobSpec) -> dict[str, tuple[Any, ...]]:
            return {t.name: (t.kind, tuple(sorted(t.depends_on)), t.stage,
                             t.foreach is not None) for t in spec.tasks}

        before, after = shape(old), shape(new)
        if before != after:
            added = sorted(set(after) - set(before))
            removed = sorted(set(before) - set(after))
            changed = sorted(n for n in set(before) & set(after) if before[n] != after[n])
            parts = [f"{what}: {', '.join(names)}" for what, names in
                     (("added", added), ("removed", removed), ("rewired", changed)) if names]
            raise ConflictError(
                f"run {run_id} cannot be retried on {job} v{current}: its tasks differ from"
                f" v{pinned} ({'; '.join(parts)}); start a new run with `taskplan run {job}`")
        return current_id, new

    def retry_run(self, run_id: int, task: str | None = None, *, latest: bool = False) -> int:
        """Rerun in place every task run of a finished run that did not succeed.

        Succeeded task runs keep their state and results. With `task`, only that task and
        the task runs downstream of it are reconsidered. Returns how many were reset;
        ConflictError if the run is not finished or nothing in scope is left to rerun.

        With `latest`, the run is first moved to its job's current version (same tasks and
        wiring required), so the rerun executes the current definition.
        """
        # The definitions are read before the write transaction: job_spec opens its own
        # read, which SQLite refuses inside this thread's open transaction.
        with self.store.read() as tx:
            owner = job_admin.job_of_run(tx, run_id)
        if owner is not None and not owner[1]:
            raise ConflictError(f"run {run_id} belongs to job {owner[0]}, which was deleted;"
                                " apply the job again to retry its runs")
        repin = self._latest_spec(run_id) if latest else None
        spec = repin[1] if repin is not None else self.job_spec(self.run_meta(run_id)[0])
        with self.store.tx() as tx:
            run = ops.run_row(tx, run_id, lock=True)
            if run is None:
                raise NotFoundError(f"no run {run_id}")
            if run.state not in TERMINAL_RUN_STATES:
                raise ConflictError(f"run {run_id} is {run.state}; retry takes a finished run")
            if run.state == "succeeded":
                raise ConflictError(f"run {run_id} already succeeded, nothing to retry")
            if repin is not None:
                ops.repin_run(tx, run_id, repin[0], str(spec.on_failure), spec.max_parallel,
                              spec.priority)
                self._forget_run_meta(run_id)
            rows = tx.all(
                "SELECT id, task, kind, parent_id, state, attempts, pending_children"
                " FROM task_runs WHERE run_id = :r", {"r": run_id})
            edges = tx.all(
                "SELECT e.up_id, e.down_id FROM task_edges e JOIN task_runs t"
                " ON t.id = e.down_id WHERE t.run_id = :r", {"r": run_id})
            state_of = {int(r[0]): str(r[4]) for r in rows}
            downs: dict[int, list[int]] = {}
            ups: dict[int, list[int]] = {}
            for u, d in edges:
                downs.setdefault(int(u), []).append(int(d))
                ups.setdefault(int(d), []).append(int(u))
            top = [r for r in rows if r[3] is None]
            if task is not None:
                starts = [int(r[0]) for r in top if r[1] == task]
                if not starts:
                    raise NotFoundError(f"run {run_id} has no task {task!r}")
                scope: set[int] = set()
                todo = list(starts)
                while todo:
                    n = todo.pop()
                    if n not in scope:
                        scope.add(n)
                        todo.extend(downs.get(n, []))
            else:
                scope = {int(r[0]) for r in top}
            disabled = {t.name for t in spec.tasks if not t.enabled}
            redo = {int(r[0]) for r in top if int(r[0]) in scope
                    and state_of[int(r[0])] != "succeeded" and str(r[1]) not in disabled}
            if not redo:
                # Nothing to rerun: the finished run is left exactly as it was.
                what = f"task {task} and what depends on it" if task else "every task"
                raise ConflictError(
                    f"run {run_id}: {what} already succeeded, nothing to retry")
            children: dict[int, list[tuple[int, str]]] = {}
            for r in rows:
                if r[3] is not None:
                    children.setdefault(int(r[3]), []).append((int(r[0]), str(r[4])))
            now = self.clock()
            writes: list[dict[str, Any]] = []
            settle: list[tuple[int, TaskState]] = []
            ready = 0
            for r in top:
                tr_id = int(r[0])
                if tr_id not in redo:
                    continue
                name, kind = str(r[1]), str(r[2])
                task_spec = None if kind == "barrier" else spec.task(name)
                extra = 1 + (task_spec.retries if task_spec else 0)
                kids = [k for k, s in children.get(tr_id, []) if s != "succeeded"]
                pending = sum(1 for u in ups.get(tr_id, []) if u in redo)
                failed = sum(1 for u in ups.get(tr_id, [])
                             if u not in redo and state_of[u] in FAILED_LIKE)
                if kids:
                    # An expanded foreach reruns its unfinished items under the same parent.
                    writes.extend({"i": k, "s": "ready", "p": 0, "f": 0, "c": 0, "m": extra,
                                   "t": now} for k in kids)
                    ready += len(kids)
                    new_state = "running"
                elif pending:
                    new_state = "pending"
                else:
                    rule = str(task_spec.trigger) if task_spec else "all_done"
                    resolved = resolve_trigger(kind, rule, failed)
                    new_state = str(resolved)
                    if resolved == TaskState.READY:
                        ready += 1
                    else:
                        settle.append((tr_id, resolved))
                writes.append({"i": tr_id, "s": new_state, "p": pending, "f": failed,
                               "c": len(kids), "m": extra, "t": now})
            tx.many(
                "UPDATE task_runs SET state = :s, pending_up = :p, failed_up = :f,"
                " pending_children = :c, failed_children = 0, max_attempts = attempts + :m,"
                " error = NULL, exit_code = NULL, finished_at = NULL, result = NULL,"
                " ready_at = CASE WHEN :s = 'ready' THEN :t ELSE NULL END, agent_id = NULL"
                " WHERE id = :i",
                writes,
            )
            tx.run(
                "UPDATE runs SET state = 'running', halt = NULL, halt_stage = NULL,"
                " unfinished = :u, running = 0, ready = :rd, failed = 0, finished_at = NULL,"
                " error = NULL WHERE id = :r",
                {"u": len(writes), "rd": ready, "r": run_id},
            )
            ops.add_events(tx, [(now, run_id, None, "running", "retry")]
                           + [(now, run_id, int(w["i"]), str(w["s"]), "retry") for w in writes
                              if (int(w["i"]), w["s"]) not in settle])
            fresh = ops.run_row(tx, run_id)
            assert fresh is not None
            delta = _Delta()
            firsts = [(ops.task_run(tx, i), st) for i, st in settle]
            self._settle(tx, fresh, [(t, st) for t, st in firsts if t is not None], now, delta)
            self._close_step(tx, fresh, now, delta, None)
            tx.wake = True
            return len(writes)

