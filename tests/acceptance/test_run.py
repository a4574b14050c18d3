"""run, status, runs, logs, retry and purge through the real command line."""

from __future__ import annotations

import os
import pty
import re
import subprocess
from datetime import datetime

from acceptance_helpers import Taskplan, clean_env, finish, states, tasks_by_name

STATUS_KEYS = {"run_id", "job", "version", "state", "params", "created_at", "started_at",
               "finished_at", "tasks"}
TASK_KEYS = {"name", "kind", "item", "state", "attempts", "started_at", "finished_at", "exit_code",
             "result", "error"}
RUNS_KEYS = {"run_id", "job", "version", "state", "trigger", "created_at", "started_at",
             "finished_at"}


def assert_iso_with_offset(value: object) -> datetime:
    assert isinstance(value, str), value
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() is not None, f"{value} carries no UTC offset"
    return parsed


def test_run_shell_and_python_tasks(tp: Taskplan) -> None:
    tp.write("code/calc.py", """
        def base(ctx):
            return {"day": ctx.params["day"], "n": 20, "task": ctx.task, "run": ctx.run_id}

        def plus(ctx):
            return ctx.results["base"]["n"] + 1
    """)
    tp.write("code/demo.yaml", """
        job: demo
        params:
          day: "2026-01-01"
          mode: full
        tasks:
          env:
            shell: >-
              echo "run=$TASKPLAN_RUN_ID task=$TASKPLAN_TASK attempt=$TASKPLAN_ATTEMPT
              day=$TASKPLAN_PARAM_DAY mode=$TASKPLAN_PARAM_MODE"
          base:
            depends_on: [env]
            python: calc:base
          plus:
            depends_on: [base]
            python: calc:plus
          argv:
            shell: [printf, "%s|%s", "two words", "$HOME"]
    """)
    res = tp("run", "code/demo.yaml", "--param", "day=2026-02-03", "--workers", "2")
    assert res.code == 0, res
    # Plain progress lines (stdout is not a terminal): one line per transition, in order.
    lines = res.out.splitlines()

    def index(pattern: str) -> int:
        found = [i for i, ln in enumerate(lines) if re.search(pattern, ln)]
        assert len(found) == 1, f"{pattern!r}: {found} in\n{res.out}"
        return found[0]

    assert index(r"\benv\s+running$") < index(r"\benv\s+succeeded$") \
        < index(r"\bbase\s+running$") < index(r"\bbase\s+succeeded$") \
        < index(r"\bplus\s+running$") < index(r"\bplus\s+succeeded$") \
        < index(r"\brun 1\s+succeeded$")
    assert re.search(r"^run 1 \(demo v1\) succeeded in .*: 4 succeeded$", res.out, re.M)

    status = tp.status(1)
    assert set(status) == STATUS_KEYS
    assert status["run_id"] == 1 and status["job"] == "demo" and status["version"] == 1
    assert status["state"] == "succeeded"
    assert status["params"] == {"day": "2026-02-03", "mode": "full"}
    created = assert_iso_with_offset(status["created_at"])
    started = assert_iso_with_offset(status["started_at"])
    ended = assert_iso_with_offset(status["finished_at"])
    assert created <= started <= ended
    tasks = tasks_by_name(status)
    assert set(tasks) == {"env", "base", "plus", "argv"}
    for t in tasks.values():
        assert set(t) == TASK_KEYS, t
        assert t["state"] == "succeeded" and t["attempts"] == 1 and t["error"] is None
        assert t["item"] is None
        t_start = assert_iso_with_offset(t["started_at"])
        t_end = assert_iso_with_offset(t["finished_at"])
        assert started <= t_start <= t_end <= ended
    assert tasks["env"]["exit_code"] == 0
    assert tasks["base"]["result"] == {"day": "2026-02-03", "n": 20, "task": "base", "run": 1}
    assert tasks["plus"]["result"] == 21
    assert assert_iso_with_offset(tasks["env"]["finished_at"]) <= \
        assert_iso_with_offset(tasks["base"]["started_at"])

    log = tp.ok("logs", "1", "env").out
    assert log.strip() == "run=1 task=env attempt=1 day=2026-02-03 mode=full"
    # A list is an argv: no shell, no word splitting, no expansion.
    assert tp.ok("logs", "1", "argv").out == "two words|$HOME"

    runs = tp.ok("runs", "--json").json()
    assert len(runs) == 1 and set(runs[0]) == RUNS_KEYS
    assert runs[0]["run_id"] == 1 and runs[0]["job"] == "demo" and runs[0]["version"] == 1
    assert runs[0]["state"] == "succeeded" and runs[0]["trigger"] == "manual"
    for key in ("created_at", "started_at", "finished_at"):
        assert runs[0][key] == status[key]


