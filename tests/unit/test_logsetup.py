"""The daemons' log writer (taskplan.logsetup): lines in order, nothing lost at exit, never a
wait on stderr."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading

from taskplan import logsetup

LOGGING_CHILD = textwrap.dedent("""
    import logging, sys, time
    from taskplan import logsetup
    logsetup.configure(sys.argv[1])
    log = logging.getLogger("taskplan.agent")
    for i in range(int(sys.argv[2])):
        log.info("task end: %s", i, extra={"event": "task_end", "n": i})
    if sys.argv[3] == "stay":  # a quiet spell (the writer goes to sleep), then one more line
        time.sleep(0.5)
        log.info("task end: again", extra={"event": "task_end"})
        time.sleep(60)
""")


def child(fmt: str, lines: int, stay: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", LOGGING_CHILD, fmt, str(lines),
                             "stay" if stay else "exit"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_every_line_is_written_in_order_before_the_process_exits() -> None:
    proc = child("json", 3000)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    records = [json.loads(line) for line in err.splitlines()]
    assert [r["n"] for r in records] == list(range(3000))
    assert records[0]["event"] == "task_end" and records[0]["message"] == "task end: 0"


def test_lines_are_written_while_the_daemon_runs_on() -> None:
    proc = child("text", 1, stay=True)
    try:
        assert proc.stderr is not None
        # Each readline blocks until the writer thread wrote the line.
        assert proc.stderr.readline().endswith(" INFO task end: 0\n")
        assert proc.stderr.readline().endswith(" INFO task end: again\n")
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.communicate()


def _writer(lines: list[str]) -> logsetup.LineWriter:
    writer = logsetup.LineWriter(lines.append, thread=False)
    writer.setFormatter(logging.Formatter("%(message)s"))
    return writer


def _record(n: int) -> logging.LogRecord:
    return logging.makeLogRecord({"msg": "line %s", "args": (n,), "levelno": logging.INFO})


def test_records_past_the_limit_are_dropped_not_waited_for() -> None:
    out: list[str] = []
    writer = _writer(out)
    for n in range(logsetup.QUEUE_MAX + 50):
        writer.emit(_record(n))
    writer.write_out()
    lines = "".join(out).splitlines()
    assert len(lines) == logsetup.QUEUE_MAX
    assert lines[0] == "line 0" and lines[-1] == f"line {logsetup.QUEUE_MAX - 1}"


def _quiet_env() -> dict[str, str]:
    # Buffered stderr, as a daemon started by a service manager has it.
    return {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


def test_a_daemon_whose_stderr_nobody_reads_still_exits() -> None:
    proc = subprocess.Popen([sys.executable, "-c", LOGGING_CHILD, "text", "5000", "exit"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_quiet_env())
    try:
        # 5,000 lines are more than a pipe holds; nothing reads them. A hang fails here.
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        assert proc.stderr is not None
        proc.stderr.close()


def test_a_closed_stderr_loses_the_lines_and_nothing_else() -> None:
    proc = subprocess.Popen([sys.executable, "-c", LOGGING_CHILD, "json", "100", "exit"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_quiet_env())
    assert proc.stderr is not None
    proc.stderr.close()  # writes to it now fail (EPIPE)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert out == b""


def test_configured_twice_the_first_lines_come_first() -> None:
    twice = textwrap.dedent("""
        import logging, sys
        from taskplan import logsetup
        log = logging.getLogger("taskplan.agent")
        logsetup.configure("text")
        for i in range(500):
            log.info("line %s", i)
        logsetup.configure("text")
        for i in range(500, 1000):
            log.info("line %s", i)
    """)
    got = subprocess.run([sys.executable, "-c", twice], capture_output=True, text=True,
                         timeout=60, check=True)
    numbers = [int(line.rsplit(" ", 1)[1]) for line in got.stderr.splitlines()]
    assert numbers == list(range(1000))


def test_other_loggers_of_the_process_keep_every_field() -> None:
    """An in-process python task's own logging is the user's: configure() changes nothing
    of it."""
    taskplan = logging.getLogger("taskplan")
    before = (list(taskplan.handlers), taskplan.level, taskplan.propagate)
    try:
        logsetup.configure("text")
        _user_record_keeps_its_fields()
    finally:
        for handler in taskplan.handlers:
            if isinstance(handler, logsetup.LineWriter):
                handler.close_at_exit(1.0)
        taskplan.handlers[:] = before[0]
        taskplan.setLevel(before[1])
        taskplan.propagate = before[2]


def _user_record_keeps_its_fields() -> None:
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    user = logging.getLogger("a_users_task")
    user.addHandler(Keep())
    user.warning("hello")
    assert seen[0].funcName == "_user_record_keeps_its_fields"
    assert seen[0].process == os.getpid()
    assert seen[0].threadName == threading.current_thread().name
