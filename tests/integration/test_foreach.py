"""foreach: items from values, an upstream result or a SQL query; one task run per item."""

from __future__ import annotations

import json
import threading
import tracemalloc
from typing import Any

import pytest
from engine_helpers import (
    apply_job,
    log_text,
    max_overlap,
    run_agent,
    run_job,
    start_run,
    tasks,
    wait_for,
)
from sql_targets import Target

from taskplan.engine import Engine
from taskplan.executors.sql import stream_rows
from taskplan.store import reports
from taskplan.store.db import Store

HOSTILE = "x'; DROP TABLE t; --"


def items(store: Store, run_id: int, task: str) -> list[dict[str, Any]]:
    with store.read() as tx:
        rows = tx.all("SELECT item_index, item, state, attempts, result, error FROM task_runs"
                      " WHERE run_id = :r AND task = :t AND parent_id IS NOT NULL"
                      " ORDER BY item_index", {"r": run_id, "t": task})
    return [{"index": int(r[0]), "item": json.loads(r[1]), "state": str(r[2]),
             "attempts": int(r[3]), "result": None if r[4] is None else json.loads(r[4]),
             "error": r[5]} for r in rows]


def counters(store: Store, run_id: int) -> tuple[int, int, int]:
    with store.read() as tx:
        row = tx.one("SELECT unfinished, running, ready FROM runs WHERE id = :r", {"r": run_id})
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def test_values_expand_and_dependants_wait_for_every_item(engine: Engine, store: Store) -> None:
    run_id, _ = run_job(engine, """
        job: fe_values
        max_parallel: 2
        tasks:
          each:
            foreach: {values: [{sleep: 0.3}, {sleep: 0.3}, {sleep: 0.3}, {sleep: 0.3}]}
            python: "tpforeach:item"
          after: {python: "tpforeach:item", depends_on: [each]}
        """, slots=6)
    top = tasks(store, run_id)
    assert top["each"]["state"] == "succeeded" and top["after"]["state"] == "succeeded"
    its = items(store, run_id, "each")
    assert [i["index"] for i in its] == [0, 1, 2, 3]
    assert all(i["state"] == "succeeded" for i in its)
    assert its[0]["result"]["item"] == {"sleep": 0.3}
    spans = [(i["result"]["start"], i["result"]["end"]) for i in its]
    assert max(e for _, e in spans) <= top["after"]["result"]["start"]
    # max_parallel counts items; the expanded parent takes no slot of it.
    assert max_overlap(spans) == 2
    assert counters(store, run_id) == (0, 0, 0)
    assert engine.run_state(run_id) == "succeeded"


def test_from_upstream_result_and_shell_item_env(engine: Engine, store: Store) -> None:
    run_id, _ = run_job(engine, """
        job: fe_from
        params: {n: 3}
        tasks:
          list_files: {python: "tpforeach:list_files"}
          load:
            foreach: {from: list_files}
            shell: ["sh", "-c", "echo path=$TASKPLAN_ITEM_PATH n=$TASKPLAN_ITEM_N arg=$0",
                    "{{ item.path }}"]
        """)
    assert tasks(store, run_id)["load"]["state"] == "succeeded"
    its = items(store, run_id, "load")
    assert [i["item"]["path"] for i in its] == ["/data/f0.csv", "/data/f1.csv", "/data/f2.csv"]
    with store.read() as tx:
        ids = [int(r[0]) for r in tx.all(
            "SELECT id FROM task_runs WHERE run_id = :r AND task = 'load' AND parent_id IS NOT"
            " NULL ORDER BY item_index", {"r": run_id})]
    assert log_text(store, ids[1]).strip() == "path=/data/f1.csv n=1 arg=/data/f1.csv"


