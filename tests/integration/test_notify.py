"""Notifications on a real store (SQLite and PostgreSQL) to a real HTTP receiver: every
notifiable event reaches its channel once, signed; defaults and silencing; foreach items;
retries with backoff, giving up and resending; agent_lost and schedule_misfired; a hanging
webhook does not hold up a run. Tests whose statements others already run on both backends
run on SQLite only."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import apply_job, run_agent, run_job, start_run
from notify_helpers import Hook, start_hook

from taskplan.engine import Engine
from taskplan.notify.rules import Channel, Rule
from taskplan.notify.sender import Sender
from taskplan.scheduler import Scheduler
from taskplan.spec import load_job_text
from taskplan.store import notify_ops
from taskplan.store.db import Store

SECRET = "s3cret"


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = start_hook()
    yield h
    h.close()


def drain(store: Store, **kw: Any) -> Sender:
    """One sender, leading, delivering until nothing is due."""
    sender = Sender(store, lease=5.0, holder="test-sender", **kw)
    assert sender.try_lead()
    while sender.deliver_due():
        pass
    return sender


def outbox(store: Store) -> list[tuple[Any, ...]]:
    with store.read() as tx:
        return tx.all("SELECT event, state, attempts FROM notifications ORDER BY id")


def flaky(tmp_path: Path, name: str) -> str:
    """A shell command failing on its first attempt only."""
    mark = tmp_path / f"{name}.tried"
    return f"test -f {mark} || {{ touch {mark}; exit 4; }}"


def test_each_event_reaches_the_webhook_once_signed(engine: Engine, store: Store, hook: Hook,
                                                    tmp_path: Path) -> None:
    events = "[run_failed, run_succeeded, task_failed, task_retrying]"
    notify = f"notify:\n  - on: {events}\n    webhook: {hook.url}\n    secret: {SECRET}\n"
    run_failed, _ = run_job(engine, f"""
job: breaks
{notify}tasks:
  now: {{shell: "exit 3", retries: 1}}
  later: {{shell: "exit 5", retries: 1, retry_delay: 50ms}}
""")
    run_ok, _ = run_job(engine, f"""
job: works
{notify}tasks:
  a: {{shell: "{flaky(tmp_path, 'a')}", retries: 2}}
""")
    assert engine.run_state(run_failed) == "failed"
    assert engine.run_state(run_ok) == "succeeded"
    drain(store)
    got = sorted((r.json["job"], r.json["event"], (r.json["task"] or {}).get("name"))
                 for r in hook.received)
    assert got == [
        ("breaks", "run_failed", None),
        ("breaks", "task_failed", "later"), ("breaks", "task_failed", "now"),
        ("breaks", "task_retrying", "later"), ("breaks", "task_retrying", "now"),
        ("works", "run_succeeded", None), ("works", "task_retrying", "a"),
    ]
    for r in hook.received:
        expected = "sha256=" + hmac.new(SECRET.encode(), r.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(r.headers["X-Taskplan-Signature"], expected)
        assert r.headers["X-Taskplan-Delivery"] == r.json["delivery"]
        assert r.headers["X-Taskplan-Event"] == r.json["event"]
        assert r.json["run"]["url"] == f"/runs/{r.json['run']['id']}"
    failed = next(r.json for r in hook.received if r.json["event"] == "run_failed")
    assert failed["run"]["state"] == "failed" and failed["run"]["finished_at"]
    assert failed["error"] == "failed: now, later"
    final = next(r.json for r in hook.received if r.json["event"] == "task_failed"
                 and r.json["task"]["name"] == "now")
    assert final["task"]["attempt"] == 2 and final["task"]["max_attempts"] == 2
    assert final["error"] == "exit code 3"
    assert [s for _, s, _ in outbox(store)] == ["delivered"] * 7
    drain(store)  # nothing is sent twice
    assert len(hook.received) == 7


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_own_rows_go_out_at_once_while_another_sender_holds_the_lease(
        engine: Engine, store: Store, hook: Hook) -> None:
    elsewhere = Sender(store, lease=60.0, holder="another-process")
    assert elsewhere.try_lead()
    sender = Sender(store, lease=60.0).start()
    try:
        run_job(engine, f"job: x\nnotify: [{{on: run_succeeded, webhook: '{hook.url}'}}]\n"
                        "tasks:\n  a: {shell: 'true'}\n")
        assert hook.arrived.wait(30)
        assert not sender.leader
    finally:
        sender.stop()
    assert hook.events() == ["run_succeeded"]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_defaults_apply_to_jobs_without_notify_and_an_empty_list_silences(
        engine: Engine, store: Store, hook: Hook) -> None:
    notify_ops.configure(store, [Rule(frozenset({"run_succeeded"}),
                                      Channel("webhook", (hook.url,)))],
                         console_url="http://console:8080/")
    run_job(engine, "job: plain\ntasks:\n  a: {shell: 'true'}\n")
    run_job(engine, "job: quiet\nnotify: []\ntasks:\n  a: {shell: 'true'}\n")
    drain(store)
    assert [(r.json["job"], r.json["event"]) for r in hook.received] == [
        ("plain", "run_succeeded")]
    assert hook.received[0].json["run"]["url"].startswith("http://console:8080/runs/")
    assert "X-Taskplan-Signature" not in hook.received[0].headers


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_foreach_reports_once_not_per_item(engine: Engine, store: Store,
                                             hook: Hook) -> None:
    run_job(engine, f"""
