"""A store is created only by commands that write; store URLs and taskplan.toml are checked."""

from __future__ import annotations

import sqlite3

from acceptance_helpers import Taskplan

from taskplan.store import migrate

JOB = """
    job: nightly
    tasks:
      a: {shell: echo a}
"""


def test_read_only_commands_never_create_a_store(tp: Taskplan) -> None:
    tp.write("nightly.yaml", JOB)
    typo = tp.home / "tpp.db"
    readers = [("runs",), ("jobs",), ("status",), ("status", "1"), ("logs", "1", "a"),
               ("agents",), ("next", "nightly"), ("runs", "--job", "nightly"),
               ("stop", "1"), ("cancel", "1"), ("retry", "1"), ("purge", "--older-than", "1d"),
               ("run", "nightly")]
    for args, res in zip(readers, tp.many(*readers, db=False), strict=True):
        assert res.code == 2, (args, res)
        assert res.err.count("\n") == 1 and "no store at " in res.err, (args, res.err)
        assert str(tp.home / "taskplan.db") in res.err, (args, res.err)
    res = tp("--db", f"sqlite:///{typo}", "jobs", db=False)
    assert res.code == 2 and f"no store at {typo}" in res.err, res
    # `run nightly` next to nightly.yaml: the user meant the file
    assert "to run the job file, say nightly.yaml" in tp("run", "nightly", db=False).err
    assert not typo.exists() and not (tp.home / "taskplan.db").exists()
    assert sorted(p.name for p in tp.home.iterdir()) == ["nightly.yaml"]
    # a writing command creates it; then the readers work
    tp.ok("apply", "nightly.yaml", db=False)
    assert tp.ok("runs", "--json", db=False).json() == []


def test_no_such_job_says_which_one_was_meant(tp: Taskplan) -> None:
    tp.write("nightly.yaml", JOB)
    tp.ok("apply", "nightly.yaml")
    for args in (("run", "nightyl"), ("runs", "--job", "nightyl")):
        res = tp(*args)
        assert res.code == 2, (args, res)
        assert res.err == "taskplan: no job named 'nightyl'; did you mean 'nightly'?\n", res
    res = tp("runs", "--job", "weekly")
    assert res.code == 2 and "no job named 'weekly'" in res.err, res


def test_malformed_store_urls_exit_2(tp: Taskplan) -> None:
    cases = {
        "localhost": "not a store URL: 'localhost'",
        "/tmp/x.db": "for a SQLite file say sqlite:////tmp/x.db",
        "ftp://host/x": "unsupported store URL 'ftp://host/x'",
        "mysql://root@127.0.0.1/x": "MariaDB/MySQL work as task connections",
        "sqlite:///:memory:": "the store cannot be sqlite:///:memory:",
        "sqlite:////dev/null": "the store sqlite:////dev/null is not a regular file",
        f"sqlite:///{tp.home}": f"the store sqlite:///{tp.home} is a folder: name a file in it",
    }
    commands = [("--db", url, "runs") for url in cases] + [("--db", "localhost", "apply", ".")]
    for args, res in zip(commands, tp.many(*commands, db=False), strict=True):
        assert res.code == 2, (args, res)
        assert res.err.count("\n") == 1 and "Traceback" not in res.err, (args, res.err)
        if args[-1] == "runs":
            assert cases[args[1]] in res.err, (args, res.err)
    assert list(tp.home.iterdir()) == []


def test_unknown_key_in_taskplan_toml(tp: Taskplan) -> None:
    (tp.home / "taskplan.toml").write_text('db = "sqlite:///t.db"\n\n[pool]\nmart = 2\n')
    res = tp("runs", db=False)
    assert res.code == 2, res
    assert res.err.startswith(f"taskplan: {tp.home / 'taskplan.toml'}:3: unknown key 'pool'"), res
    assert "did you mean 'pools'?" in res.err



def test_a_bad_pool_of_taskplan_toml_is_named_at_its_line(tp: Taskplan) -> None:
    # A name longer than the store keeps, or a size past its integer column, went through
    # and PostgreSQL refused it mid-command ("StringDataRightTruncation: value too long ...",
    # "NumericValueOutOfRange"); a bad size named only [pools].
    toml = tp.home / "taskplan.toml"
    tp.write("j.yaml", """
        job: j
        tasks: {a: {shell: "true"}}
        """)
    long = "p" * 201
    for text, words in [
        (f'db = "sqlite:///t.db"\n[pools]\nmart = 2\n"{long}" = 2\n',
         "4: pools: expected a pool name of at most 200 characters (the store keeps no more),"
         " got one of 201"),
        ('db = "sqlite:///t.db"\n[pools]\nmart = 2\netl = 0\n',
         "4: pools.etl: expected a whole number from 1 to 2147483647, got 0"),
        ('db = "sqlite:///t.db"\n[pools]\nmart = 3000000000\n',
         "3: pools.mart: expected a whole number from 1 to 2147483647, got 3000000000"),
        ('db = "sqlite:///t.db"\n[pools]\n"" = 2\n', "3: pools: expected a pool name, got ''"),
        ('db = "sqlite:///t.db"\npools = 3\n', "2: pools: expected a table of pool name = size"),
    ]:
        toml.write_text(text)
        res = tp("run", "j.yaml", db=False)
        assert res.code == 2, (text, res)
        assert res.err.startswith(f"taskplan: {toml}:{words}"), (text, res.err)
        assert res.err.count("\n") == 1, res.err
    assert not (tp.home / "t.db").exists()


