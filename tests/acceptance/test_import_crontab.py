"""`taskplan import crontab` from outside: files written, applied, and an imported entry run
with cron's `%` standard input and environment lines."""

from __future__ import annotations

import os

from acceptance_helpers import Taskplan


def test_a_crontab_imported_applied_and_run(tp: Taskplan) -> None:
    tp.write("my.cron", """
        # comment
        MAILTO=ops@example.com
        GREETING = "hello there"
        CRON_TZ=Europe/Paris
        15 6 * * 1-5 echo "$GREETING"; cat -n%first line%second \\% line
        @reboot /usr/bin/start-thing
        """)
    res = tp.ok("import", "crontab", "my.cron", "--out", "jobs", "--apply", "--json")
    rows = res.json()
    assert [r["job"] for r in rows] == ["echo_greeting", None]
    assert rows[0]["version"] == 1 and rows[0]["file"] == "jobs/echo_greeting.yaml"
    assert any("MAILTO" in n for n in rows[0]["not_expressed"])
    assert any("@reboot" in n for n in rows[1]["not_expressed"])
    tp.ok("validate", "jobs/echo_greeting.yaml")
    nxt = tp.ok("next", "echo_greeting", "-n", "1", "--after", "2030-01-04T12:00",
                "--json").json()
    assert nxt == [{"at": "2030-01-07T06:15:00+01:00", "schedule": 0}]
    tp.ok("run", "echo_greeting")
    log = tp.ok("logs", "1", "run").out
    assert log.splitlines()[:3] == ["hello there", "     1\tfirst line", "     2\tsecond % line"]


def test_a_system_crontab_has_a_user_field(tp: Taskplan) -> None:
    tp.write("sys.cron", """
        17 * * * * root cd / && run-parts --report /etc/cron.hourly
        @daily backup /usr/local/bin/dump.sh
        """)
    rows = tp.ok("import", "crontab", "sys.cron", "--system", "--out", "jobs", "--json").json()
    assert [r["job"] for r in rows] == ["run-parts_report_etc_cron_hourly", "dump_sh"]
    assert "as root" in rows[0]["not_expressed"][0]
    assert "user 'backup'" in rows[1]["not_expressed"][0]
    text = (tp.home / "jobs" / "dump_sh.yaml").read_text()
    assert 'shell: |-\n      cd "$HOME" || exit 1\n      /usr/local/bin/dump.sh\n' in text


def test_a_crontab_is_read_with_the_bounds_of_a_job_file(tp: Taskplan) -> None:
    os.mkfifo(tp.home / "pipe.cron")  # nothing ever writes to it: reading it would hang
    (tp.home / "latin1.cron").write_bytes(b"0 2 * * * echo caf\xe9\n")
    expected = {
        "/dev/zero": "/dev/zero:1:1: cannot import the crontab: not a regular file"
                     " (a character device)",
        "pipe.cron": "pipe.cron:1:1: cannot import the crontab: not a regular file"
                     " (a named pipe)",
        "latin1.cron": "latin1.cron:1:19: cannot import the crontab: not UTF-8 text (byte 0xe9",
    }
    for name, message in expected.items():
        res = tp("import", "crontab", name, "--out", "jobs", "--apply", timeout=20)
        assert (res.code, res.out) == (2, ""), res
        assert res.err.startswith(f"taskplan: {message}") and res.err.count("\n") == 1, res
    assert not (tp.home / "jobs").exists() and not tp.db_path.exists()


def test_cron_input_ends_as_cron_ends_it(tp: Taskplan) -> None:
    # cron writes a final newline only when the text after % lacks one
    tp.write("in.cron", """
        0 1 * * * cat -A%line one%line two%
        0 2 * * * cat -A -n%line one%a \\\\%b
        """)
    rows = tp.ok("import", "crontab", "in.cron", "--out", "jobs", "--apply", "--json").json()
    assert [r["job"] for r in rows] == ["cat_a", "cat_a_n"]
    tp.ok("run", "cat_a")
    assert tp.ok("logs", "1", "run").out.splitlines() == ["line one$", "line two$"]
    tp.ok("run", "cat_a_n")
    assert tp.ok("logs", "2", "run").out.splitlines() == [
        "     1\tline one$", "     2\ta \\%b$"]