def test_failed_run_exits_1_and_retry_reruns_in_place(tp: Taskplan) -> None:
    tp.write("steps.py", """
        def produce(ctx):
            return {"rows": 42, "attempt": ctx.attempt}

        def consume(ctx):
            return ctx.results["produce"]["rows"] * 2
    """)
    tp.write("flaky.yaml", """
        job: flaky
        tasks:
          produce:
            python: steps:produce
          gate:
            shell: 'echo gate; test -f fixed'
          consume:
            depends_on: [produce, gate]
            python: steps:consume
          side:
            shell: echo side
          after_all:
            depends_on: [consume]
            trigger: all_done
            shell: echo done
    """)
    res = tp("run", "flaky.yaml")
    assert res.code == 1, res
    assert re.search(r"^run 1 \(flaky v1\) failed", res.out, re.M), res.out
    assert re.search(r"failed: gate after 1 attempt\(s\)", res.out), res.out
    first = tp.status(1)
    assert first["state"] == "failed"
    assert states(first) == {"produce": "succeeded", "gate": "failed",
                             "consume": "upstream_failed", "side": "succeeded",
                             "after_all": "succeeded"}
    before = tasks_by_name(first)
    assert before["gate"]["exit_code"] == 1 and before["gate"]["error"]
    assert before["produce"]["result"] == {"rows": 42, "attempt": 1}

    # retry of an unknown run or one that is not finished is bad input
    assert tp("retry", "7").code == 2

    (tp.home / "fixed").write_text("")
    res = tp("retry", "1")
    assert res.code == 0, res
    # its progress shows this retry, not a replay of the failed first try
    assert "failed" not in res.out and re.search(r"\bgate\s+succeeded$", res.out, re.M), res.out
    second = tp.status(1)
    assert second["state"] == "succeeded"
    assert second["run_id"] == 1
    assert len(tp.ok("runs", "--json").json()) == 1  # in place: no new run
    assert set(states(second).values()) == {"succeeded"}
    after = tasks_by_name(second)
    # Succeeded task runs keep their attempts, times and results.
    for name in ("produce", "side"):
        assert after[name] == before[name], name
    assert after["gate"]["attempts"] == 2 and after["gate"]["error"] is None
    assert after["gate"]["exit_code"] == 0
    assert after["consume"]["attempts"] == 1 and after["consume"]["result"] == 84
    # each attempt has its own log
    assert tp.ok("logs", "1", "gate", "--attempt", "1").out == "gate\n"
    assert tp.ok("logs", "1", "gate", "--attempt", "2").out == "gate\n"
    # after_all had succeeded (all_done): it keeps its single attempt
    assert after["after_all"]["attempts"] == 1

    # a succeeded run has nothing left to rerun: refused, and it stays exactly as it was
    res = tp("retry", "1")
    assert res.code == 2, res
    assert res.err == "taskplan: run 1 already succeeded, nothing to retry\n", res
    assert tp.status(1) == second


def test_end_summary_lists_every_failed_task_run_and_nothing_else(tp: Taskplan) -> None:
    tp.write("items.yaml", """
        job: items
        tasks:
          each:
            foreach:
              values: [1, 2, 3, 4]
            shell: 'test {{ item }} -ne 2 && test {{ item }} -ne 4'
          lone:
            shell: 'exit 3'
          fine:
            shell: 'true'
    """)
    res = tp("run", "items.yaml")
    assert res.code == 1, res
    summary = res.out.splitlines()
    start = next(i for i, line in enumerate(summary) if line.startswith("run 1 (items v1)"))
    assert summary[start].endswith(": 4 failed, 3 succeeded"), res.out
    # The foreach parent, then its failed items by index, then the other failed task; the
    # succeeded items and tasks have no line.
    assert [line.split(" after ")[0] for line in summary[start + 1:]] == [
        "  failed: each", "  failed: each[1]", "  failed: each[3]", "  failed: lone"], res.out
    assert summary[start + 1] == "  failed: each after 1 attempt(s): items: 2 failed", res.out
    assert summary[-1] == "  failed: lone after 1 attempt(s): exit code 3", res.out
    # On the pipe, items are named by index too (as `logs --item` takes them).
    assert re.search(r"\beach\[1\]\s+failed", res.out), res.out
    assert not re.search(r"\beach\[4\]", res.out), res.out


