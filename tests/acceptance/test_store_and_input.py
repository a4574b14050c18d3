"""Which store a command uses, what happens when it is unreachable, and bad run input."""

from __future__ import annotations

import os
import subprocess

from acceptance_helpers import Taskplan, clean_env

JOB = """
    job: {name}
    tasks:
      a: {{shell: echo {name}}}
"""


def one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    return err


def test_db_precedence(tp: Taskplan) -> None:
    """--db, then TASKPLAN_DB, then taskplan.toml found upward, then sqlite:///taskplan.db."""
    project = tp.home / "project"
    work = project / "deep" / "work"
    work.mkdir(parents=True)
    (project / "taskplan.toml").write_text('db = "sqlite:///from-toml.db"\n')
    for name in ("by-default", "by-toml", "by-env", "by-flag"):
        tp.write(f"{name}.yaml", JOB.format(name=name))
    env_db = tp.home / "from-env.db"
    flag_db = tp.home / "from-flag.db"

    # no toml above `bare`: the default file in the current folder
    bare = tp.home / "bare"
    bare.mkdir()
    tp.ok("apply", str(tp.home / "by-default.yaml"), db=False, cwd=bare)
    # toml found two folders up; its relative path is relative to the toml file
    tp.ok("apply", str(tp.home / "by-toml.yaml"), db=False, cwd=work)
    # the environment beats the toml
    tp.ok("apply", str(tp.home / "by-env.yaml"), db=False, cwd=work,
          env={"TASKPLAN_DB": f"sqlite:///{env_db}"})
    # the flag beats both; after the command name works as well as before it
    tp.ok("apply", str(tp.home / "by-flag.yaml"), "--db", f"sqlite:///{flag_db}", db=False,
          cwd=work, env={"TASKPLAN_DB": f"sqlite:///{env_db}"})

    expected = {bare / "taskplan.db": "by-default", project / "from-toml.db": "by-toml",
                env_db: "by-env", flag_db: "by-flag"}
    listings = tp.many(*(("--db", f"sqlite:///{p}", "jobs", "--json") for p in expected),
                       db=False)
    for (path, job), res in zip(expected.items(), listings, strict=True):
        assert path.is_file() and res.code == 0, (path, res)
        assert [j["job"] for j in res.json()] == [job], path
    assert not (work / "taskplan.db").exists() and not (work / "from-toml.db").exists()


def test_empty_store_url_is_refused(tp: Taskplan) -> None:
    """An empty --db, TASKPLAN_DB or toml db is a mistake (an unset variable), not "use the
    default": one line, exit 2, and no ./taskplan.db left behind."""
    tp.write("j.yaml", JOB.format(name="j"))
    conf = tp.home / "conf"
    conf.mkdir()
    (conf / "taskplan.toml").write_text('db = ""\n')
    cases = [(("apply", "j.yaml", "--db", ""), {}, tp.home, "--db"),
             (("--db", "", "apply", "j.yaml"), {}, tp.home, "--db"),
             (("apply", "j.yaml"), {"TASKPLAN_DB": ""}, tp.home, "TASKPLAN_DB"),
             (("run", "j.yaml"), {"TASKPLAN_DB": " "}, tp.home, "TASKPLAN_DB"),
             (("apply", str(tp.home / "j.yaml")), {}, conf, f"{conf / 'taskplan.toml'}:1: db")]
    for args, env, cwd, where in cases:
        res = tp(*args, db=False, env=env, cwd=cwd)
        assert res.code == 2, (args, res)
        assert one_line(res.err).startswith(f"taskplan: {where}: the store URL is empty"), res
    assert not list(tp.home.rglob("*.db"))


def test_unreachable_store_exits_3(tp: Taskplan) -> None:
    tp.write("j.yaml", JOB.format(name="j"))
    missing = tp.home / "missing" / "folder" / "t.db"
    commands = [("--db", "postgresql://nobody@127.0.0.1:1/x", "jobs")]
    commands += [("--db", url, "run", "j.yaml")
                 for url in ("postgresql://nobody@127.0.0.1:1/x", f"sqlite:///{missing}")]
    # the password of a URL never shows
    commands.append(("runs", "--db", "postgresql://nobody:s3cret-pw@127.0.0.1:1/x"))
    for args, res in zip(commands, tp.many(*commands, db=False), strict=True):
        assert res.code == 3, (args, res)
        assert res.out == ""
        one_line(res.err)
        assert "Traceback" not in res.err and "s3cret-pw" not in res.err
    assert not missing.parent.exists()