def test_an_import_that_cannot_write_leaves_nothing(tp: Taskplan) -> None:
    tp.write("one.cron", "0 1 * * * echo hi\n")
    res = tp("import", "crontab", "one.cron", "--timezone", "Nowhere/Zone", "--out", "out")
    assert (res.code, res.out) == (2, ""), res
    assert res.err == ("taskplan: import crontab: --timezone 'Nowhere/Zone' is not an IANA"
                       " time zone name\n")
    # nothing to write: no file, no empty folder
    tp.write("boot.cron", "@reboot /usr/bin/start-thing\nCRON_TZ=Nowhere/Zone\n0 1 * * * x\n")
    res = tp.ok("import", "crontab", "boot.cron", "--out", "out")
    assert "boot.cron:2: CRON_TZ 'Nowhere/Zone' is not an IANA time zone name" in res.out
    assert res.out.splitlines()[-1] == "no job file written (out left as it was)"
    assert not (tp.home / "out").exists() and not tp.db_path.exists()


def test_lines_end_at_newlines_only(tp: Taskplan) -> None:
    # cron splits a crontab at newlines alone: a form feed or U+2028 is part of its line
    (tp.home / "ff.cron").write_text(
        "# page\x0cbreak: still the comment\n"
        f"0 1 * * * echo 'a\x0cb' 'c\u2028d' > {tp.home}/out.txt\n"
        "nonsense\n", encoding="utf-8")
    rows = tp.ok("import", "crontab", "ff.cron", "--out", "jobs", "--apply", "--json").json()
    assert [r["source"].split(": ")[0] for r in rows] == ["ff.cron:2", "ff.cron:3"]
    assert rows[0]["not_expressed"] == [] and rows[1]["job"] is None
    tp.ok("validate", rows[0]["file"])
    tp.ok("run", rows[0]["job"])
    assert (tp.home / "out.txt").read_text(encoding="utf-8") == "a\x0cb c\u2028d\n"


def test_what_cron_refuses_is_not_imported(tp: Taskplan) -> None:
    tp.write("odd.cron", """
        0 0 L * * echo last-day
        0 0 * * 1#2 echo second-monday
        5/10 * * * * echo from-five
        @DAILY echo shouting
        0 10 * * FRI-SUN echo weekend
        """)
    rows = tp.ok("import", "crontab", "odd.cron", "--out", "jobs", "--json").json()
    assert [r["job"] for r in rows] == [None, None, None, None, "echo_weekend"]
    assert [r["not_expressed"][0] for r in rows[:4]] == [
        "cron does not accept 'L' in the day-of-month field 'L': not imported",
        "cron does not accept '1#2' in the day-of-week field '1#2': not imported",
        "cron does not accept '5/10' in the minute field '5/10': not imported",
        "unknown cron macro @DAILY (expected @reboot or one of @yearly, @annually, @monthly,"
        " @weekly, @daily, @midnight, @hourly): not imported"]
    # cronie reads a day-of-week range ending on Sunday (0) up to 7: Friday to Sunday
    nxt = tp.ok("next", "jobs/echo_weekend.yaml", "-n", "4", "--after", "2030-01-01T00:00",
                "--json").json()
    assert [n["at"][:10] for n in nxt] == ["2030-01-04", "2030-01-05", "2030-01-06",
                                           "2030-01-11"]


def test_a_time_in_the_spring_forward_gap_is_shifted_by_the_gap(tp: Taskplan) -> None:
    # Not cron's way (cron runs the gap's fixed times at once when the clocks jump, 03:00):
    # docs/migrating.md says so. Paris jumps from 02:00 to 03:00 on 31 March 2030.
    tp.write("dst.cron", """
        CRON_TZ=Europe/Paris
        30 2 * * * echo half-past-two
        15 2,3 * * * echo quarter-past
        """)
    tp.ok("import", "crontab", "dst.cron", "--out", "jobs")
    after = ("--after", "2030-03-30T12:00", "--json")
    nxt = tp.ok("next", "jobs/echo_half-past-two.yaml", "-n", "2", *after).json()
    assert [n["at"] for n in nxt] == ["2030-03-31T03:30:00+02:00", "2030-04-01T02:30:00+02:00"]
    nxt = tp.ok("next", "jobs/echo_quarter-past.yaml", "-n", "2", *after).json()
    assert [n["at"] for n in nxt] == ["2030-03-31T03:15:00+02:00", "2030-04-01T02:15:00+02:00"]