job: many
notify: [{{on: [task_failed, run_failed], webhook: "{hook.url}"}}]
tasks:
  each:
    foreach: {{values: [1, 2, 3]}}
    shell: "test {{{{ item }}}} -ne 2"
""")
    drain(store)
    assert sorted(hook.events()) == ["run_failed", "task_failed"]
    task = next(r.json["task"] for r in hook.received if r.json["event"] == "task_failed")
    assert (task["name"], task["kind"], task["failed_items"]) == ("each", "foreach", 1)


def test_retries_back_off_give_up_and_resend(engine: Engine, store: Store) -> None:
    hook = start_hook(statuses=[500, 502, 503])
    try:
        run_job(engine, f"job: x\nnotify: [{{on: run_succeeded, webhook: '{hook.url}'}}]\n"
                        "tasks:\n  a: {shell: 'true'}\n")
        clock = [time.time() + 1]
        sender = drain(store, clock=lambda: clock[0], max_tries=3, backoff=(10.0, 20.0))
        assert outbox(store) == [("run_succeeded", "pending", 1)]
        def deliver() -> int:
            assert sender.try_lead()  # the clock jumped past the lease: renew it
            return sender.deliver_due()

        clock[0] += 10
        assert deliver() == 1
        assert outbox(store) == [("run_succeeded", "pending", 2)]
        clock[0] += 19
        assert deliver() == 0  # the second wait is longer
        clock[0] += 1
        assert deliver() == 1
        assert outbox(store) == [("run_succeeded", "failed", 3)]
        with store.read() as tx:
            [info] = notify_ops.list_notifications(tx, failed_only=True)
        assert [(a.attempt, a.ok, a.status) for a in info.tries] == [
            (1, False, 500), (2, False, 502), (3, False, 503)]
        assert info.last_error == "HTTP 503: ok"
        # A resend starts a new round of tries; the receiver answers 200 now.
        with store.tx() as tx:
            assert notify_ops.resend(tx, info.id, clock[0]) == "failed"
        assert deliver() == 1
        assert outbox(store) == [("run_succeeded", "delivered", 4)]
        assert len({r.json["delivery"] for r in hook.received}) == 1  # one id for every try
    finally:
        hook.close()


def test_a_version_stored_under_looser_notify_rules_still_loads_and_runs(
        engine: Engine, store: Store, hook: Hook) -> None:
    # The checks of notify: entries grow (a timeout of at most 1h, a webhook port, one bare
    # address): a version applied before them failed to load afterwards, and with it
    # `taskplan jobs`, `run`, and every step of its runs. Stored definitions are not re-judged.
    version_id = apply_job(engine, f"job: old\nnotify: [{{on: run_failed, webhook: '{hook.url}'}}]"
                                   "\ntasks:\n  a: {shell: 'exit 1'}\n")
    with store.tx() as tx:
        definition = json.loads(tx.scalar("SELECT definition FROM job_versions WHERE id = :v",
                                          {"v": version_id}))
        definition["notify"][0]["timeout"] = "2h"
        definition["notify"].append({"on": "run_failed", "email": "Ops <ops@example.com>"})
        tx.run("UPDATE job_versions SET definition = :d WHERE id = :v",
               {"d": json.dumps(definition), "v": version_id})
    fresh = Engine(store)  # no definition cached
    assert fresh.job_spec(version_id).name == "old"
    run_id = fresh.create_run(version_id)
    run_agent(fresh, run_id)
    assert fresh.run_state(run_id) == "failed"
    drain(store)
    assert hook.events() == ["run_failed"]


def test_a_foreground_run_s_sender_retries_its_own_run_only(engine: Engine,
                                                             store: Store) -> None:
    hook = start_hook(statuses=[503, 503])
    try:
        job = f"job: x\nnotify: [{{on: run_failed, webhook: '{hook.url}'}}]\n" \
              "tasks:\n  a: {shell: 'exit 1'}\n"
        first, _ = run_job(engine, job)
        second, _ = run_job(engine, job)
        clock = [time.time()]
        drain(store, clock=lambda: clock[0])  # each one's first try: 503
        clock[0] += 60
        # Another sender (drain's) holds the lease; a run's own sender needs none.
        mine = Sender(store, lease=5.0, holder="run", clock=lambda: clock[0], root=second)
        assert mine.deliver_due() == 1
        with store.read() as tx:
            states = {n.run_id: (n.state, n.attempts)
                      for n in notify_ops.list_notifications(tx)}
        assert states == {first: ("pending", 1), second: ("delivered", 2)}
    finally:
        hook.close()


def test_a_resend_while_a_try_is_under_way_does_not_start_a_second(engine: Engine,
                                                                     store: Store) -> None:
    # `notifications resend ID` of a pending notification whose try was waiting for a slow
    # receiver sent it again at once from a second sender: two tries of one notification at
    # the same time, the first recorded as interrupted while it was still under way.
    hook = start_hook(hold=True)
    try:
        run_job(engine, f"job: x\nnotify: [{{on: run_succeeded, webhook: '{hook.url}'}}]\n"
                        "tasks:\n  a: {shell: 'true'}\n")
        first = Sender(store, lease=5.0, holder="first")
        assert first.try_lead()
        trying = threading.Thread(target=first.deliver_due)
        trying.start()
        assert hook.arrived.wait(10)
        with store.read() as tx:
            [info] = notify_ops.list_notifications(tx)
        with store.tx() as tx:
            assert notify_ops.resend(tx, info.id, time.time()) == "pending"
        assert Sender(store, lease=5.0, holder="second").deliver_ids([info.id]) == []
        hook.hold.set()  # type: ignore[union-attr]
        trying.join(10)
        assert outbox(store) == [("run_succeeded", "delivered", 1)]
        with store.read() as tx:
            [info] = notify_ops.list_notifications(tx)
        assert [(a.sender, a.ok) for a in info.tries] == [("first", True)]
        assert len(hook.received) == 1
    finally:
        hook.close()


def test_agent_lost_goes_to_defaults_once_and_to_jobs_that_ask(store: Store,
                                                               hook: Hook) -> None:
    now = [1e9]
    engine = Engine(store, clock=lambda: now[0])
    notify_ops.configure(store, [Rule(frozenset({"agent_lost"}),
                                      Channel("webhook", (hook.url + "/ops",)))])
    run_id = start_run(engine, f"""