def test_items_and_results_keep_their_keys_in_order(engine: Engine, store: Store) -> None:
    # Items and results were stored with their keys sorted: a sql row's columns came back in
    # alphabetical order, not as selected, and so did a python result's keys.
    run_id, _ = run_job(engine, """
        job: fe_order
        connections: {db: "sqlite:///:memory:"}
        tasks:
          make: {python: "tpforeach:unsorted"}
          q: {sql: "SELECT 1 AS zed, 2 AS amount, 3 AS id", connection: db}
          rows:
            foreach: {sql: "SELECT 1 AS zed, 2 AS amount", connection: db}
            python: "tpforeach:keys_in_order"
          after: {python: "tpforeach:keys_in_order", depends_on: [make, q]}
        """)
    top = tasks(store, run_id)
    assert top["after"]["result"] == {"item": [], "results": {
        "make": ["zeta", "alpha"], "q": ["zed", "amount", "id"]}}
    (row,) = items(store, run_id, "rows")
    assert list(row["item"]) == ["zed", "amount"]
    assert row["result"]["item"] == ["zed", "amount"]


def test_values_items_keep_their_keys_as_written_in_the_stored_version(engine: Engine,
                                                                       store: Store) -> None:
    # The stored version (what an agent that did not apply the file reads) had its keys
    # sorted: a `values:` item {z: 1, a: 2} reached such an agent's task as {"a": 2, "z": 1}.
    version_id = apply_job(engine, """
        job: fe_values_order
        tasks:
          each: {foreach: {values: [{z: 1, a: 2}]}, python: "tpforeach:keys_in_order"}
        """)
    with store.read() as tx:
        text = tx.scalar("SELECT definition FROM job_versions WHERE id = :v", {"v": version_id})
    (item,) = json.loads(text)["tasks"]["each"]["foreach"]["values"]
    assert list(item) == ["z", "a"]


def test_zero_items_succeed_at_once(engine: Engine, store: Store) -> None:
    run_id, _ = run_job(engine, """
        job: fe_zero
        tasks:
          none: {python: "tpforeach:nothing"}
          each: {foreach: {from: none}, python: "tpforeach:item"}
          empty: {foreach: {values: []}, python: "tpforeach:item"}
          after: {python: "tpforeach:noop", depends_on: [each, empty]}
        """)
    assert {k: v["state"] for k, v in tasks(store, run_id).items()} == dict.fromkeys(
        ["none", "each", "empty", "after"], "succeeded")
    assert items(store, run_id, "each") == []
    assert counters(store, run_id) == (0, 0, 0)


def test_a_foreach_over_a_source_that_did_not_succeed_has_no_items(engine: Engine,
                                                                   store: Store) -> None:
    """A disabled source (or a failed one, under all_done) made no list: the foreach failed
    with "its result is not a list (got NoneType)"; it has no items, and says why."""
    run_id, _ = run_job(engine, """
        job: fe_off
        tasks:
          off: {python: "tpforeach:list_files", enabled: false}
          each: {foreach: {from: off}, python: "tpforeach:item"}
          boom: {python: "tpforeach:nosuchfunction"}
          anyway: {foreach: {from: boom}, python: "tpforeach:item", trigger: all_done}
          after: {python: "tpforeach:noop", depends_on: [each, anyway]}
        """)
    assert {k: v["state"] for k, v in tasks(store, run_id).items()} == {
        "off": "skipped", "each": "succeeded", "boom": "failed", "anyway": "succeeded",
        "after": "succeeded"}
    assert items(store, run_id, "each") == [] and items(store, run_id, "anyway") == []
    text = log_text(store, tasks(store, run_id)["each"]["id"])
    assert "foreach from 'off': it did not succeed, so there are no items" in text


def test_retries_and_on_failure_apply_per_item(engine: Engine, store: Store) -> None:
    run_id, _ = run_job(engine, """
        job: fe_fail
        on_failure: continue
        tasks:
          each:
            foreach: {values: [a, bad, c]}
            python: "tpforeach:fail_on_bad"
            retries: 1
          after: {python: "tpforeach:noop", depends_on: [each]}
          side: {python: "tpforeach:noop"}
        """)
    its = items(store, run_id, "each")
    assert [(i["item"], i["state"], i["attempts"]) for i in its] == [
        ("a", "succeeded", 1), ("bad", "failed", 2), ("c", "succeeded", 1)]
    top = tasks(store, run_id)
    assert top["each"]["state"] == "failed"
    assert top["after"]["state"] == "upstream_failed"
    assert top["side"]["state"] == "succeeded"
    assert engine.run_state(run_id) == "failed"
    assert counters(store, run_id) == (0, 0, 0)


