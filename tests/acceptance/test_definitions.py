"""validate, apply and jobs: bad files are reported with file:line:col and never half-load."""

from __future__ import annotations

import re

from acceptance_helpers import Taskplan

GOOD = """
    job: good
    tasks:
      a:
        shell: echo a
      b:
        depends_on: [a]
        shell: echo b
"""

# One file per error case: (file name, text, a regex the file's error line must match).
BAD_FILES = {
    "unknown_key.yaml": ("""
        job: unknown-key
        tasks:
          a:
            shell: echo a
            colour: red
        """, r"^unknown_key\.yaml:5:5: .*unknown key 'colour'"),
    "no_kind.yaml": ("""
        job: no-kind
        tasks:
          a:
            retries: 1
        """, r"^no_kind\.yaml:3:3: .*expected exactly one of .*found none"),
    "two_kinds.yaml": ("""
        job: two-kinds
        tasks:
          a:
            shell: echo a
            python: mod:fn
        """, r"^two_kinds\.yaml:\d+:\d+: .*found both shell and python"),
    "unknown_dep.yaml": ("""
        job: unknown-dep
        tasks:
          a:
            depends_on: [nope]
            shell: echo a
        """, r"^unknown_dep\.yaml:4:18: .*unknown task 'nope'"),
    "cycle.yaml": ("""
        job: cycle
        tasks:
          a:
            depends_on: [b]
            shell: echo a
          b:
            depends_on: [a]
            shell: echo b
          c:
            shell: echo c
        """, r"^cycle\.yaml:\d+:\d+: .*cycle.*\b(a -> b -> a|b -> a -> b)\b"),
    "duplicate.yaml": ("""
        job: duplicate
        tasks:
          a:
            shell: echo a
          a:
            shell: echo again
        """, r"^duplicate\.yaml:5:3: .*duplicate .*'a'"),
    "bad_duration.yaml": ("""
        job: bad-duration
        tasks:
          a:
            timeout: 5 parsecs
            shell: echo a
        """, r"^bad_duration\.yaml:4:\d+: .*timeout.*'5 parsecs'"),
    "bad_job_name.yaml": ("""
        job: Bad Name
        tasks:
          a:
            shell: echo a
        """, r"^bad_job_name\.yaml:1:6: .*job name.*'Bad Name'"),
    "bad_task_name.yaml": ("""
        job: bad-task-name
        tasks:
          "x y":
            shell: echo a
        """, r"^bad_task_name\.yaml:3:3: .*task name.*'x y'"),
}


def test_validate_good_file(tp: Taskplan) -> None:
    tp.write("good.yaml", GOOD)
    res = tp.ok("validate", "good.yaml", db=False)
    assert res.err == ""
    # validate never touches a store.
    assert not tp.db_path.exists()


def test_validate_reports_every_error_with_file_line_col(tp: Taskplan) -> None:
    for name, (text, _) in BAD_FILES.items():
        tp.write(name, text)
    tp.write("good.yaml", GOOD)
    res = tp("validate", "good.yaml", *BAD_FILES, db=False)
    assert res.code == 2, res
    lines = res.err.splitlines()
    for name, (_, pattern) in BAD_FILES.items():
        hits = [ln for ln in lines if re.search(pattern, ln)]
        assert hits, f"{name}: no line matching {pattern!r} in\n{res.err}"
    # Every problem is one line naming its file:line:col (a last line may count them).
    located = [ln for ln in lines if re.match(r"^[\w.]+\.yaml:\d+:\d+: ", ln)]
    assert not [ln for ln in located if ln.startswith("good.yaml")]
    assert {ln.split(":", 1)[0] for ln in located} == set(BAD_FILES)
    assert len(lines) - len(located) <= 1, res.err