job: watched
notify: [{{on: agent_lost, webhook: "{hook.url}/team"}}]
tasks:
  a: {{shell: "true", retries: 1}}
  b: {{shell: "true"}}
""")
    agent_id = engine.register_agent("doomed", "h1", 99, 2, 5.0)
    assert len(engine.step(agent_id, [], 2, run_id).claims) == 2
    now[0] += 6
    assert engine.reap() == 2
    drain(store)
    got = sorted((r.path, r.json["event"], (r.json["run"] or {}).get("id"))
                 for r in hook.received)
    assert got == [("/hook/ops", "agent_lost", None), ("/hook/team", "agent_lost", run_id)]
    ops = next(r.json for r in hook.received if r.path == "/hook/ops")
    assert ops["agent"]["name"] == "doomed" and ops["runs"] == [run_id]


def test_schedule_misfired(store: Store, hook: Hook) -> None:
    t0 = 1_800_000_000.0
    now = [t0 + 0.5]
    engine = Engine(store, clock=lambda: now[0])
    engine.apply(load_job_text(f"""
job: tick
on_misfire: run_once
on_overlap: allow
notify: [{{on: schedule_misfired, webhook: "{hook.url}"}}]
schedules: [{{every: 1s}}]
tasks:
  a: {{shell: "true"}}
""", "job.yaml", "."))
    s = Scheduler(engine, clock=lambda: now[0], holder="s1", lease=5.0)
    assert s.try_lead()
    now[0] = t0 + 1.0
    assert len(s.fire_due().runs) == 1  # on time: no misfire
    now[0] = t0 + 5.5  # t0 + 2, 3 and 4 were missed (more than 1 s late)
    assert s.try_lead()
    res = s.fire_due()
    assert len(res.runs) == 1
    drain(store, clock=lambda: now[0])
    [got] = [r.json for r in hook.received]
    assert got["event"] == "schedule_misfired" and got["job"] == "tick"
    assert got["detail"]["missed"] == 3 and got["detail"]["on_misfire"] == "run_once"
    assert got["detail"]["runs"] == res.runs and got["run"]["id"] == res.runs[0]


def test_deadline_events_recorded_as_run_events_are_notified(engine: Engine, store: Store,
                                                             hook: Hook) -> None:
    from taskplan.store import ops

    run_id = start_run(engine, f"""