def test_bad_run_input_exits_2_and_creates_nothing(tp: Taskplan) -> None:
    tp.write("j.yaml", JOB.format(name="j"))
    tp.write("bad.yaml", """
        job: bad
        tasks:
          a: {shell: echo, retries: many}
    """)
    # A task this process lacks the label of: refused, after the job was stored (and the
    # store created) for a run that never was.
    tp.write("gpu.yaml", """
        job: gpu
        tasks:
          a: {shell: echo, agent_labels: [gpu]}
    """)
    commands = [("run", "gpu.yaml"),
                ("run", "j.yaml", "--param", "no-equals-sign"),
                ("run", "j.yaml", "--param", "=value"),
                ("run", "nosuchjob"),
                ("run", "missing.yaml"),
                ("run", "j.yaml", "--workers", "0"),
                ("run", "bad.yaml")]
    for args, res in zip(commands, tp.many(*commands), strict=True):
        assert res.code == 2, (args, res)
        one_line(res.err)
    assert res.err.startswith("bad.yaml:3:29: tasks.a.retries"), res
    # nothing was stored by any of them (the good file was only ever named with bad flags)
    assert not tp.db_path.exists()


def test_exit_code_is_the_commands_own_when_nobody_reads_its_output(tp: Taskplan) -> None:
    tp.write("cycle.yaml", """
        job: x
        tasks: {a: {shell: echo, depends_on: [b]}, b: {shell: echo, depends_on: [a]}}
    """)
    tp.write("j.yaml", JOB.format(name="j"))
    tp.ok("apply", "j.yaml")
    for _ in range(3):
        tp.ok("run", "j")
    # `2>&1 | true`: the reader has gone before the first line is written.
    cases = [(("validate", "cycle.yaml"), 2), (("apply", "cycle.yaml"), 2),
             (("status", "999"), 2), (("runs",), 0), (("validate", "j.yaml"), 0)]
    for args, code in cases:
        read, write = os.pipe()
        os.close(read)
        try:
            proc = subprocess.run(tp.argv(args, db=True), cwd=tp.home, env=clean_env(),
                                  stdin=subprocess.DEVNULL, stdout=write, stderr=write,
                                  timeout=60)
        finally:
            os.close(write)
        assert proc.returncode == code, args


