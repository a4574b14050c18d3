"""The shell executor against real processes: argv safety, environment, streaming, killing."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

from executor_helpers import RecordingSink, gone_soon

from taskplan.executors import Cancellation, ExecResult, ShellExecutor, executor_for

PY = sys.executable
shell = ShellExecutor(kill_grace=0.5)


def run_in_thread(fn, *args):  # type: ignore[no-untyped-def]
    box: list[ExecResult] = []
    thread = threading.Thread(target=lambda: box.append(fn(*args)), daemon=True)
    thread.start()
    return thread, box


def read_pids(path: Path, count: int = 1, timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().split() if path.exists() else []
        if len(lines) >= count:
            return [int(line) for line in lines]
        time.sleep(0.01)
    raise AssertionError(f"{path} never got {count} pids")


def test_registered_for_shell_kind() -> None:
    assert isinstance(executor_for("shell"), ShellExecutor)


def test_argv_value_arrives_as_one_literal_element(make_request, sink, tmp_path) -> None:
    victim = tmp_path / "should_not"
    victim.mkdir()
    hostile = f"x'; rm -rf {victim}; --"
    show_argv = "import json, sys; print(json.dumps(sys.argv[1:]))"
    request = make_request((PY, "-c", show_argv, hostile, "$HOME"))
    result = shell.execute(request, sink, Cancellation())
    assert result == ExecResult(ok=True, exit_code=0)
    assert json.loads(sink.text) == [hostile, "$HOME"]
    assert victim.is_dir()


def test_string_runs_under_sh_with_stderr_merged(make_request, sink) -> None:
    result = shell.execute(
        make_request("echo out; echo err >&2; x=1; test $x = 1"), sink, Cancellation()
    )
    assert result.ok and result.exit_code == 0
    assert sink.text.splitlines() == ["out", "err"]


def test_environment_carries_task_values(make_request, sink, monkeypatch) -> None:
    monkeypatch.setenv("TASKPLAN_ITEM_STALE", "from a parent")
    monkeypatch.setenv("TASKPLAN_DB", "sqlite:///keep.db")
    item = {"view": "sales v1", "n": 3, "tags": ["a", "b"], "none": None, "ok": True}
    request = make_request(
        (PY, "-c", "import json, os; print(json.dumps(dict(os.environ)))"),
        params={"day": "2026-11-20", "max-rows": 5, "opts": {"deep": 1}},
        item=item,
        env={"FROM_SPEC": "spec", "SHARED": "spec", "TASKPLAN_TASK": "spoofed"},
        extra_env={"SHARED": "extra"},
    )
    assert shell.execute(request, sink, Cancellation()).ok
    env = json.loads(sink.text)
    assert env["TASKPLAN_RUN_ID"] == "42"
    assert env["TASKPLAN_TASK"] == "t"
    assert env["TASKPLAN_ATTEMPT"] == "2"
    assert env["TASKPLAN_PARAM_DAY"] == "2026-11-20"
    assert env["TASKPLAN_PARAM_MAX_ROWS"] == "5"
    assert json.loads(env["TASKPLAN_PARAM_OPTS"]) == {"deep": 1}
    assert json.loads(env["TASKPLAN_ITEM"]) == item
    assert env["TASKPLAN_ITEM_VIEW"] == "sales v1"
    assert env["TASKPLAN_ITEM_N"] == "3"
    assert json.loads(env["TASKPLAN_ITEM_TAGS"]) == ["a", "b"]
    assert env["TASKPLAN_ITEM_NONE"] == ""
    assert env["TASKPLAN_ITEM_OK"] == "true"
    assert env["FROM_SPEC"] == "spec"
    assert env["SHARED"] == "extra"
    assert env["TASKPLAN_DB"] == "sqlite:///keep.db"
    assert "TASKPLAN_ITEM_STALE" not in env
    assert "PATH" in env


def test_no_item_means_no_item_variables(make_request, sink) -> None:
    assert shell.execute(make_request("env"), sink, Cancellation()).ok
    assert "TASKPLAN_ITEM" not in sink.text
    assert "TASKPLAN_TASK=t\n" in sink.text


def test_cwd_resolved_against_base_dir(make_request, sink, tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    assert shell.execute(make_request("pwd", cwd="sub"), sink, Cancellation()).ok
    assert Path(sink.text.strip()).resolve() == (tmp_path / "sub").resolve()


def test_default_cwd_is_base_dir(make_request, sink, tmp_path) -> None:
    assert shell.execute(make_request(("pwd",)), sink, Cancellation()).ok
    assert Path(sink.text.strip()).resolve() == tmp_path.resolve()


def test_non_zero_exit(make_request, sink) -> None:
    result = shell.execute(make_request("echo partial; exit 3"), sink, Cancellation())
    assert result == ExecResult(ok=False, exit_code=3, error="exit code 3")
    assert sink.text == "partial\n"


def test_killed_by_signal_is_reported(make_request, sink) -> None:
    result = shell.execute(make_request("kill -9 $$"), sink, Cancellation())
    assert not result.ok and result.exit_code == -9
    assert result.error == "killed by SIGKILL"


def test_missing_program_is_a_failure_not_an_exception(make_request, sink) -> None:
    result = shell.execute(make_request(("no-such-program-tp",)), sink, Cancellation())
    assert result == ExecResult(ok=False, error="program not found: no-such-program-tp")
    assert "no-such-program-tp" in sink.text


def test_an_item_too_big_for_the_environment_is_left_out_not_fatal(make_request, sink) -> None:
    # A foreach item of 200 kB failed every start, even of a task that never read it:
    # "cannot start /bin/sh: [Errno 7] Argument list too long: '/bin/sh'".
    big = "b" * 200_000
    request = make_request(
        (PY, "-c", "import os; print(sorted(k for k in os.environ if k.startswith('TASKPLAN_I'))"
                   " , os.environ['TASKPLAN_PARAM_P'])"),
        item={"big": big, "small": 1}, params={"p": "x"})
    result = shell.execute(request, sink, Cancellation())
    assert result == ExecResult(ok=True, exit_code=0)
    lines = sink.text.splitlines()
    assert lines[0] == ("taskplan: TASKPLAN_ITEM left out of the environment: 200,034 bytes,"
                        " over the 128 KiB one variable may hold (templates still read it:"
                        " {{ item.col }}, {{ params.name }})")
    assert lines[1].startswith("taskplan: TASKPLAN_ITEM_BIG left out")
    assert lines[2] == "['TASKPLAN_ITEM_SMALL'] x"


def test_a_nul_byte_in_an_item_is_left_out_and_elsewhere_named(make_request, sink) -> None:
    # An item column holding a NUL failed every start ("cannot start /bin/sh: embedded null
    # byte"), even of a task not reading it; an argument or env: value holding one was not named.
    request = make_request((PY, "-c", "import os; print(os.environ['TASKPLAN_ITEM'])"),
                           item={"name": "a\0b", "id": 1})
    assert shell.execute(request, sink, Cancellation()) == ExecResult(ok=True, exit_code=0)
    assert sink.text.splitlines() == [
        "taskplan: TASKPLAN_ITEM_NAME left out of the environment: it holds a NUL byte, which no"
        " environment variable can (templates still read it: {{ item.col }}, {{ params.name }})",
        '{"name":"a\\u0000b","id":1}']
    nul = "holds a NUL byte, which no program can be given"
    argv = shell.execute(make_request(("echo", "a\0b")), sink, Cancellation())
    assert argv == ExecResult(ok=False, error=f"cannot start: argument 1 {nul}")
    env = shell.execute(make_request(("true",), env={"X": "a\0b"}), sink, Cancellation())
    assert env == ExecResult(ok=False, error=f"cannot start: environment variable X {nul}")


def test_an_argument_too_big_says_which(make_request, sink) -> None:
    too_big = "over the 128 KiB one argument or environment variable may hold"
    argv = shell.execute(make_request(("echo", "a" * 200_000)), sink, Cancellation())
    assert argv == ExecResult(ok=False,
                              error=f"cannot start: argument 1 is 200,000 bytes, {too_big}")
    text = shell.execute(make_request("echo " + "a" * 200_000), sink, Cancellation())
    assert text == ExecResult(ok=False,
                              error=f"cannot start: the command is 200,005 bytes, {too_big}")
    env = shell.execute(make_request(("true",), env={"BIG": "e" * 200_000}), sink,
                        Cancellation())
    assert env == ExecResult(
        ok=False, error=f"cannot start: environment variable BIG is 200,004 bytes, {too_big}")


def test_missing_cwd_and_empty_command(make_request, sink) -> None:
    missing = shell.execute(make_request(("true",), cwd="nowhere"), sink, Cancellation())
    assert not missing.ok and "working directory not found" in (missing.error or "")
    empty = shell.execute(make_request(()), sink, Cancellation())
    assert empty == ExecResult(ok=False, error="empty command")


def test_not_started_when_already_cancelled(make_request, sink, tmp_path) -> None:
    cancel = Cancellation()
    cancel.cancel()
    marker = tmp_path / "ran"
    result = shell.execute(make_request(f"touch {marker}"), sink, cancel)
    assert result.cancelled and not result.ok
    assert not marker.exists()


def test_output_streams_while_the_process_runs(make_request, sink) -> None:
    cancel = Cancellation()
    thread, box = run_in_thread(
        shell.execute, make_request("echo first; sleep 30; echo never"), sink, cancel
    )
    try:
        assert sink.wait_for("first\n", timeout=5)
        assert thread.is_alive() and not box
    finally:
        cancel.cancel()
        thread.join(10)
    assert box[0].cancelled
    assert "never" not in sink.text


def test_timeout_kills_the_whole_group(make_request, sink, tmp_path) -> None:
    pids = tmp_path / "pids"
    command = f"echo $$ > {pids}; sleep 100 & echo $! >> {pids}; sleep 100"
    result = shell.execute(make_request(command, timeout=0.3), sink, Cancellation())
    assert result.timed_out and not result.ok and not result.cancelled
    assert result.error == "timed out after 0.3s"
    leader, grandchild = (int(line) for line in pids.read_text().split())
    assert gone_soon([leader, grandchild], pgid=leader)


def test_sigterm_ignored_escalates_to_sigkill(make_request, sink, tmp_path) -> None:
    pids = tmp_path / "pids"
    command = f"trap '' TERM; echo $$ > {pids}; sleep 100 & echo $! >> {pids}; sleep 100"
    result = shell.execute(make_request(command, timeout=0.2), sink, Cancellation())
    assert result.timed_out
    leader, grandchild = (int(line) for line in pids.read_text().split())
    assert gone_soon([leader, grandchild], pgid=leader)


def test_cancel_from_another_thread_kills_the_group(make_request, sink, tmp_path) -> None:
    pids = tmp_path / "pids"
    cancel = Cancellation()
    command = f"echo $$ > {pids}; sleep 100 & echo $! >> {pids}; sleep 100"
    thread, box = run_in_thread(shell.execute, make_request(command), sink, cancel)
    try:
        read_pids(pids, 2)
    finally:
        cancel.cancel()
    thread.join(5)
    assert not thread.is_alive()
    assert box[0].cancelled and not box[0].ok and box[0].error == "cancelled"
    leader, grandchild = (int(line) for line in pids.read_text().split())
    assert gone_soon([leader, grandchild], pgid=leader)


def test_background_straggler_is_killed_after_normal_exit(make_request, sink, tmp_path) -> None:
    # The straggler holds the output pipe: without the group cleanup the attempt would hang.
    pid_file = tmp_path / "pid"
    got: list[ExecResult] = []
    attempt = threading.Thread(target=lambda: got.append(shell.execute(
        make_request(f"sleep 1000 & echo $! > {pid_file}; echo done"), sink, Cancellation())))
    attempt.start()
    attempt.join(60)  # a hang would last as long as the straggler: 1,000 s
    assert not attempt.is_alive(), "the attempt waited for its background straggler"
    assert got == [ExecResult(ok=True, exit_code=0)]
    assert sink.text == "done\n"
    assert gone_soon(read_pids(pid_file))


def test_callbacks_are_unhooked_after_each_attempt(make_request) -> None:
    cancel = Cancellation()  # shared, as the agent may share one per run
    for _ in range(3):
        assert shell.execute(make_request("true"), RecordingSink(), cancel).ok
    assert cancel._callbacks == {}


def test_utf8_split_across_chunks_and_invalid_bytes(make_request, sink) -> None:
    script = (
        "import sys, time; o = sys.stdout.buffer; "
        "o.write('é'.encode()[:1]); o.flush(); time.sleep(0.05); "
        "o.write('é'.encode()[1:] + b'\\xff\\n'); o.flush()"
    )
    assert shell.execute(make_request((PY, "-c", script)), sink, Cancellation()).ok
    assert sink.text == "é\ufffd\n"


def test_a_failing_sink_does_not_hang_the_process(make_request) -> None:
    class Broken:
        def write(self, text: str) -> None:
            raise OSError("disk full")

    # 1 MB of output: far more than a pipe holds, so the reader must keep draining.
    script = "import sys; sys.stdout.write('x' * 1_000_000)"
    result = shell.execute(make_request((PY, "-c", script), timeout=10), Broken(), Cancellation())
    assert result == ExecResult(ok=True, exit_code=0)


# -- a string the shell would only split: run without the shell ------------------------------
PARENT_PROBE = "import os, sys; open(sys.argv[1], 'w').write(str(os.getppid()))"


def test_plain_command_runs_without_a_shell_between(make_request, sink, tmp_path) -> None:
    script, out = tmp_path / "probe.py", tmp_path / "ppid"
    script.write_text(PARENT_PROBE)
    assert shell.execute(make_request(f"{PY} {script} {out}"), sink, Cancellation()).ok
    assert int(out.read_text()) == os.getpid()
    # The same program behind anything the shell interprets keeps sh as its parent.
    assert shell.execute(make_request(f"{PY} {script} '{out}'"), sink, Cancellation()).ok
    assert int(out.read_text()) != os.getpid()


def test_plain_argv_leaves_everything_the_shell_interprets_to_it() -> None:
    from taskplan.executors.shell import plain_argv

    assert plain_argv("  sleep 0.5 ") == ["sleep", "0.5"]
    assert plain_argv("python3 load.py --day=2026-01-01 a,b x@y:1 50%") == [
        "python3", "load.py", "--day=2026-01-01", "a,b", "x@y:1", "50%"]
    for text in ("echo hi", "true", "exit 3", "cd /tmp", "test -f x", ". ./env.sh",
                 "ulimit -n 10", "X=1 prog", "prog $HOME", "prog ~/x", "prog *.csv",
                 "prog 'a b'", 'prog "a"', "prog a\\ b", "prog > out", "a && b", "a; b",
                 "a | b", "prog # note", "prog\nother", "prog `x`", "prog $(x)", "if x",
                 "prog {a,b}", "prog é", ""):
        assert plain_argv(text) is None, text


def test_plain_command_that_cannot_start_gets_the_shells_verdict(make_request, sink,
                                                                 tmp_path) -> None:
    missing = shell.execute(make_request("no-such-program-xyz --flag"), sink, Cancellation())
    assert (missing.ok, missing.exit_code) == (False, 127)
    assert "not found" in sink.text
    # A script without a #! line: exec refuses it, the shell runs it as a shell script.
    script = tmp_path / "noshebang"
    script.write_text(f"echo ran > {tmp_path / 'ran'}\n")
    script.chmod(0o755)
    assert shell.execute(make_request(str(script)), sink, Cancellation()).ok
    assert (tmp_path / "ran").read_text() == "ran\n"
    locked = tmp_path / "locked"
    locked.write_text("#!/bin/sh\n")
    locked.chmod(0o644)
    denied = shell.execute(make_request(str(locked)), RecordingSink(), Cancellation())
    assert (denied.ok, denied.exit_code) == (False, 126)


def test_plain_command_gets_the_environment_the_shell_would_give(make_request, tmp_path,
                                                                monkeypatch) -> None:
    (tmp_path / "w").mkdir()
    monkeypatch.setenv("PWD", "/")  # the agent's own folder, not the task's
    outputs = []
    for command in ("printenv PWD", "printenv PWD;"):  # direct, then under sh
        got = RecordingSink()
        assert shell.execute(make_request(command, cwd="w"), got, Cancellation()).ok
        outputs.append(got.text)
    assert outputs[0] == outputs[1] == f"{(tmp_path / 'w').resolve()}\n"
    # A name that is no shell name: dash drops it, so the shell stays in between.
    odd = make_request("printenv spring.profiles.active", env={"spring.profiles.active": "x"})
    got = RecordingSink()
    result = shell.execute(odd, got, Cancellation())
    assert (result.ok, got.text) == (False, "")


def test_plain_command_killed_by_a_signal_is_reported_as_such(make_request, sink,
                                                             tmp_path) -> None:
    # Documented: with no shell in between (dash would have said exit code 137).
    script = tmp_path / "die.py"
    script.write_text("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    result = shell.execute(make_request(f"{PY} {script}"), sink, Cancellation())
    assert (result.ok, result.exit_code, result.error) == (False, -9, "killed by SIGKILL")