job: late
notify: [{{on: [deadline_at_risk, deadline_missed], webhook: "{hook.url}"}}]
tasks:
  a: {{shell: "true"}}
""")
    detail = json.dumps({"finish_at": "2027-01-01T07:40:00+00:00", "critical_path": ["a"]})
    with store.tx() as tx:
        ops.add_events(tx, [(1e9, run_id, None, "deadline_at_risk", detail)])
    drain(store)
    [got] = [r.json for r in hook.received]
    assert got["event"] == "deadline_at_risk" and got["detail"]["critical_path"] == ["a"]


@pytest.mark.slow
def test_a_hanging_webhook_does_not_hold_up_the_run(engine: Engine, store: Store,
                                                    tmp_path: Path) -> None:
    """The retry notification's request stays open while the run goes on and ends."""
    hook = start_hook(hold=True)
    seen = tmp_path / "webhook-open"
    wait_for_hook = f"while [ ! -f {seen} ]; do sleep 0.02; done"
    sender = Sender(store, lease=5.0).start()
    try:
        run_id = start_run(engine, f"""
job: busy
notify: [{{on: task_retrying, webhook: "{hook.url}", timeout: 30s}}]
tasks:
  a: {{shell: "{flaky(tmp_path, 'a')}", retries: 1}}
  b: {{shell: "{wait_for_hook}", depends_on: [a]}}
""")

        def mark() -> None:
            assert hook.arrived.wait(30)
            seen.touch()

        threading.Thread(target=mark, daemon=True).start()
        run_agent(engine, run_id)
        assert engine.run_state(run_id) == "succeeded"
        # The run ended while the webhook was still holding its request open.
        assert hook.open_requests == 1
        assert outbox(store) == [("task_retrying", "pending", 1)]
    finally:
        hook.close()
        sender.stop()
    with store.read() as tx:
        state = tx.scalar("SELECT state FROM notifications")
    assert state in ("pending", "delivered")


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_hanging_receiver_does_not_hold_up_other_notifications(
        engine: Engine, store: Store, store_url: str, hook: Hook) -> None:
    """Tries to a receiver that holds its requests open (retries of another process's rows,
    and this process's own) used to keep the sender's one thread until they timed out, so a
    new notification to a receiver that answers waited behind them."""
    dead = start_hook(hold=True)
    hangs = f"notify: [{{on: task_failed, webhook: '{dead.url}', timeout: 60s}}]\n"
    other = Store(store_url)  # another process: its rows are the lease holder's to send
    try:
        run_job(Engine(other), "job: backlog\n" + hangs + "tasks:\n" + "".join(
            f"  t{i}: {{shell: 'exit 1'}}\n" for i in range(6)))
    finally:
        other.close()
    sender = Sender(store, lease=60.0).start()
    try:
        deadline = time.monotonic() + 30
        while dead.open_requests < 4:  # the lease holder's retries, all held open
            assert time.monotonic() < deadline
            time.sleep(0.02)
        run_job(engine, "job: own\n" + hangs + "tasks:\n  a: {shell: 'exit 1'}\n")
        while dead.open_requests < 5:  # and this process's own row, held open too
            assert time.monotonic() < deadline
            time.sleep(0.02)
        run_job(engine, f"job: fast\nnotify: [{{on: run_succeeded, webhook: '{hook.url}'}}]\n"
                        "tasks:\n  a: {shell: 'true'}\n")
        assert hook.arrived.wait(30)
        assert dead.open_requests == 5  # all still held while the new one went out
    finally:
        dead.close()
        sender.stop()
    assert hook.events() == ["run_succeeded"]


def test_tries_on_threads_of_their_own_leave_no_connection_behind(
        engine: Engine, store: Store, hook: Hook) -> None:
    """Each try runs on a thread that ends with it, and the store keeps every thread's
    connection until told to drop it: one PostgreSQL session (or SQLite handle) was left open
    per notification sent, until the server refused new connections."""
    text = (f"job: x\nnotify: [{{on: [task_failed, run_failed], webhook: '{hook.url}'}}]\n"
            "tasks:\n" + "".join(f"  t{i}: {{shell: 'exit 1'}}\n" for i in range(5)))
    run_job(engine, text)  # 6 rows, nobody's fresh ones: a batch on a pool's threads
    drain(store)
    before = len(store.dialect.conns)
    sender = Sender(store, lease=60.0).start()
    try:
        for _ in range(3):  # this process's own rows: each try on a thread of its own
            run_job(engine, text)
        deadline = time.monotonic() + 30
        while len(hook.received) < 24:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        sender.stop()
    # The agents' and the sender's own threads may hold one each; the tries' threads none.
    assert len(store.dialect.conns) <= before + 4, (before, len(store.dialect.conns))