def test_detach_prints_only_the_run_id(tp: Taskplan) -> None:
    tp.write("d.yaml", """
        job: detached
        tasks:
          a: {shell: echo a}
    """)
    first = tp("run", "d.yaml", "--detach")
    assert first.code == 0 and re.fullmatch(r"\d+\n", first.out), first
    second = tp("run", "detached", "--detach")
    assert second.code == 0 and re.fullmatch(r"\d+\n", second.out), second
    assert int(second.out) == int(first.out) + 1
    runs = tp.ok("runs", "--json").json()
    # newest first; nothing executed them, so they wait for an agent
    assert [r["run_id"] for r in runs] == [int(second.out), int(first.out)]
    assert {r["state"] for r in runs} <= {"queued", "running"}
    assert states(tp.status(int(first.out))) == {"a": "ready"}


def test_logs_follow_streams_until_the_attempt_ends(tp: Taskplan) -> None:
    tp.write("f.yaml", """
        job: follow
        tasks:
          talk:
            shell: |
              echo line-1
              touch started
              while [ ! -f go ]; do sleep 0.05; done
              echo line-2
              echo line-3
    """)
    runner = tp.popen("run", "f.yaml")
    tp.wait_file("started", proc=runner)
    tp.wait_for(1, lambda s: states(s)["talk"] == "running", proc=runner)
    follower = tp.popen("logs", "1", "talk", "--follow")
    assert follower.poll() is None
    (tp.home / "go").write_text("")
    followed = finish(follower)
    assert followed.code == 0, followed
    assert followed.out == "line-1\nline-2\nline-3\n"
    run = finish(runner)
    assert run.code == 0, run
    # logs of a finished attempt without --follow print the same text
    assert tp.ok("logs", "1", "talk").out == followed.out
    # unknown task of a known run: bad input
    res = tp("logs", "1", "nope")
    assert res.code == 2 and "nope" in res.err and len(res.err.splitlines()) == 1


def test_logs_follow_ends_when_its_reader_goes_away(tp: Taskplan) -> None:
    # `logs --follow | head -1`: once the reader has gone, following is pointless, as for
    # `tail -f | head`; the task itself keeps running until told to stop.
    tp.write("chat.yaml", """
        job: chat
        tasks:
          talk:
            shell: |
              touch started
              while [ ! -f go ]; do echo tick; sleep 0.1; done
    """)
    runner = tp.popen("run", "chat.yaml")
    tp.wait_file("started", proc=runner)
    tp.wait_for(1, lambda s: states(s)["talk"] == "running", proc=runner)
    follower = tp.popen("logs", "1", "talk", "--follow")
    assert follower.stdout is not None
    assert follower.stdout.readline() == "tick\n"
    follower.stdout.close()  # the reader goes away
    assert follower.wait(timeout=30) == 0  # ... and so does the follower, task still running
    assert states(tp.status(1))["talk"] == "running"
    (tp.home / "go").write_text("")
    assert finish(runner).code == 0