def test_bad_timezone_or_lease_in_taskplan_toml_is_refused_up_front(tp: Taskplan) -> None:
    toml = tp.home / "taskplan.toml"
    tp.write("j.yaml", """
        job: j
        schedules: [{cron: "0 6 * * *"}]
        tasks: {a: {shell: "true"}}
        """)
    for text, line, words in [
        ('db = "sqlite:///t.db"\ntimezone = "Mars/Olympus"\n', 2,
         "timezone: unknown time zone 'Mars/Olympus' (expected an IANA name"),
        ('timezone = 5\n', 1, "timezone: expected an IANA time zone name as a string"),
        ('db = "sqlite:///t.db"\n\nlease_seconds = nan\n', 3,
         "lease_seconds: expected a number of seconds >= 1"),
        ('lease_seconds = inf\n', 1, "lease_seconds: expected a number of seconds >= 1"),
    ]:
        toml.write_text(text)
        for command in (("apply", "j.yaml"), ("next", "j"), ("jobs",)):
            res = tp(*command, db=False)
            assert res.code == 2, (text, command, res)
            assert res.err.startswith(f"taskplan: {toml}:{line}: {words}"), (text, res)
            assert res.err.count("\n") == 1 and "Error" not in res.err, (text, command, res)
    toml.unlink()
    for bad in ("nan", "inf", "0.5", "soon"):
        res = tp("jobs", env={"TASKPLAN_LEASE_SECONDS": bad})
        assert res.code == 2, (bad, res)
        assert res.err == (f"taskplan: TASKPLAN_LEASE_SECONDS: expected a number of seconds"
                           f" >= 1, got {bad!r}\n"), res
    assert not (tp.home / "t.db").exists()

def test_sqlite_memory_as_a_task_connection(tp: Taskplan) -> None:
    tp.write("mem.yaml", """
        job: mem
        connections: {scratch: "sqlite:///:memory:"}
        params: {n: 41}
        tasks:
          q:
            connection: scratch
            sql: "CREATE TABLE t (x int); INSERT INTO t VALUES (:n); SELECT x + 1 AS y FROM t"
    """)
    res = tp("run", "mem.yaml")
    assert res.code == 0, res
    assert tp.status(1)["tasks"][0]["result"]["rows"] == [{"y": 42}]


def test_a_database_that_is_not_a_store_is_left_exactly_as_it_was(tp: Taskplan) -> None:
    other = tp.home / "app.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE users (id INTEGER)")
    conn.commit()
    conn.close()
    empty = tp.home / "empty.db"
    empty.write_bytes(b"")
    before = {p: p.read_bytes() for p in (other, empty)}
    for path in before:
        for args in (("runs",), ("status",), ("jobs",)):
            res = tp("--db", f"sqlite:///{path}", *args, db=False)
            assert res.code == 2, res
            assert res.err == (f"taskplan: no store at {path} (it holds no taskplan tables);"
                               " `taskplan apply` or `taskplan run` creates one (or check"
                               " --db)\n"), res.err
    # not switched to WAL, not grown, no -wal or -shm beside them
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tp.home.iterdir()) == ["app.db", "empty.db"]


def test_a_store_of_a_newer_taskplan_or_of_another_program_is_refused_in_one_line(
        tp: Taskplan) -> None:
    tp.write("nightly.yaml", JOB)
    tp.ok("apply", "nightly.yaml")
    conn = sqlite3.connect(tp.db_path)
    conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.commit()
    conn.close()
    newer = (f"taskplan: the store at {tp.db_path} has schema 9999, newer than this taskplan"
             f" knows ({migrate.HEAD}): it was upgraded by a later version; upgrade taskplan"
             " to use it\n")
    for args in (("runs",), ("apply", "nightly.yaml"), ("agent", "--exit-when-idle", "1s")):
        res = tp(*args)
        assert (res.code, res.err) == (2, newer), args
    foreign = tp.home / "alembic-app.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
    conn.execute("INSERT INTO alembic_version VALUES ('3f2a9c1b7d')")
    conn.commit()
    conn.close()
    before = foreign.read_bytes()
    for args in (("runs",), ("apply", "nightly.yaml")):
        res = tp("--db", f"sqlite:///{foreign}", *args, db=False)
        assert res.code == 2, res
        assert res.err == (f"taskplan: {foreign} is not a taskplan store: its alembic_version"
                           " table says '3f2a9c1b7d', a revision of another program (check"
                           " --db)\n"), res.err
    assert foreign.read_bytes() == before


def test_an_agent_whose_clock_is_ahead_is_not_heard_from_in_the_future(tp: Taskplan) -> None:
    """An agent on a machine whose clock runs a few seconds ahead (or one that beat between
    the command reading the clock and reading the store) was listed `(-5s ago)`."""
    import time

    from taskplan.engine import Engine
    from taskplan.store import ops
    from taskplan.store.db import Store

    tp.ok("apply", tp.write("nightly.yaml", JOB))
    store = Store(tp.url)
    try:
        agent = Engine(store).register_agent("ahead", "h2", 1, 2, 600.0)
        with store.tx() as tx:
            ops.heartbeat(tx, agent, time.time() + 5, 600.0, None)
    finally:
        store.close()
    out = tp.ok("agents").out
    assert "(0s ago)" in out and "-" not in out.split("(")[1], out