def test_status_lists_every_item(engine: Engine, store: Store) -> None:
    run_id, _ = run_job(engine, """
        job: fe_status
        tasks:
          each: {foreach: {values: [1, 2]}, python: "tpforeach:noop"}
        """)
    with store.read() as tx:
        infos = reports.task_runs(tx, run_id)
        refs = reports.find_task_runs(tx, run_id, "each")
    # the group row first, then its items by index, on both stores (NULLs sort apart)
    assert [(t.name, t.item_index, t.item, t.state) for t in infos] == [
        ("each", None, None, "succeeded"), ("each", 0, 1, "succeeded"),
        ("each", 1, 2, "succeeded")]
    assert [r.item_index for r in refs] == [None, 0, 1]


def test_foreach_sql_on_each_target(engine: Engine, store: Store, target: Target) -> None:
    src, dst = target.name("src"), target.name("dst")
    target.run(f"CREATE TABLE {src} (id INT, label VARCHAR(100), tbl VARCHAR(100))")
    target.run(f"CREATE TABLE {dst} (id INT, label VARCHAR(100))")
    for i, label in enumerate(["one", HOSTILE, "three"]):
        target.run(f"INSERT INTO {src} VALUES (:i, :l, :t)", {"i": i, "l": label, "t": dst})
    run_id, _ = run_job(engine, json.dumps({
        "job": "fe_sql",
        "connections": {"db": "${TP_TARGET_URL}"},
        "defaults": {"connection": "db"},
        "tasks": {
            "copy": {
                "foreach": {"sql": f"SELECT id, label, tbl FROM {src} WHERE id >= :min_id"
                                   " ORDER BY id"},
                "sql": "INSERT INTO {{ item.tbl | ident }} (id, label) VALUES (:item_id,"
                       " :item_label)",
            },
        },
    }), params={"min_id": 0})
    top = tasks(store, run_id)
    assert top["copy"]["state"] == "succeeded", [i["error"] for i in items(store, run_id, "copy")]
    assert sorted(target.run(f"SELECT id, label FROM {dst}")) == [
        (0, "one"), (1, HOSTILE), (2, "three")]


def test_foreach_sql_error_fails_the_parent(engine: Engine, store: Store, target: Target
                                            ) -> None:
    run_id, _ = run_job(engine, json.dumps({
        "job": "fe_sql_bad",
        "connections": {"db": "${TP_TARGET_URL}"},
        "tasks": {"each": {"foreach": {"sql": "SELECT * FROM no_such_table_x",
                                       "connection": "db"},
                           "python": "tpforeach:noop"}},
    }))
    top = tasks(store, run_id)
    assert top["each"]["state"] == "failed"
    assert top["each"]["error"].startswith("foreach items:")
    assert counters(store, run_id) == (0, 0, 0)


def test_20000_items_expand_in_one_transaction_with_flat_memory(engine: Engine, store: Store,
                                                                tmp_path: Any) -> None:
    """The expansion alone (items are not run): streamed rows, chunked executemany."""
    n = 20_000
    url = f"sqlite:///{tmp_path / 'many.db'}"
    query = ("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < :count)"
             " SELECT n, 'some text for item ' || n AS label FROM c")
    run_id = start_run(engine, """
        job: fe_many
        tasks:
          each: {foreach: {values: [0]}, python: "tpforeach:noop"}
        """)
    agent_id = engine.register_agent("t", "h", 1, 1, 30.0)
    claims = engine.step(agent_id, [], 1, run_id).claims
    assert [c.kind for c in claims] == ["foreach"]
    tracemalloc.start()
    count = engine.expand_foreach(claims[0], stream_rows(url, query, {"count": n}, 5000))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == n
    assert peak < 30 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    assert counters(store, run_id) == (n + 1, 0, n)
    with store.read() as tx:
        assert tx.scalar("SELECT COUNT(*) FROM task_runs WHERE parent_id IS NOT NULL"
                         " AND state = 'ready'") == n
        last = tx.one("SELECT item_index, item FROM task_runs WHERE parent_id IS NOT NULL"
                      " ORDER BY item_index DESC LIMIT 1")
    assert last is not None and last[0] == n - 1
    assert json.loads(last[1]) == {"n": n, "label": f"some text for item {n}"}