def test_purge_deletes_only_finished_runs_past_retention(tp: Taskplan) -> None:
    tp.write("p.yaml", """
        job: purgeable
        tasks:
          a: {shell: echo a}
    """)
    tp.ok("run", "p.yaml")  # run 1 finishes
    tp.ok("run", "purgeable", "--detach")  # run 2 stays unfinished
    counts = tp.ok("status", "--json").json()
    assert counts["runs"] == {"succeeded": 1, "running": 1}, counts
    assert counts["active_task_runs"] == {"ready": 1}, counts
    res = tp.ok("purge", "--older-than", "90d")
    assert re.search(r"\b0 run", res.out), res.out
    assert [r["run_id"] for r in tp.ok("runs", "--json").json()] == [2, 1]
    res = tp.ok("purge", "--older-than", "1ms", "--dry-run")
    assert res.out == "would purge 1 run(s): 1\n", res.out
    assert [r["run_id"] for r in tp.ok("runs", "--json").json()] == [2, 1]
    res = tp.ok("purge", "--older-than", "1ms")
    assert re.search(r"\b1 run", res.out), res.out
    assert [r["run_id"] for r in tp.ok("runs", "--json").json()] == [2]
    gone = tp("logs", "1", "a")
    assert gone.code == 2 and "1" in gone.err
    bad = tp("purge", "--older-than", "soon")
    assert bad.code == 2 and len(bad.err.splitlines()) == 1


def test_a_purged_run_id_is_never_given_again(tp: Taskplan) -> None:
    tp.write("p.yaml", """
        job: purgeable
        tasks:
          a: {shell: echo a}
    """)
    tp.ok("run", "p.yaml")
    tp.ok("run", "p.yaml")
    res = tp.ok("purge", "--older-than", "1ms")
    assert re.search(r"\b2 run", res.out), res.out
    assert tp.ok("runs", "--json").json() == []
    assert tp.ok("run", "purgeable", "--detach").out.strip() == "3"  # not 1 again


def test_live_progress_on_a_terminal(tp: Taskplan) -> None:
    """On a terminal `run` draws a live panel instead of plain lines, and still exits 0/1."""
    tp.write("tty.yaml", """
        job: on-a-tty
        tasks:
          ok: {shell: echo fine}
          broken: {shell: exit 3}
    """)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(tp.argv(("run", "tty.yaml"), True), cwd=tp.home,
                            env=clean_env({"COLUMNS": "100", "TERM": "xterm"}),
                            stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=60) == 1
    screen = b"".join(chunks).decode(errors="replace")
    assert "on-a-tty" in screen and "2/2 done" in screen, screen
    assert "broken" in screen and "exit code 3" in screen, screen
    assert re.search(r"run 1 \(on-a-tty v1\) failed", screen), screen
    assert states(tp.status(1)) == {"ok": "succeeded", "broken": "failed"}


def test_status_rows_say_their_kind(tp: Taskplan) -> None:
    tp.write("child.yaml", """
        job: child
        tasks:
          work: {shell: "true"}
        """)
    tp.write("kinds.yaml", """
        job: kinds
        tasks:
          plain: {shell: "true"}
          each:
            foreach: {values: [1, 2, 3]}
            shell: 'test "$TASKPLAN_ITEM" != 2'
            depends_on: [plain]
          sub: {job: child}
        """)
    tp.ok("apply", "child.yaml")
    assert tp("run", "kinds.yaml").code == 1
    run_id = tp.ok("runs", "--job", "kinds", "--json").json()[0]["run_id"]
    rows = tp.status(run_id)["tasks"]
    # One group row and three item rows, told apart by kind and not by `item` being null.
    assert [(r["name"], r["kind"], r["item"]) for r in rows if r["name"] == "each"] == [
        ("each", "foreach", None), ("each", "item", 1), ("each", "item", 2), ("each", "item", 3)]
    by_kind = {r["kind"]: r for r in rows}
    assert by_kind["foreach"]["items"] == {"failed": 1, "succeeded": 2}
    assert "items" not in by_kind["item"] and "child_run_id" not in by_kind["item"]
    assert by_kind["task"]["name"] == "plain" and "items" not in by_kind["task"]
    child = by_kind["job"]["child_run_id"]
    assert isinstance(child, int) and tp.status(child)["job"] == "child"
    text = tp.ok("status", str(run_id)).out.splitlines()
    assert any(line.split()[:2] == ["each", "foreach"] and "items: 1 failed, 2 succeeded" in line
               for line in text), text
    assert any(line.split()[:3] == ["each[1]", "item", "failed"] for line in text), text
    assert any(line.split()[:2] == ["sub", "job"] and f"  child run {child} result" in line
               for line in text), text
    # A failed child's run is named once, not once by the row and again by the task's error.
    tp.write("child.yaml", 'job: child\ntasks: {c: {shell: "exit 4"}}\n')
    tp.ok("apply", "child.yaml")
    assert tp("run", "kinds").code == 1
    run_id = tp.ok("runs", "--job", "kinds", "--json").json()[0]["run_id"]
    child = {r["kind"]: r for r in tp.status(run_id)["tasks"]}["job"]["child_run_id"]
    text = tp.ok("status", str(run_id)).out.splitlines()
    assert any(line.split()[:3] == ["sub", "job", "failed"]
               and line.endswith(f"  child run {child} ended failed") for line in text), text