def test_validate_cycle_prints_the_path(tp: Taskplan) -> None:
    tp.write("loop.yaml", """
        job: loop
        tasks:
          x: {shell: echo, depends_on: [z]}
          y: {shell: echo, depends_on: [x]}
          z: {shell: echo, depends_on: [y]}
    """)
    res = tp("validate", "loop.yaml", db=False)
    assert res.code == 2
    path = re.search(r"cycle: ([a-z]( -> [a-z])+)", res.err)
    assert path, res.err
    names = path.group(1).split(" -> ")
    assert names[0] == names[-1] and sorted(names[:-1]) == ["x", "y", "z"], names


def test_apply_bad_file_stores_nothing(tp: Taskplan) -> None:
    """apply of two files where the second is bad stores neither, and exits 2."""
    tp.write("good.yaml", GOOD)
    text, _ = BAD_FILES["cycle.yaml"]
    tp.write("bad.yaml", text)
    res = tp("apply", "good.yaml", "bad.yaml")
    assert res.code == 2, res
    assert res.out == ""
    assert re.search(r"^bad\.yaml:\d+:\d+: ", res.err, re.M), res.err
    assert not tp.db_path.exists()  # not even an empty store
    # a run of the good job by name does not exist either
    res = tp("run", "good")
    assert res.code == 2 and "good" in res.err and len(res.err.strip().splitlines()) == 1
    assert not tp.db_path.exists()


def test_jobs_starting_each_other_across_files_are_refused_at_the_job_task(tp: Taskplan
                                                                           ) -> None:
    tp.write("ra.yaml", "job: ra\ntasks:\n  x:\n    job: rb\n")
    tp.write("rb.yaml", "job: rb\ntasks:\n  y:\n    job: rc\n")
    tp.write("rc.yaml", "job: rc\ntasks:\n  z:\n    job: ra\n")
    res = tp("validate", "rb.yaml", "rc.yaml", "ra.yaml", db=False)
    assert res.code == 2
    assert res.err.splitlines()[0] == "ra.yaml:4:10: tasks.x.job: job cycle: ra -> rb -> rc -> ra"
    res = tp("apply", "ra.yaml", "rb.yaml", "rc.yaml")
    assert res.code == 2 and res.out == "", res
    assert not tp.db_path.exists()


def test_a_cycle_through_a_stored_job_stores_nothing_of_the_command(tp: Taskplan) -> None:
    """rb (stored) starts ra; applying ra starting rb, with another job, stores neither."""
    tp.write("ra.yaml", "job: ra\ntasks:\n  x: {shell: 'true'}\n")
    tp.write("rb.yaml", "job: rb\ntasks:\n  y: {job: ra}\n")
    tp.ok("apply", "ra.yaml", "rb.yaml")
    tp.write("other.yaml", "job: other\ntasks:\n  o: {shell: 'true'}\n")
    tp.write("ra.yaml", "job: ra\ntasks:\n  x: {job: rb}\n")
    for dry in ([], ["--dry-run"]):
        res = tp("apply", *dry, "other.yaml", "ra.yaml")
        assert res.code == 2 and res.out == "", res
        assert res.err.strip() == "taskplan: job cycle: ra -> rb -> ra"
    jobs = tp.ok("jobs", "--json").json()
    assert sorted((j["job"], j["version"]) for j in jobs) == [("ra", 1), ("rb", 1)]


