"""The daemons' log writer (taskplan.logsetup): lines in order, nothing lost at exit, never a
wait on stderr."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap

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


def _writer(stream: io.StringIO) -> logsetup.LineWriter:
    target = logging.StreamHandler(stream)
    target.setFormatter(logging.Formatter("%(message)s"))
    return logsetup.LineWriter(target, thread=False)


def _record(n: int) -> logging.LogRecord:
    return logging.makeLogRecord({"msg": "line %s", "args": (n,), "levelno": logging.INFO})


def test_records_past_the_limit_are_dropped_not_waited_for() -> None:
    out = io.StringIO()
    writer = _writer(out)
    for n in range(logsetup.QUEUE_MAX + 50):
        writer.emit(_record(n))
    writer.write_out()
    lines = out.getvalue().splitlines()
    assert len(lines) == logsetup.QUEUE_MAX
    assert lines[0] == "line 0" and lines[-1] == f"line {logsetup.QUEUE_MAX - 1}"


class _Broken(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError("stderr is gone")


def test_a_broken_stderr_loses_the_lines_and_nothing_else() -> None:
    writer = _writer(_Broken())
    writer.emit(_record(1))
    writer.write_out()  # does not raise
    assert not writer.records