def test_a_folder_or_a_missing_file_is_refused_in_one_line(tp: Taskplan) -> None:
    (tp.home / "jobs").mkdir()
    folder = tp("run", "jobs")
    assert folder.code == 2 and folder.out == ""
    assert folder.err.splitlines() == [
        "taskplan: jobs: a folder, not a job file (run takes one job file or the name of an"
        " applied job)"]
    missing = tp("run", "nightly.yaml")
    assert missing.code == 2
    assert missing.err.splitlines() == ["taskplan: nightly.yaml: no such job file"]
    assert not tp.db_path.exists()  # nothing was created for either


def test_a_job_named_like_a_folder_beside_it_runs_by_its_name(tp: Taskplan) -> None:
    # The layout of examples/: nightly/nightly.yaml. `run nightly` from there was refused as
    # "a folder, not a job file" though the job was applied.
    tp.write("nightly/nightly.yaml", 'job: nightly\ntasks:\n  a: {shell: "true"}\n')
    tp.ok("apply", "nightly/nightly.yaml")
    assert tp.ok("run", "nightly").out.splitlines()[-1].startswith("run 1 (nightly v1)"
                                                                   " succeeded")
    assert tp.ok("run", "nightly", "--detach").out == "2\n"
    assert "nightly: makespan" in tp.ok("forecast", "nightly").out
    (tp.home / "other").mkdir()  # a folder that names no job is still said to be one
    res = tp("run", "other")
    assert (res.code, res.err) == (2, "taskplan: other: a folder, not a job file (run takes"
                                      " one job file or the name of an applied job)\n"), res


def test_params_typed_as_their_defaults_and_free_without_a_params_key(tp: Taskplan) -> None:
    tp.write("free.yaml", "job: free\ntasks:\n  a: {shell: [echo, '{{ params.x }}']}\n")
    tp.ok("run", "free.yaml", "--param", "x=anything")  # no params: key, nothing checked
    assert tp.ok("logs", "1", "a").out == "anything\n"
    tp.write("typed.yaml", """
        job: typed
        params: {n: 3, on: true, r: 2.5, name: x, tags: [a]}
        tasks:
          a:
            shell: [echo, "{{ params.n + 1 }} {{ params.on }} {{ params.r * 2 }}",
                    "{{ params.name }} {{ params.tags | length }}"]
    """)
    tp.ok("run", "typed.yaml", "--param", "n=7", "--param", "on=false", "--param", "r=3",
          "--param", "name=5", "--param", 'tags=["p", "q"]')
    assert tp.ok("logs", "2", "a").out == "8 false 6 5 2\n"  # as --param takes it
    # status shows them as --param takes them: `on=false` (Python's `on=False` is refused)
    assert tp.ok("status", "2").out.splitlines()[1] == (
        'params: n=7, name=5, on=false, r=3, tags=["p","q"]')
    for given, words in (("n=seven", "param 'n' takes a whole number, as its default 3 is;"
                                     " got 'seven'"),
                         ("on=False", "param 'on' takes true or false, as its default true"
                                      " is; got 'False'"),
                         ("r=NaN", "param 'r' takes a number, as its default 2.5 is; got"
                                   " 'NaN'")):
        res = tp("run", "typed.yaml", "--param", given)
        assert (res.code, res.err) == (2, f"taskplan: {words}\n"), res
    assert len(tp.ok("runs", "--json").json()) == 2  # the refused ones made no run
    # an expression that fails on a value of another type is a template error
    tp.write("texty.yaml", "job: texty\nparams: {n: '3'}\ntasks:\n"
             "  a: {shell: [echo, '{{ params.n + 1 }}']}\n")
    assert tp("run", "texty.yaml").code == 1
    error = "template error: TypeError: can only concatenate str (not \"int\") to str"
    assert tp.status(3)["tasks"][0]["error"] == error