def test_jobs_whose_triggers_wait_for_each_other_are_refused(tp: Taskplan) -> None:
    """q after r, r after q: applied, the first run of either started the other, for ever
    (a thousand runs in four seconds). Refused like a job after itself, in files and through
    a stored job."""
    tp.write("q.yaml", "job: q\ntriggers:\n  - after: r\ntasks:\n  t: {shell: 'true'}\n")
    tp.write("r.yaml", "job: r\ntriggers:\n  - after: [x, q]\ntasks:\n  t: {shell: 'true'}\n")
    tp.write("x.yaml", "job: x\ntasks:\n  t: {shell: 'true'}\n")
    res = tp("validate", "r.yaml", "q.yaml", "x.yaml", db=False)
    assert res.code == 2
    assert res.err.splitlines()[0] == ("q.yaml:3:12: triggers[0].after[0]: trigger cycle:"
                                       " q after r after q (each run of one would start the"
                                       " next, for ever)")
    res = tp("apply", "q.yaml", "r.yaml", "x.yaml")
    assert res.code == 2 and res.out == "", res
    assert not tp.db_path.exists()
    tp.write("r.yaml", "job: r\ntriggers:\n  - after: [x]\ntasks:\n  t: {shell: 'true'}\n")
    tp.ok("apply", "q.yaml", "r.yaml", "x.yaml")
    tp.write("r.yaml", "job: r\ntriggers:\n  - after: [x, q]\ntasks:\n  t: {shell: 'true'}\n")
    res = tp("apply", "r.yaml")
    assert res.code == 2 and res.out == "", res
    assert res.err.strip() == ("taskplan: trigger cycle: r after q after r (each run of one"
                               " would start the next, for ever)")
    jobs = tp.ok("jobs", "--json").json()
    assert [t["after"] for j in jobs if j["job"] == "r" for t in j["triggers"]] == [["x"]]


def test_a_job_task_giving_a_param_its_child_does_not_declare(tp: Taskplan) -> None:
    """`params: {dya: ...}` for a child declaring `day` was valid, and every run's job task
    failed (`unknown param 'dya'`). With the child in the same command it is refused at the
    param; with the child already stored, apply warns."""
    tp.write("child.yaml", "job: child\nparams: {day: x, n: 1}\ntasks:\n  t: {shell: 'true'}\n")
    tp.write("parent.yaml", "job: parent\ntasks:\n  call:\n    job: child\n"
                            "    params: {dya: '2026-01-01', n: two}\n")
    res = tp("validate", "parent.yaml", "child.yaml", db=False)
    assert res.code == 2
    assert res.err.splitlines()[:2] == [
        "parent.yaml:5:19: tasks.call.params.dya: job 'child' declares no param 'dya'; did you"
        " mean 'day'? (it declares: day, n)",
        "parent.yaml:5:36: tasks.call.params.n: param 'n' takes a whole number, as its default"
        " 1 is; got 'two'"], res.err
    tp.ok("apply", "child.yaml")
    res = tp("apply", "parent.yaml")
    assert res.code == 0, res
    assert "warning: parent: tasks.call.params.dya: job 'child' declares no param 'dya'" \
        in res.err, res.err


def test_apply_versions_only_on_change_and_runs_pin_their_version(tp: Taskplan) -> None:
    tp.write("jobs/good.yaml", GOOD)
    tp.write("jobs/other.yml", """
        job: other
        tasks:
          t: {shell: echo other}
    """)
    res = tp.ok("apply", "jobs")  # a folder
    assert "good: version 1" in res.out and "other: version 1" in res.out

    res = tp.ok("apply", "jobs/good.yaml")
    assert "version 1" in res.out and "new" not in res.out

    run1 = tp.ok("run", "good", "--detach").out.strip()

    tp.write("jobs/good.yaml", GOOD.replace("echo b", "echo bee"))
    res = tp.ok("apply", "jobs/good.yaml")
    assert "version 2 (new)" in res.out

    jobs = {j["job"]: j for j in tp.ok("jobs", "--json").json()}
    assert jobs["good"]["version"] == 2
    assert jobs["other"]["version"] == 1
    assert jobs["good"]["last_run_id"] == int(run1)
    assert jobs["other"]["last_run_id"] is None

    # `run FILE` applies the file first: unchanged file, same version 2.
    run2 = tp.ok("run", "jobs/good.yaml", "--detach").out.strip()
    runs = {r["run_id"]: r for r in tp.ok("runs", "--json", "--job", "good").json()}
    assert runs[int(run1)]["version"] == 1
    assert runs[int(run2)]["version"] == 2
    # the first run still shows the version it was created with
    assert tp.status(run1)["version"] == 1


