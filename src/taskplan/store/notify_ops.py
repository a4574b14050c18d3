"""The notification outbox: rows written in the transaction of the event they report, read and
updated by the sender (notify.sender). docs/operations.md describes the payload.

Only the rare notifiable states pay anything: `wanted` is a filter over the event rows a
transaction writes anyway; the job's rules are parsed once per job version and store object.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from taskplan.dataclass import dataclass
from taskplan.model import TaskRunKind
from taskplan.notify.rules import Channel, Rule, rules_from
from taskplan.redact import mask_url
from taskplan.store.tx import Tx

if TYPE_CHECKING:
    from taskplan.store.db import Store

EventRow = tuple[float, int, int | None, str, str | None]


def iso(ts: float | None) -> str | None:
    """As shapes.iso (which the store may not import): local time with its UTC offset."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds")


# (task run or not, event state) -> notification event.
_RUN_EVENTS = {"failed": "run_failed", "succeeded": "run_succeeded",
               "deadline_at_risk": "deadline_at_risk", "deadline_missed": "deadline_missed"}
_TASK_EVENTS = {"failed": "task_failed", "retrying": "task_retrying"}
_STATES = frozenset(_RUN_EVENTS) | frozenset(_TASK_EVENTS)


@dataclass(frozen=True)
class Config:
    """What a process knows from its taskplan.toml: default rules and the console's URL."""

    defaults: tuple[Rule, ...] = ()
    console_url: str | None = None


_CONFIG: WeakKeyDictionary[Store, Config] = WeakKeyDictionary()
# Per store: set when this process writes outbox rows, so its sender looks at once, and the
# ids it wrote (its sender delivers those itself, without waiting for the lease holder).
_KICKS: WeakKeyDictionary[Store, threading.Event] = WeakKeyDictionary()
_FRESH: WeakKeyDictionary[Store, list[int]] = WeakKeyDictionary()
_FRESH_LOCK = threading.Lock()
FRESH_CAP = 10_000
# Per store: version id -> the job's own rules, or None when its file has no `notify:` key.
_RULES: WeakKeyDictionary[Store, dict[int, tuple[Rule, ...] | None]] = WeakKeyDictionary()


def configure(store: Store, defaults: Sequence[Rule] = (), console_url: str | None = None
              ) -> None:
    _CONFIG[store] = Config(tuple(defaults), console_url.rstrip("/") if console_url else None)


def config(store: Store) -> Config:
    return _CONFIG.get(store) or Config()


def kick_event(store: Store) -> threading.Event:
    return _KICKS.setdefault(store, threading.Event())


def take_fresh(store: Store) -> list[int]:
    """The ids of outbox rows this process wrote since the last call (committed or not)."""
    with _FRESH_LOCK:
        ids = _FRESH.get(store) or []
        _FRESH[store] = []
    return ids


def event_name(task_run_id: int | None, state: str) -> str | None:
    return (_RUN_EVENTS if task_run_id is None else _TASK_EVENTS).get(state)


def wanted(rows: Iterable[EventRow]) -> list[tuple[EventRow, str]]:
    """The event rows that are notifiable, with their notification event."""
    out = []
    for row in rows:
        _at, _run_id, task_run_id, state, _detail = row
        if state in _STATES:
            name = event_name(task_run_id, state)
            if name is not None:
                out.append((row, name))
    return out


def record(tx: Tx, rows: Sequence[EventRow]) -> None:
    """Outbox rows for whichever of these event rows is notifiable (usually none)."""
    items = wanted(rows)
    if items:
        from_events(tx, items)


def _rules_of_version(tx: Tx, version_id: int) -> tuple[Rule, ...] | None:
    cache = _RULES.setdefault(tx.store, {})
    if version_id not in cache:
        row = tx.one("SELECT definition, base_dir FROM job_versions WHERE id = :v",
                     {"v": version_id})
        raw = json.loads(row[0]).get("notify") if row is not None and row[0] else None
        # A relative command is the job file's, as its shell tasks' are.
        cache[version_id] = None if raw is None else rules_from(raw, row[1] if row else None)
    return cache[version_id]


def rules_for(tx: Tx, version_id: int | None, *, own_only: bool = False) -> tuple[Rule, ...]:
    """A job's rules: its own `notify:` list, else taskplan.toml's (unless `own_only`)."""
    own = None if version_id is None else _rules_of_version(tx, version_id)
    if own is not None:
        return own
    return () if own_only else config(tx.store).defaults