def test_a_param_the_job_does_not_declare_is_refused(tp: Taskplan) -> None:
    # A misspelt --param would be kept and ignored by every template: refused, with a hint, by
    # run (a file: before the store is created; a name; --detach), forecast and backfill,
    # as the API refuses it.
    tp.write("pj.yaml", "job: pj\nparams: {day: \"2026-01-01\"}\n"
             "schedules:\n  - cron: \"0 2 * * *\"\ntasks:\n  a: {shell: \"true\"}\n")
    words = "unknown param 'dya' (the job declares: day); did you mean 'day'?"
    res = tp("run", "pj.yaml", "--param", "dya=2026-02-03")
    assert (res.code, res.err.strip()) == (2, f"taskplan: {words}"), res
    assert not tp.db_path.exists()
    tp.ok("apply", "pj.yaml")
    for args in (("run", "pj", "--param", "dya=1"), ("run", "pj", "--param", "dya=1", "--detach"),
                 ("forecast", "pj", "--param", "dya=1"),
                 ("backfill", "pj", "--from", "2026-01-01", "--to", "2026-01-02",
                  "--param", "dya=1")):
        res = tp(*args)
        assert (res.code, res.err.strip()) == (2, f"taskplan: {words}"), (args, res)
    assert tp.ok("runs", "--json").json() == []
    assert tp.ok("run", "pj", "--param", "day=2026-02-03").code == 0


def test_a_param_given_twice_is_refused(tp: Taskplan) -> None:
    # The last one won without a word, whatever the first said.
    tp.write("pj.yaml", "job: pj\nparams: {day: \"2026-01-01\"}\ntasks:\n  a: {shell: \"true\"}\n")
    res = tp("run", "pj.yaml", "--param", "day=2026-02-03", "--param", "day=2026-02-04")
    assert (res.code, res.out, res.err) == (
        2, "", "taskplan: --param day is given twice (day=2026-02-03 and day=2026-02-04);"
        " give it once\n"), res
    assert not tp.db_path.exists()


def test_an_argument_that_is_not_utf8_is_refused_in_one_line(tp: Taskplan) -> None:
    # Bytes that are not UTF-8 (a Latin-1 terminal) reached the store as lone surrogates:
    # `run caf\xe9` and `logs 1 caf\xe9` died with a UnicodeEncodeError.
    tp.write("p.yaml", "job: p\nparams: {day: x}\ntasks:\n  a: {shell: \"true\"}\n")
    bad = os.fsdecode(b"caf\xe9")
    for args in (("run", bad), ("run", "p.yaml", "--param", f"day={bad}"), ("logs", "1", bad)):
        res = tp(*args)
        shown = repr(args[-1])
        assert (res.code, res.out, res.err) == (
            2, "", f"taskplan: argument {shown} is not UTF-8 text (names, paths and values"
            " must be)\n"), (args, res)
    assert not tp.db_path.exists()


def test_a_foreground_run_lacking_a_child_jobs_labels_is_refused_before_it_starts(
        tp: Taskplan) -> None:
    # A child run is pinned to its parent's agent: a child task needing a label this process
    # lacked waited there forever, without a word, while the parent's own were checked.
    tp.write("kid.yaml", 'job: kid\nagent_labels: [gpu]\ntasks:\n  k: {shell: "true"}\n')
    tp.write("mid.yaml", "job: mid\ntasks:\n  m: {job: kid}\n")
    tp.write("top.yaml", "job: top\ntasks:\n  t: {job: mid}\n")
    tp.ok("apply", "kid.yaml", "mid.yaml")
    res = tp("run", "top.yaml")
    assert (res.code, res.out) == (2, ""), res
    assert res.err.startswith("taskplan: task k of job kid needs agent label(s) gpu, which this"
                              " process lacks (it has host="), res
    assert tp.ok("runs", "--json").json() == []
    assert tp.ok("run", "top", "--labels", "gpu").code == 0