def test_a_file_that_is_not_utf8_is_refused_at_its_first_bad_byte(tp: Taskplan) -> None:
    (tp.home / "latin1.yaml").write_bytes(
        b'job: x\ntasks:\n  a:\n    shell: "echo \xff\xfe caf\xe9"\n')
    expected = ("latin1.yaml:4:18: not UTF-8 text (byte 0xff: invalid start byte; "
                "save the file as UTF-8)")
    for command in ("validate", "apply", "run"):
        res = tp(command, "latin1.yaml")
        assert res.code == 2, res
        assert res.err.splitlines()[0] == expected, res.err
    # The column counts characters, not bytes: the two before the bad byte take five bytes.
    (tp.home / "accent.yaml").write_bytes(b"job: x\n# " + "é€".encode() + b" \xe9\n")
    res = tp("validate", "accent.yaml")
    assert res.err.startswith("accent.yaml:2:6: not UTF-8 text (byte 0xe9"), res.err
    assert not tp.db_path.exists()


def test_a_file_given_twice_is_one_file(tp: Taskplan) -> None:
    tp.write("jobs/sched.yaml", GOOD)
    tp.write("jobs/other.yaml", GOOD.replace("job: good", "job: other"))
    (tp.home / "link.yaml").symlink_to(tp.home / "jobs" / "sched.yaml")
    assert tp.ok("validate", "jobs/sched.yaml", "jobs/sched.yaml", db=False).out == "ok\n"
    assert tp.ok("validate", "jobs", "./jobs/../jobs/sched.yaml", "link.yaml").out == "ok\n"
    out = tp.ok("apply", "jobs", "jobs/sched.yaml").out
    assert sorted(out.splitlines()) == ["good: version 1 (new)", "other: version 1 (new)"]
    # Two files defining one job are still refused.
    tp.write("copy.yaml", GOOD)
    res = tp("validate", "jobs", "copy.yaml")
    assert res.code == 2 and "is already defined in jobs/sched.yaml" in res.err, res


def test_run_next_and_forecast_of_a_file_that_defines_no_job_say_what_it_is(tp: Taskplan
                                                                         ) -> None:
    # A connections file given to `run` exited 2 without a word.
    tp.write("conns.yaml", 'connections:\n  db: "sqlite:///x.db"\n')
    tp.write("cal.yaml", "calendar: cal\nweekends: [sat, sun]\n")
    for args in (("run", "conns.yaml"), ("next", "conns.yaml"), ("forecast", "conns.yaml")):
        res = tp(*args)
        assert (res.code, res.out, res.err) == (
            2, "", "conns.yaml:1:1: this file defines shared connections, not a job (apply it"
            " with taskplan apply)\n"), (args, res)
    res = tp("run", "cal.yaml")
    assert (res.code, res.err) == (2, "cal.yaml:1:1: this file defines a calendar, not a job"
                                      " (apply it with taskplan apply)\n"), res
    assert not tp.db_path.exists()


def test_apply_warns_of_a_trigger_or_job_task_naming_no_job(tp: Taskplan) -> None:
    """Legal (the job may come later), but most often a typo: a trigger waiting for ever."""
    tp.write("up.yaml", "job: up\ntasks:\n  a: {shell: 'true'}\n")
    tp.write("down.yaml", "job: down\ntriggers:\n  - after: [upp]\ntasks:\n"
             "  b: {shell: 'true'}\n  c: {job: uup}\n")
    res = tp.ok("apply", "up.yaml", "down.yaml")
    assert res.out == "up: version 1 (new)\ndown: version 1 (new)\n"
    assert res.err.splitlines() == [
        "warning: down: triggers[0].after 'upp' names no job yet (did you mean 'up'?)",
        "warning: down: tasks.c.job 'uup' names no job yet (did you mean 'up'?)"]
    tp.write("uup.yaml", "job: uup\ntasks:\n  a: {shell: 'true'}\n")
    tp.write("upp.yaml", "job: upp\ntasks:\n  a: {shell: 'true'}\n")
    assert tp.ok("apply", "upp.yaml", "uup.yaml", "down.yaml").err == ""