def _run_url(store: Store, run_id: int | None) -> str | None:
    if run_id is None:
        return None
    base = config(store).console_url or ""
    return f"{base}/runs/{run_id}"


def _insert(tx: Tx, rules: Iterable[Rule], event: str, at: float, payload: dict[str, Any],
            job: str | None, run_id: int | None, task_run_id: int | None) -> int:
    rows = []
    for rule in rules:
        if event not in rule.events:
            continue
        body = {"event": event, "delivery": uuid.uuid4().hex, "at": iso(at), **payload}
        rows.append({"e": event, "t": at, "j": job, "r": run_id, "tr": task_run_id,
                     "c": rule.channel.to_json(), "p": json.dumps(body, default=str)})
    if not rows:
        return 0
    ids = [int(i) for (i,) in tx.many_returning(
        "INSERT INTO notifications (event, created_at, job, run_id, task_run_id, channel,"
        " payload, state, attempts, next_at)"
        " VALUES (:e, :t, :j, :r, :tr, :c, :p, 'pending', 0, :t) RETURNING id", rows)]
    with _FRESH_LOCK:
        fresh = _FRESH.setdefault(tx.store, [])
        fresh.extend(ids)
        del fresh[:-FRESH_CAP]  # a process without a sender: the lease holder sends them
    kick_event(tx.store).set()
    return len(rows)


def _ids(values: Iterable[int]) -> str:
    return ", ".join(str(int(v)) for v in sorted(set(values)))


@dataclass(frozen=True)
class _RunFacts:
    """What a notification says of its run."""

    id: int
    version_id: int
    job: str
    state: str
    trigger: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: str | None
    params: str | None  # as stored (JSON text)


@dataclass(frozen=True)
class _TaskFacts:
    """What a notification says of its task run."""

    id: int
    task: str
    kind: str
    parent_id: int | None
    item_index: int | None
    attempts: int
    max_attempts: int
    error: str | None
    exit_code: int | None
    failed_children: int | None


def from_events(tx: Tx, items: Sequence[tuple[EventRow, str]]) -> int:
    """Outbox rows for notifiable event rows (see `wanted`) of this transaction."""
    run_ids = [run_id for (_at, run_id, _tr, _state, _detail), _ in items]
    runs = {f.id: f for f in (_RunFacts(*r) for r in tx.all(
        "SELECT r.id, r.version_id, j.name, r.state, r.trigger, r.created_at, r.started_at,"
        " r.finished_at, r.error, r.params FROM runs r JOIN jobs j ON j.id = r.job_id"
        f" WHERE r.id IN ({_ids(run_ids)})"))}
    task_ids = [tr for (_at, _run, tr, _state, _detail), _ in items if tr is not None]
    tasks: dict[int, _TaskFacts] = {}
    if task_ids:
        tasks = {f.id: f for f in (_TaskFacts(*t) for t in tx.all(
            "SELECT id, task, kind, parent_id, item_index, attempts, max_attempts, error,"
            f" exit_code, failed_children FROM task_runs WHERE id IN ({_ids(task_ids)})"))}
    count = 0
    for (at, run_id, tr_id, _state, detail), event in items:
        run = runs.get(run_id)
        if run is None:
            continue
        rules = rules_for(tx, int(run.version_id))
        if not any(event in r.events for r in rules):
            continue
        task: dict[str, Any] | None = None
        error = detail
        if tr_id is not None:
            t = tasks.get(tr_id)
            # Stage barriers are bookkeeping; foreach items report through their foreach task
            # (one notification when it fails, not one per item).
            if t is None or t.kind == TaskRunKind.BARRIER or t.parent_id is not None:
                continue
            task = {"name": str(t.task), "kind": str(t.kind), "attempt": int(t.attempts),
                    "max_attempts": int(t.max_attempts), "exit_code": t.exit_code,
                    "error": _masked(t.error if detail is None else detail)}
            if t.kind == TaskRunKind.FOREACH:
                task["failed_items"] = int(t.failed_children or 0)
            error = task["error"]
        elif event == "run_failed":
            error = run.error or _failed_tasks(tx, run_id)
        payload: dict[str, Any] = {
            "job": str(run.job),
            "run": {"id": run_id, "state": str(run.state), "trigger": str(run.trigger),
                    "params": json.loads(run.params) if run.params else {},
                    "created_at": iso(run.created_at), "started_at": iso(run.started_at),
                    "finished_at": iso(run.finished_at), "url": _run_url(tx.store, run_id)},
            "task": task,
            "error": _masked(error) if event in ("run_failed", "task_failed",
                                                 "task_retrying") else None,
            "detail": _detail(detail) if event.startswith("deadline") else None,
        }
        count += _insert(tx, rules, event, at, payload, str(run.job), run_id, tr_id)
    return count


