"""A store is created only by commands that write; store URLs and taskplan.toml are checked."""

from __future__ import annotations

from acceptance_helpers import Taskplan

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