def test_an_entry_runs_in_home_as_cron_runs_it(tp: Taskplan) -> None:
    # cron runs a command in $HOME (the owner's, or a HOME line's), so relative paths work
    home = tp.home / "h"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "tool.sh").write_text("#!/bin/sh\npwd > where.txt\n")
    (home / "bin" / "tool.sh").chmod(0o755)
    tp.write("home.cron", f"""
        HOME={home}
        0 1 * * * bin/tool.sh
        """)
    tp.ok("import", "crontab", "home.cron", "--out", "jobs", "--apply")
    tp.ok("run", "tool_sh")
    assert (home / "where.txt").read_text() == f"{home}\n"
    # a HOME cron cannot go to fails the entry, as in cron
    tp.write("gone.cron", "HOME=/nonexistent/home\n0 1 * * * true\n")
    tp.ok("import", "crontab", "gone.cron", "--out", "jobs", "--apply")
    assert tp("run", "true").code == 1


def test_a_sixth_time_field_is_refused_as_cron_refuses_it(tp: Taskplan) -> None:
    # seconds first, as in Quartz: every field would shift and `*` become the command, a
    # pattern the shell expands to the first file in the folder
    tp.write("six.cron", """
        0 */5 * * * * /usr/local/bin/backup.sh
        @daily *.sh
        """)
    rows = tp.ok("import", "crontab", "six.cron", "--out", "jobs", "--json").json()
    assert [r["job"] for r in rows] == [None, None]
    assert all("starts with '*', which cron refuses" in r["not_expressed"][0] for r in rows)
    assert not (tp.home / "jobs").exists()


def test_an_entry_without_a_zone_says_when_cron_ran_it_in_another(tp: Taskplan) -> None:
    # cron runs entries without CRON_TZ in its machine's local time; taskplan in its own zone
    tp.write("z.cron", """
        0 2 * * * echo local
        CRON_TZ=Asia/Tokyo
        0 3 * * * echo tokyo
        """)
    paris = {"TZ": "Europe/Paris"}
    rows = tp.ok("import", "crontab", "z.cron", "--out", "jobs", "--json", env=paris).json()
    assert rows[0]["not_expressed"] == [
        "cron ran it in its machine's local time (Europe/Paris here); written without"
        " timezone:, it runs in taskplan's zone UTC: give --timezone Europe/Paris (or CRON_TZ)"
        " if the crontab is from this machine"]
    assert rows[1]["not_expressed"] == []
    # the same zone, or --timezone: nothing to say
    for env, args in (({"TZ": "Etc/UTC"}, ()), (paris, ("--timezone", "Europe/Paris"))):
        rows = tp.ok("import", "crontab", "z.cron", "--out", "jobs", "--json", *args,
                     env=env).json()
        assert [r["not_expressed"] for r in rows] == [[], []]


def test_files_that_cannot_all_be_written_are_none_written(tp: Taskplan) -> None:
    tp.write("two.cron", "0 1 * * * echo first\n0 2 * * * echo second\n")
    jobs = tp.home / "jobs"
    jobs.mkdir()
    (jobs / "echo_first.yaml").write_text("# kept\n")
    (jobs / "echo_second.yaml").mkdir()  # in the way of the second file
    res = tp("import", "crontab", "two.cron", "--out", "jobs", "--apply")
    assert (res.code, res.out) == (2, ""), res
    assert res.err == ("taskplan: import: cannot write the job files to jobs:"
                       " jobs/echo_second.yaml is a folder\n")
    assert sorted(p.name for p in jobs.iterdir()) == ["echo_first.yaml", "echo_second.yaml"]
    assert (jobs / "echo_first.yaml").read_text() == "# kept\n" and not tp.db_path.exists()
    res = tp("import", "crontab", "two.cron", "--out", "/proc/no/such")
    assert (res.code, res.out) == (2, ""), res
    assert res.err == ("taskplan: import: cannot write the job files to /proc/no/such:"
                       " No such file or directory\n")