def _masked(text: str | None) -> str | None:
    """Errors quote what failed: URL passwords and known secret values are masked."""
    return None if text is None else mask_url(text)


def _detail(text: str | None) -> Any:
    """Deadline events carry JSON (predicted finish, critical path); anything else as text."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _failed_tasks(tx: Tx, run_id: int) -> str | None:
    rows = tx.all(
        "SELECT task, item_index FROM task_runs WHERE run_id = :r AND state = 'failed'"
        " AND kind <> 'barrier' AND parent_id IS NULL ORDER BY id LIMIT 6", {"r": run_id})
    if not rows:
        return None
    names = [str(task) for task, _item in rows[:5]]
    return "failed: " + ", ".join(names) + (", ..." if len(rows) > 5 else "")


def agent_lost(tx: Tx, agent_id: int, run_ids: Iterable[int], at: float) -> int:
    """An agent's lease expired. taskplan.toml's rules hear of it once; a job whose own rules
    list agent_lost hears of it once per run of that job the agent was working on."""
    row = tx.one("SELECT name, host, pid, heartbeat_at FROM agents WHERE id = :a",
                 {"a": agent_id})
    name, host, pid, heartbeat_at = row if row is not None else (None, None, None, None)
    agent = {"id": agent_id, "name": name, "host": host, "pid": pid,
             "last_heartbeat_at": iso(heartbeat_at)}
    count = _insert(tx, config(tx.store).defaults, "agent_lost", at,
                    {"job": None, "run": None, "task": None, "agent": agent,
                     "runs": sorted(set(run_ids)), "error": "agent lost",
                     "detail": None}, None, None, None)
    ids = sorted(set(run_ids))
    if not ids:
        return count
    for run_id, version_id, job, state in tx.all(
            "SELECT r.id, r.version_id, j.name, r.state FROM runs r JOIN jobs j"
            f" ON j.id = r.job_id WHERE r.id IN ({_ids(ids)})"):
        own = rules_for(tx, int(version_id), own_only=True)
        count += _insert(tx, own, "agent_lost", at, {
            "job": str(job), "run": {"id": int(run_id), "state": str(state),
                                     "url": _run_url(tx.store, int(run_id))},
            "task": None, "agent": agent, "error": "agent lost", "detail": None,
        }, str(job), int(run_id), None)
    return count


def schedule_misfired(tx: Tx, *, job: str, version_id: int, schedule: str,
                      missed: Sequence[float], policy: str, run_ids: Sequence[int],
                      at: float) -> int:
    """Firings of a schedule were missed (no scheduler was running at their time)."""
    rules = rules_for(tx, version_id)
    if not any("schedule_misfired" in r.events for r in rules):
        return 0
    what = {"schedule": schedule, "missed": len(missed),
            "first_missed_at": iso(min(missed)), "last_missed_at": iso(max(missed)),
            "on_misfire": policy, "runs": list(run_ids)}
    run_id = run_ids[-1] if run_ids else None
    return _insert(tx, rules, "schedule_misfired", at, {
        "job": job, "run": None if run_id is None else {
            "id": run_id, "url": _run_url(tx.store, run_id)},
        "task": None, "error": None, "detail": what,
    }, job, run_id, None)


# -- the sender's side --------------------------------------------------------------------
@dataclass
class Delivery:
    id: int
    event: str
    channel: Channel
    payload: dict[str, Any]
    attempts: int  # tries made before this one
    round_from: int  # tries made before this round (a resend starts a new one)


LEASE_NAME = "notify"


@dataclass(frozen=True)
class SenderLease:
    held: bool  # by the holder that asked
    next_due: float | None  # when the next pending notification is due (read when held)


def renew_lease(tx: Tx, holder: str, now: float, until: float, *, create: bool
                ) -> SenderLease:
    """Take or renew the sender lease; if held, also when the next pending notification is
    due. One statement for a holder (an idle sender's only query); `create` also inserts the
    lease row when no sender ever took it."""
    row = tx.one(
        "UPDATE leases SET holder = :h, until = :u WHERE name = :n AND (until < :t OR holder"
        " = :h) RETURNING (SELECT MIN(next_at) FROM notifications WHERE state = 'pending')",
        {"h": holder, "u": until, "n": LEASE_NAME, "t": now})
    if row is not None:
        (due,) = row
        return SenderLease(True, None if due is None else float(due))
    if create and tx.run("INSERT INTO leases (name, holder, until) VALUES (:n, :h, :u)"
                         " ON CONFLICT (name) DO NOTHING",
                         {"n": LEASE_NAME, "h": holder, "u": until}) == 1:
        return SenderLease(True, next_due(tx))
    return SenderLease(False, None)


def _of_root(root: int | None) -> str:
    """The condition on a notification of a run and its sub-runs (none: no condition)."""
    return "" if root is None else (
        f" AND run_id IN (SELECT id FROM runs WHERE root_run_id = {int(root)})")


def claim_due(tx: Tx, now: float, limit: int, hold: Callable[[Channel], float],
              ids: Sequence[int] | None = None, root: int | None = None) -> list[Delivery]:
    """Pending notifications due now (of `ids` only, or of the runs under `root` only, if
    given), each pushed `hold(channel)` seconds ahead so that no other sender takes it while
    this try runs (if this sender dies, it is due again then)."""
    only = ("" if ids is None else f" AND id IN ({_ids(ids) or 'NULL'})") + _of_root(root)
    rows = tx.all(
        "SELECT id, event, channel, payload, attempts, round_from FROM notifications"
        f" WHERE state = 'pending' AND next_at <= :t{only} ORDER BY next_at, id LIMIT :n",
        {"t": now, "n": limit})
    out = []
    for i, event, text, payload, attempts, round_from in rows:
        channel = Channel.from_json(text)
        if tx.run("UPDATE notifications SET next_at = :h, attempts = attempts + 1"
                  " WHERE id = :i AND state = 'pending' AND attempts = :a",
                  {"h": now + hold(channel), "i": i, "a": attempts}) != 1:
            continue
        out.append(Delivery(int(i), str(event), channel, json.loads(payload), int(attempts),
                            int(round_from)))
    return out


def start_attempt(tx: Tx, d: Delivery, sender: str, now: float) -> None:
    # A try whose sender died never got an end: say so.
    tx.run("UPDATE notification_attempts SET finished_at = :t, ok = :f, error ="
           " 'interrupted: the sender stopped before the outcome was known'"
           " WHERE notification_id = :i AND finished_at IS NULL",
           {"t": now, "i": d.id, "f": False})
    tx.run("INSERT INTO notification_attempts (notification_id, attempt, sender, started_at)"
           " VALUES (:i, :a, :s, :t)", {"i": d.id, "a": d.attempts + 1, "s": sender, "t": now})


def end_attempt(tx: Tx, d: Delivery, now: float, *, ok: bool, status: int | None,
                error: str | None, retry_at: float | None, channel: Channel | None = None
                ) -> None:
    """Record a try's outcome: delivered, due again at `retry_at`, or given up (None).
    `channel`: what is left to deliver to, when the try reached part of its targets."""
    tx.run("UPDATE notification_attempts SET finished_at = :t, ok = :ok, status = :s,"
           " error = :e WHERE notification_id = :i AND attempt = :a",
           {"t": now, "ok": ok, "s": status, "e": error, "i": d.id, "a": d.attempts + 1})
    if channel is not None:
        tx.run("UPDATE notifications SET channel = :c WHERE id = :i",
               {"c": channel.to_json(), "i": d.id})
    if ok:
        tx.run("UPDATE notifications SET state = 'delivered', delivered_at = :t,"
               " last_error = NULL WHERE id = :i", {"t": now, "i": d.id})
    elif retry_at is None:
        tx.run("UPDATE notifications SET state = 'failed', last_error = :e WHERE id = :i",
               {"e": error, "i": d.id})
    else:
        tx.run("UPDATE notifications SET next_at = :n, last_error = :e WHERE id = :i",
               {"n": retry_at, "e": error, "i": d.id})


def next_due(tx: Tx, root: int | None = None) -> float | None:
    value = tx.scalar("SELECT MIN(next_at) FROM notifications WHERE state = 'pending'"
                      + _of_root(root))
    return None if value is None else float(value)


def untried_of_root(tx: Tx, root_run_id: int) -> int:
    """Notifications of a run and its sub-runs not tried yet (what `taskplan run` waits for
    before it exits)."""
    return int(tx.scalar(
        "SELECT COUNT(*) FROM notifications WHERE state = 'pending' AND attempts = 0"
        " AND run_id IN (SELECT id FROM runs WHERE root_run_id = :r)", {"r": root_run_id}
    ) or 0)


# -- what `taskplan notifications` shows ---------------------------------------------------
@dataclass
class NotificationInfo:
    id: int
    event: str
    created_at: float
    job: str | None
    run_id: int | None
    task_run_id: int | None
    channel: Channel
    state: str
    attempts: int
    next_at: float | None
    delivered_at: float | None
    last_error: str | None
    tries: list[AttemptInfo]


@dataclass
class AttemptInfo:
    attempt: int
    sender: str
    started_at: float
    finished_at: float | None
    ok: bool | None
    status: int | None
    error: str | None


def list_notifications(tx: Tx, *, failed_only: bool = False, limit: int = 50,
                       ids: Sequence[int] = (), run_id: int | None = None
                       ) -> list[NotificationInfo]:
    where = []
    if failed_only:
        where.append("state = 'failed'")
    if run_id is not None:
        where.append(f"run_id = {int(run_id)}")
    if ids:
        where.append(f"id IN ({_ids(ids)})")
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    rows = tx.all(
        "SELECT id, event, created_at, job, run_id, task_run_id, channel, state, attempts,"
        f" next_at, delivered_at, last_error FROM notifications{clause}"
        " ORDER BY id DESC LIMIT :n", {"n": limit})
    out = [NotificationInfo(int(i), str(event), float(created_at), job, run, task_run,
                            Channel.from_json(channel), str(state), int(attempts),
                            float(next_at) if state == "pending" else None, delivered_at,
                            last_error, [])
           for (i, event, created_at, job, run, task_run, channel, state, attempts, next_at,
                delivered_at, last_error) in rows]
    if out:
        by_id = {n.id: n for n in out}
        for (notification_id, attempt, sender, started_at, finished_at, ok, status,
             error) in tx.all(
                "SELECT notification_id, attempt, sender, started_at, finished_at, ok, status,"
                " error FROM notification_attempts WHERE notification_id IN"
                f" ({_ids(by_id)}) ORDER BY notification_id, attempt"):
            by_id[int(notification_id)].tries.append(AttemptInfo(
                int(attempt), str(sender), float(started_at), finished_at,
                None if ok is None else bool(ok), status, error))
    return out


def resend(tx: Tx, notification_id: int, now: float) -> str | None:
    """Queue a notification again (a new round of tries). Returns its state before, or None
    if there is no such notification."""
    state = tx.scalar("SELECT state FROM notifications WHERE id = :i", {"i": notification_id})
    if state is None:
        return None
    # A try under way (claimed, its hold not passed, no end recorded) keeps its hold: due
    # now, a second sender would try the notification while the first still waits for its
    # receiver. Its outcome then stands; the tries after it count in the new round.
    tx.run("UPDATE notifications SET state = 'pending', round_from = attempts,"
           " delivered_at = NULL, next_at = CASE WHEN state = 'pending' AND next_at > :t"
           " AND EXISTS (SELECT 1 FROM notification_attempts a WHERE a.notification_id = :i"
           " AND a.finished_at IS NULL) THEN next_at ELSE :t END WHERE id = :i",
           {"t": now, "i": notification_id})
    tx.wake = True
    return str(state)


def delete_of_runs(tx: Tx, run_ids_sql: str) -> None:
    """With purged runs: their notifications that are done (pending ones still go out), and
    the tries of those."""
    done = (f"SELECT id FROM notifications WHERE run_id IN ({run_ids_sql})"
            " AND state <> 'pending'")
    tx.run(f"DELETE FROM notification_attempts WHERE notification_id IN ({done})")
    tx.run(f"DELETE FROM notifications WHERE run_id IN ({run_ids_sql}) AND state <> 'pending'")


def purge_runless(tx: Tx, before: float) -> None:
    """Done notifications of no run (agent_lost, ...) created before `before`."""
    old = ("SELECT id FROM notifications WHERE run_id IS NULL AND state <> 'pending'"
           " AND created_at < :b")
    tx.run(f"DELETE FROM notification_attempts WHERE notification_id IN ({old})", {"b": before})
    tx.run("DELETE FROM notifications WHERE run_id IS NULL AND state <> 'pending'"
           " AND created_at < :b", {"b": before})
