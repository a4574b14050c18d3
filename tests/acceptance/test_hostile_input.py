"""Input built to hurt: job files that would exhaust the reader, output that would drive the
operator's terminal."""

from __future__ import annotations

import os

from acceptance_helpers import Taskplan


def test_billion_laughs_is_refused_quickly_with_one_line(tp: Taskplan) -> None:
    lines = ["job: bomb", "x-a0: &a0 [" + ", ".join(['"lol"'] * 10) + "]"]
    lines += [f"x-a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    tp.write("bomb.yaml", "\n".join(lines) + "\ntasks:\n  t:\n    shell: echo hi\n")
    for command in (("validate", "bomb.yaml"), ("apply", "bomb.yaml"), ("run", "bomb.yaml")):
        # The old reader spun for minutes: the subprocess timeout is what fails there.
        res = tp(*command, timeout=30)
        assert res.code == 2, res
        first = res.err.strip().splitlines()[0]
        # Level 5 (line 7) is where the expansion first passes 500,000 nodes.
        assert first.startswith("bomb.yaml:7:") and "too many aliases" in first, res.err
        assert "Traceback" not in res.err
    assert not tp.db_path.exists()  # nothing stored, not even an empty store


EVIL = "hello\x1b]0;owned\x07\x1b[2J\r\nuser@host:~$ \rrm -rf /\x1b[31m\u202e"


def test_escape_sequences_in_task_output_do_not_reach_the_terminal(tp: Taskplan) -> None:
    tp.write("evil.py", f"""
        def boom(ctx):
            print({EVIL!r})
            raise RuntimeError({EVIL!r})
        """)
    tp.write("evil.yaml", """
        job: evil
        tasks:
          boom: {python: "evil:boom"}
        """)
    run = tp("run", "evil.yaml")
    assert run.code == 1
    status = tp.ok("status", "1")
    logs = tp.ok("logs", "1", "boom")
    for res in (run, status, logs):
        for raw in ("\x1b", "\x07", "\r", "\u202e"):
            assert raw not in res.out, (raw, res.out)
        assert "\\x1b]0;owned\\a\\x1b[2J" in res.out, res.out
    assert "\\u202e" in logs.out
    assert "user@host:~$ \\rrm -rf /\\x1b[31m" in logs.out
    # The CRLF line end stays a line end; --raw gives the bytes back as printed.
    assert logs.out.startswith("hello\\x1b]0;owned\\a\\x1b[2J\nuser@host")
    raw_out = tp.ok("logs", "1", "boom", "--raw").out  # (\r reads as \n in text mode)
    assert "hello\x1b]0;owned\x07\x1b[2J" in raw_out and "/\x1b[31m\u202e" in raw_out
    # JSON escapes them by itself (the error is the exception's message on one line).
    assert "hello\x1b]0;owned\x07\x1b[2J" in str(tp.status(1)["tasks"][0]["error"])


def test_only_regular_files_are_read(tp: Taskplan) -> None:
    # /dev/zero never ends (the old reader grew to gigabytes); a named pipe with no writer
    # made the old reader wait forever: the subprocess timeout is what fails there.
    os.mkfifo(tp.home / "pipe.yaml")
    (tp.home / "jobs").mkdir()
    os.mkfifo(tp.home / "jobs" / "inside.yaml")
    (tp.home / "zero.yaml").symlink_to("/dev/zero")
    cases = {
        ("validate", "pipe.yaml"): "pipe.yaml:1:1: not a regular file (a named pipe)",
        ("apply", "pipe.yaml"): "pipe.yaml:1:1: not a regular file (a named pipe)",
        ("run", "pipe.yaml"): "pipe.yaml:1:1: not a regular file (a named pipe)",
        ("apply", "jobs"): "jobs/inside.yaml:1:1: not a regular file (a named pipe)",
        ("validate", "/dev/zero"): "/dev/zero:1:1: not a regular file (a character device)",
        ("run", "/dev/zero"): "/dev/zero:1:1: not a regular file (a character device)",
        ("apply", "zero.yaml"): "zero.yaml:1:1: not a regular file (a character device)",
    }
    for command, line in cases.items():
        res = tp(*command, timeout=30)
        assert res.code == 2, (command, res)
        assert res.err.splitlines()[0] == line, (command, res.err)
        assert "Traceback" not in res.err
    assert not tp.db_path.exists()


def test_a_symbolic_link_loop_is_one_line_and_the_rest_of_the_folder_is_checked(
        tp: Taskplan) -> None:
    (tp.home / "l1.yaml").symlink_to("l2.yaml")
    (tp.home / "l2.yaml").symlink_to("l1.yaml")
    tp.write("jobs/bad.yaml", "job: bad\ntasks: {a: {shell: x, retries: -1}}\n")
    (tp.home / "jobs" / "l1.yaml").symlink_to("l2.yaml")
    (tp.home / "jobs" / "l2.yaml").symlink_to("l1.yaml")
    loop = ":1:1: cannot read the file: a symbolic link loop"
    res = tp("validate", "l1.yaml", db=False)
    assert res.code == 2, res
    assert res.err.splitlines()[0].startswith("l1.yaml" + loop), res.err
    for command in ("validate", "apply"):
        res = tp(command, "jobs")
        assert res.code == 2, res
        lines = res.err.splitlines()
        assert lines[0].startswith("jobs/bad.yaml:2:32: tasks.a.retries"), res.err
        assert lines[1].startswith("jobs/l1.yaml" + loop), res.err
        assert lines[2].startswith("jobs/l2.yaml" + loop), res.err
        assert "Traceback" not in res.err and "RuntimeError" not in res.err
    for command in ("apply", "run"):  # named alone: the loop, not "no such file"
        res = tp(command, "l1.yaml")
        assert res.code == 2 and res.err.startswith("l1.yaml" + loop), res
    assert not tp.db_path.exists()


def test_escape_sequences_in_a_job_file_or_its_name_do_not_reach_the_terminal(
        tp: Taskplan) -> None:
    # A file from a shared folder, read by `validate`: its problems name its keys and its own
    # name as written, and `\x1b]0;owned\x07` retitled the window, `\x1b[2J` cleared the
    # screen; a newline in a file's name split a problem over two lines.
    tp.write("jobs/ctl.yaml", 'job: a\ntasks:\n  x:\n    shell: echo\n'
             '    "\\e]0;owned\\a\\e[2J": 1\n    retries: "\\e[31mred"\n')
    tp.write("jobs/\x1b]0;owned\x07\x1b[2J\rname\n.yaml",
             "job: b\ntasks:\n  x: {shell: echo, retries: x}\n")
    for args in (("validate", "jobs"), ("apply", "jobs"), ("run", "jobs/ctl.yaml")):
        res = tp(*args)
        assert res.code == 2, res
        for control in ("\x1b", "\x07", "\r"):
            assert control not in res.err, (args, res.err)
        problems = [line for line in res.err.splitlines() if "problem(s)" not in line]
        assert all(": tasks.x." in line for line in problems), (args, res.err)
    assert "\\x1b]0;owned\\x07" in res.err


def test_prune_names_a_hostile_file_escaped(tp: Taskplan) -> None:
    evil = tp.write("jobs/\x1b[2Jgone.yaml", "job: gone\ntasks:\n  x: {shell: echo}\n")
    tp.write("jobs/kept.yaml", "job: kept\ntasks:\n  x: {shell: echo}\n")
    tp.ok("apply", "jobs")
    evil.unlink()
    res = tp.ok("apply", "--prune", "jobs")
    assert "\x1b" not in res.out and "gone: removed (\\x1b[2Jgone.yaml is gone" in res.out, res