def test_cancel_during_items_ends_parent_and_counters(engine: Engine, store: Store) -> None:
    run_id = start_run(engine, """
        job: fe_cancel
        tasks:
          each:
            foreach: {values: [{sleep: 0.01}, {sleep: 5}, {sleep: 5}, {sleep: 5}, {sleep: 5}]}
            python: "tpforeach:item"
            timeout: 30s
        """)
    done = threading.Event()

    def watch() -> None:
        wait_for(lambda: any(i["state"] == "running" for i in items(store, run_id, "each")),
                 10, "an item to run")
        engine.cancel_run(run_id)
        done.set()

    threading.Thread(target=watch, daemon=True).start()
    run_agent(engine, run_id, slots=2, until=lambda a: done.is_set() and a.busy == 0)
    assert engine.run_state(run_id) == "cancelled"
    assert tasks(store, run_id)["each"]["state"] == "cancelled"
    assert {i["state"] for i in items(store, run_id, "each")} <= {"succeeded", "cancelled",
                                                                  "skipped"}
    assert counters(store, run_id) == (0, 0, 0)


def test_expansion_replayed_after_a_lost_commit_reply_is_not_redone(engine: Engine,
                                                                      store: Store) -> None:
    """A store that crashes right after committing an expansion (or a child run's start)
    leaves the agent unsure: it tries again, and must find the work done, not do it twice."""
    apply_job(engine, "job: fe_child\ntasks:\n  a: {python: 'tpforeach:noop'}\n")
    run_id = start_run(engine, """
        job: fe_replay
        tasks:
          each: {foreach: {values: [1, 2, 3]}, python: "tpforeach:noop"}
          sub: {job: fe_child}
        """)
    agent_id = engine.register_agent("a", "host", 1, 2, 30.0)
    claims = {c.task: c for c in engine.step(agent_id, [], 2, run_id).claims}
    each, sub = claims["each"], claims["sub"]
    assert engine.expand_foreach(each, [[1, 2, 3]]) == 3
    assert engine.expand_foreach(each, [[1, 2, 3]]) == 3  # the replay
    child = engine.start_child_run(sub, "fe_child", {})
    assert child is not None and engine.start_child_run(sub, "fe_child", {}) == child
    with store.read() as tx:
        assert tx.scalar("SELECT COUNT(*) FROM task_runs WHERE parent_id = :p",
                         {"p": each.task_run_id}) == 3
        assert tx.scalar("SELECT COUNT(*) FROM runs WHERE parent_task_run_id = :t",
                         {"t": sub.task_run_id}) == 1