def test_a_line_ending_with_a_backslash_is_not_continued(tp: Taskplan) -> None:
    # cron has no continuation lines: the next line is read on its own, as cron reads it
    tp.write("cont.cron", """
        0 0 * * * tar czf /tmp/x.tgz \\
          /srv/data
        """)
    rows = tp.ok("import", "crontab", "cont.cron", "--out", "jobs", "--json").json()
    assert [r["job"] for r in rows] == ["tar_czf_tmp_x_tgz", None]
    assert "cron has no continuation lines" in rows[0]["not_expressed"][0]
    assert rows[1]["source"] == "cont.cron:2: /srv/data"


def test_cron_ignores_a_system_crontabs_last_line_without_a_newline(tp: Taskplan) -> None:
    (tp.home / "sys.cron").write_text("0 1 * * * root echo a\n0 2 * * * root echo b")
    rows = tp.ok("import", "crontab", "sys.cron", "--system", "--out", "jobs", "--json").json()
    assert [r["job"] for r in rows] == ["echo_a", None]
    assert "missing newline before EOF" in rows[1]["not_expressed"][-1]
    # a user crontab is a copy (crontab(1) refuses to install one without it): all imported
    (tp.home / "user.cron").write_text("0 1 * * * echo a\n0 2 * * * echo b")
    rows = tp.ok("import", "crontab", "user.cron", "--out", "jobs", "--json").json()
    assert [r["job"] for r in rows] == ["echo_a", "echo_b"]


def test_apply_to_a_store_that_cannot_be_reached_writes_no_file(tp: Taskplan) -> None:
    tp.write("one.cron", "0 1 * * * echo hi\n")
    # Nothing listens on port 1: the store is unreachable (exit 3) before any file is written,
    # so the files and the store do not disagree.
    res = tp("import", "crontab", "one.cron", "--out", "jobs/new", "--apply", "--db",
             "postgresql://taskplan@127.0.0.1:1/none", db=False)
    assert (res.code, res.out) == (3, ""), res
    assert "cannot reach the store" in res.err
    assert not (tp.home / "jobs").exists()
    tp.ok("import", "crontab", "one.cron", "--out", "jobs/new", "--apply")
    assert sorted(p.name for p in (tp.home / "jobs" / "new").iterdir()) == ["echo_hi.yaml"]


def test_the_report_shows_control_characters_as_escapes(tp: Taskplan) -> None:
    # A line's escape sequences (a title change, a fake red line) would act on the terminal
    # of whoever reads the report; it shows them, as the job file's header comment does.
    (tp.home / "esc.cron").write_text("0 1 * * * echo \x1b]0;pwned\x07 \x1b[31mred\r\n"
                                      "MAILTO=\x1b[2J\n0 2 * * * echo two\n")
    res = tp.ok("import", "crontab", "esc.cron", "--out", "jobs")
    assert "\x1b" not in res.out and "\x07" not in res.out
    assert "esc.cron:1: 0 1 * * * echo \\x1b]0;pwned\\a \\x1b[31mred" in res.out
    assert "esc.cron:2: MAILTO is a setting of cron itself" in res.out


def test_a_crontab_is_read_from_standard_input_as_crontab_l_writes_it(tp: Taskplan) -> None:
    # crontab -l | taskplan import crontab -
    import subprocess

    from acceptance_helpers import clean_env

    def piped(data: bytes) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(tp.argv(("import", "crontab", "-", "--out", "jobs"), True),
                              input=data, cwd=tp.home, env=clean_env(tp.env),
                              capture_output=True, timeout=60)

    got = piped(b"# m h dom mon dow command\n0 2 * * * echo one\nbad line\n")
    assert got.returncode == 0, got.stderr
    out = got.stdout.decode()
    assert "jobs/echo_one.yaml: stdin:2: 0 2 * * * echo one" in out
    assert "stdin:3: bad line: not imported" in out
    assert (tp.home / "jobs" / "echo_one.yaml").read_text().startswith(
        "# stdin:2: 0 2 * * * echo one\n")
    got = piped(b"0 2 * * * echo caf\xe9\n")
    assert got.returncode == 2 and got.stdout == b""
    assert got.stderr.decode().startswith("taskplan: stdin:1:")