def test_a_run_goes_on_when_its_output_cannot_be_written(tp: Taskplan) -> None:
    # `run job.yaml > run.log` on a full disk: the first progress line that failed to reach
    # the file ended the process, with a traceback and exit code 120, and left the run
    # `running` with its task orphaned. Standard output closed (`>&-`) died before the run
    # started, with "AttributeError: 'NoneType' object has no attribute 'isatty'", and left
    # it running too.
    tp.write("two.yaml", """
        job: two
        tasks:
          a: {shell: "sleep 0.3"}
          b: {shell: echo b, depends_on: [a]}
    """)

    def close_stdout() -> None:
        os.close(1)

    for run_id, how in ((1, "full"), (2, "closed")):
        with open("/dev/full", "w") as full:
            proc = subprocess.run(
                tp.argv(("run", "two.yaml"), db=True), cwd=tp.home, env=clean_env(),
                stdin=subprocess.DEVNULL, stdout=full if how == "full" else None,
                stderr=subprocess.PIPE, text=True, timeout=60,
                preexec_fn=close_stdout if how == "closed" else None)
        assert proc.returncode == 0, (how, proc.stderr)
        assert "Traceback" not in proc.stderr and "Exception" not in proc.stderr, proc.stderr
        if how == "full":
            assert proc.stderr == ("taskplan: cannot write to standard output (No space left"
                                   " on device): the rest of it is dropped\n"), proc.stderr
        assert tp.ok("status", str(run_id), "--json").json()["state"] == "succeeded", how
    # A listing command written to a full disk says so too, once, with its own exit code.
    with open("/dev/full", "w") as full:
        proc = subprocess.run(tp.argv(("runs", "--json"), db=True), cwd=tp.home,
                              env=clean_env(), stdin=subprocess.DEVNULL, stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr.count("\n") == 1, proc.stderr
    assert "No space left on device" in proc.stderr


def test_numbers_and_dates_out_of_range_are_named_not_overflowed(tp: Taskplan) -> None:
    # (`next` answers at the ends of the calendar: tests/acceptance/test_edges_of_time.py.)
    tp.write("p.yaml", """
        job: p
        timezone: Asia/Tokyo
        schedules:
          - cron: "0 6 * * *"
        tasks:
          a: {shell: echo p}
    """)
    tp.write("closed.yaml", "calendar: closed\ndates: [2026-12-24]\n")
    tp.ok("apply", "p.yaml", "closed.yaml")
    huge = "99999999999999999999999"
    by_id = [("status", huge), ("stop", huge), ("cancel", huge), ("retry", huge),
             ("logs", huge, "a"), ("notifications", "--run", huge)]
    options = [(("runs", "--limit", huge), "'--limit'"),
               (("firings", "p", "--limit", huge), "'--limit'"),
               (("notifications", "--limit", huge), "'--limit'"),
               (("run", "p", "--workers", huge), "'--workers'"),
               (("backfill", "p", "--from", "0001-01-01", "--to", "0001-01-02"),
                "--from expects a date between"),
               (("forecast", "p", "--at", "0001-01-01"), "--at expects a date between"),
               (("calendars", "closed", "--from", "9999-12-31"), "--from expects a date between"),
               (("notifications", "resend", huge),
                f"expected a notification id between 1 and {2**63 - 1}"),
               # nan and inf are floats to Python: a lease of either never ends, or is no time
               *[((daemon, "--lease", bad), "'--lease': expected a number of seconds from 0.5")
                 for daemon in ("scheduler", "serve") for bad in ("nan", "inf", "-inf", "0")]]
    commands = by_id + [args for args, _ in options]
    expected = [f"expected a run id between 1 and {2**63 - 1}"] * len(by_id) \
        + [said for _, said in options]
    for args, said, res in zip(commands, expected, tp.many(*commands), strict=True):
        assert res.code == 2, (args, res)
        one_line(res.err)
        assert said in res.err and "Error" not in res.err, (args, res.err)


def test_slots_past_what_the_store_keeps_are_refused_before_anything_is_stored(
        tp: Taskplan) -> None:
    """agents.slots is a 32-bit integer on PostgreSQL: `run FILE --workers 3000000000` failed
    there with NumericValueOutOfRange after the job was stored (and the SQLite store took it)."""
    tp.write("w.yaml", "job: w\ntasks:\n  a: {shell: echo w}\n")
    too_many = str(2**31)
    cases = [(("run", "w.yaml", "--workers", too_many), "'--workers'"),
             (("retry", "1", "--workers", too_many), "'--workers'"),
             (("forecast", "w", "--workers", too_many), "'--workers'"),
             (("agent", "--slots", too_many), "'--slots'"),
             (("serve", "--slots", too_many), "'--slots'")]
    for (args, said), res in zip(cases, tp.many(*(a for a, _ in cases)), strict=True):
        assert res.code == 2, (args, res)
        one_line(res.err)
        assert said in res.err and f"1<=x<={2**31 - 1}" in res.err, (args, res.err)
    assert not os.path.exists(tp.db_path)  # nothing was stored, no store made


def test_a_taskplan_toml_that_is_not_utf8_is_named(tp: Taskplan) -> None:
    (tp.home / "taskplan.toml").write_bytes(b'timezone = "UTC"\n# caf\xe9\n')
    res = tp("runs", db=False)
    assert res.code == 2
    assert res.err == (f"taskplan: {tp.home / 'taskplan.toml'}:2:6: not UTF-8 text (byte 0xe9:"
                       " invalid continuation byte; save the file as UTF-8)\n")


def test_a_misspelt_command_gets_a_did_you_mean(tp: Taskplan) -> None:
    # Options and every name taskplan reads had one; a command said only "No such command".
    res = tp("stauts", "1", db=False)
    assert (res.code, res.out) == (2, "")
    assert res.err == ("taskplan: No such command 'stauts'. Did you mean 'status'?"
                       " (see taskplan --help)\n")
    res = tp("--db", "sqlite:///x.db", "bogus", db=False)
    assert res.code == 2 and res.err == "taskplan: No such command 'bogus'. (see taskplan --help)\n"