def test_apply_rejects_bad_notify_entries() -> None:
    from taskplan.errors import DefinitionError

    with pytest.raises(DefinitionError) as err:
        load_job_text("job: j\nnotify:\n  - on: [run_failed]\n    email: ops@x\n"
                      "    secret: s\ntasks:\n  a: {shell: 'true'}\n", "job.yaml", ".")
    assert "job.yaml:3:5: notify[0]: expected `secret` only with a webhook" in str(
        err.value.problems[0])


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_rules_of_a_version_are_read_once(engine: Engine, store: Store, hook: Hook) -> None:
    version = apply_job(engine, f"job: v\nnotify: [{{on: run_failed, webhook: '{hook.url}'}}]"
                                "\ntasks:\n  a: {shell: 'true'}\n")
    with store.read() as tx:
        first = notify_ops.rules_for(tx, version)
        assert notify_ops.rules_for(tx, version) is first
    assert [r.channel.target for r in first] == [(hook.url,)]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_errors_in_payloads_are_masked(engine: Engine, store: Store, hook: Hook) -> None:
    from taskplan.store import ops

    run_id = start_run(engine, f"job: m\nnotify: [{{on: task_retrying, webhook: '{hook.url}'}}]"
                               "\ntasks:\n  a: {shell: 'true'}\n")
    with store.tx() as tx:
        tr = tx.scalar("SELECT id FROM task_runs WHERE run_id = :r", {"r": run_id})
        ops.add_events(tx, [(time.time(), run_id, tr, "retrying",
                             "cannot connect to postgresql://etl:hunter2@db/x")])
    drain(store)
    [got] = hook.received
    assert "hunter2" not in got.body.decode()
    assert got.json["task"]["error"].startswith("cannot connect to postgresql://etl:")


def test_purged_runs_take_their_done_notifications_along(engine: Engine, store: Store,
                                                         hook: Hook) -> None:
    from taskplan.store import reports

    text = f"job: p\nnotify: [{{on: run_succeeded, webhook: '{hook.url}'}}]\n" \
           "tasks:\n  a: {shell: 'true'}\n"
    run_job(engine, text)
    drain(store)  # the first run's notification is delivered
    run_job(engine, text)  # the second's is still pending
    assert reports.purge(store, time.time() + 60) == 2
    with store.read() as tx:
        assert tx.all("SELECT state FROM notifications") == [("pending",)]
        assert tx.scalar("SELECT COUNT(*) FROM notification_attempts") == 0


def test_a_store_outage_is_said_once_when_it_starts_and_once_when_it_ends(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    away = tmp_path / "away"
    away.mkdir()
    store = Store(f"sqlite:///{tmp_path / 's.db'}")

    def move_store(src: Path, dst: Path) -> None:
        for f in sorted(src.glob("s.db*")):
            f.rename(dst / f.name)

    def said(words: str) -> int:
        return sum(words in r.getMessage() for r in caplog.records
                   if r.name == "taskplan.notify")

    def wait_for(done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 30
        while not done():
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.01)

    kick = notify_ops.kick_event(store)
    # Renewing its lease every 0.2 s, the sender reaches for the store on every turn of an
    # outage (it printed a line a second for as long as one lasted).
    sender = Sender(store, lease=0.2)
    with caplog.at_level(logging.WARNING, logger="taskplan.notify"):
        sender.start()
        try:
            move_store(tmp_path, away)
            wait_for(lambda: said("store unavailable") > 0)
            for _ in range(5):  # a turn, that fails again, between two of these wakes
                kick.set()
                wait_for(lambda: not kick.is_set())
            move_store(away, tmp_path)
            wait_for(lambda: said("store back after") > 0)
        finally:
            sender.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "taskplan.notify"]
    assert len(lines) == 2, lines
    # (gone, or a disk I/O error from a connection that had it open: the store says which)
    assert lines[0].startswith("notifications: store unavailable, retrying until it is back:"
                               f" SQLite store {tmp_path / 's.db'} "), lines
    assert lines[1].startswith("notifications: store back after "), lines
    store.close()