def test_foreach_rows_with_values_python_cannot_hold(engine: Engine, store: Store,
                                                     target: Target) -> None:
    """PostgreSQL's 'infinity' and BC or year-10000 dates, and MariaDB's TIME beyond a day or
    below zero: the query failed (`timestamp too large (after year 10K)`), or an item held a
    Python spelling (`-1 day, 23:00:00`) the server cannot read back. Items hold the
    server's own text, which binds back to the same value; a whole NUMERIC past 2**53 was
    rounded to a float (12345678901234567891 bound back as 12345678901234567168), and a
    bytea's hex (00ff) bound back as the four bytes '00ff'."""
    if target.kind == "sqlite":
        pytest.skip("SQLite has no such types")
    src, dst = target.name("odd_src"), target.name("odd_dst")
    if target.kind == "postgresql":
        cols = "id int, ts timestamptz, d date, iv interval, n numeric(30,0), b bytea"
        target.run(f"CREATE TABLE {src} ({cols})")
        target.run(f"CREATE TABLE {dst} ({cols})")
        target.run(f"INSERT INTO {src} VALUES (1, 'infinity', '-infinity', '-01:00:00', 1,"
                   " '\\x00ff'), (2, '-infinity', '0044-03-15 BC', '26:00:30.5', NULL, ''),"
                   " (3, '2026-01-01 00:00:00+00', '12345-06-07', NULL, 12345678901234567891,"
                   " NULL)")
        want = {1: ("infinity", "-infinity", "-01:00:00", 1, "\\x00ff"),
                2: ("-infinity", "0044-03-15 BC", "26:00:30.5", None, "\\x"),
                3: ("2026-01-01T00:00:00+00:00", "12345-06-07", None, 12345678901234567891,
                    None)}
        back = (f"SELECT id, ts::text, d::text, iv, n, b FROM {dst} ORDER BY id")
    else:
        cols = "id INT, tm TIME(6), dt DATETIME, n DECIMAL(30,0)"
        target.run(f"CREATE TABLE {src} ({cols})")
        target.run(f"CREATE TABLE {dst} ({cols})")
        target.run(f"INSERT INTO {src} VALUES (1, '-01:00:00', '2026-01-01 00:00:00', 1),"
                   " (2, '838:59:59', NULL, NULL), (3, '-00:00:01.5', NULL,"
                   " 12345678901234567891)")
        want = {1: ("-01:00:00", "2026-01-01T00:00:00", 1), 2: ("838:59:59", None, None),
                3: ("-00:00:01.500000", None, 12345678901234567891)}
        back = f"SELECT id, tm, dt, n FROM {dst} ORDER BY id"
    names = [c.split()[0] for c in cols.split(", ")]
    run_id, _ = run_job(engine, json.dumps({
        "job": "fe_odd",
        "connections": {"db": "${TP_TARGET_URL}"},
        "defaults": {"connection": "db"},
        "tasks": {"copy": {
            "foreach": {"sql": f"SELECT {', '.join(names)} FROM {src} ORDER BY id"},
            "sql": f"INSERT INTO {dst} VALUES ("
                   + ", ".join(f":item_{c}" for c in names) + ")"}},
    }))
    top = tasks(store, run_id)
    assert top["copy"]["state"] == "succeeded", (
        top["copy"]["error"], [i["error"] for i in items(store, run_id, "copy")])
    got = {i["item"]["id"]: tuple(i["item"][c] for c in names[1:])
           for i in items(store, run_id, "copy")}
    assert got == want
    assert target.run(back) == target.run(back.replace(dst, src))


def test_a_foreach_query_with_two_columns_of_one_name_is_refused(engine: Engine, store: Store,
                                                                 target: Target) -> None:
    """`SELECT a.id, b.id FROM a JOIN b ...`: each item kept the last `id` only, and
    `:item_id` bound b's id where a's was meant. The foreach fails, naming the column."""
    run_id, _ = run_job(engine, json.dumps({
        "job": "fe_dup",
        "connections": {"db": "${TP_TARGET_URL}"},
        "tasks": {"each": {"foreach": {"sql": "SELECT 1 AS id, 'x' AS label, 2 AS id",
                                       "connection": "db"},
                           "python": "tpforeach:noop"}},
    }))
    top = tasks(store, run_id)
    assert top["each"]["state"] == "failed"
    assert top["each"]["error"] == (
        "foreach items: the query returns 2 columns named 'id': give each its own name"
        " (... AS another_name)")
    assert items(store, run_id, "each") == []


def test_retry_of_an_item_named_as_status_names_it_says_to_retry_its_foreach(
        engine: Engine, store: Store) -> None:
    # `retry RUN --task each[1]` (the name status and logs use) said only "did you mean
    # 'each'?", which left unsaid that retrying each reruns just its failed items.
    from taskplan.errors import NotFoundError

    run_id, _ = run_job(engine, """
        job: fe_retry_item
        tasks:
          each:
            foreach: {values: [good, bad]}
            python: "tpforeach:fail_on_bad"
        """)
    with pytest.raises(NotFoundError) as info:
        engine.retry_run(run_id, "each[1]")
    assert str(info.value) == (
        f"run {run_id} has no task 'each[1]': each[1] is an item of foreach each;"
        " retry --task each reruns its items that did not succeed")
    assert engine.run_state(run_id) == "failed"
