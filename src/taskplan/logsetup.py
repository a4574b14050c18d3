"""What the daemons (`agent`, `scheduler`, `serve`) print: one line per event, as text or as
JSON for log shippers, at a level chosen on the command line.

Events are logged with the stdlib `logging` module under the `taskplan` logger; each call
passes its fields in `extra={"event": ..., ...}`, which the JSON form prints as keys. Calls use
%-style arguments, so when a level is off nothing is formatted (the agent's hot path pays one
level check per event).

Events and their level (docs/deployment.md has the table): `leader` (a scheduler takes or
loses the lease), `firing` and
`firing_skipped` (a schedule instant made a run, or did not, and why), `claim` (a task run
handed to this agent), `task_start` / `task_end` (its attempt, state, exit code and duration),
`retry` (a failed attempt that will be tried again, and when), all INFO; `agent_lost` (another
agent's lease expired and its task runs were recovered) and store outages, WARNING.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

# LogRecord attributes that are not event fields.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class LineWriter(logging.Handler):
    """Keeps records in memory; a thread of its own writes, all at once, what arrived within
    WRITE_EVERY seconds of the first waiting record. An agent's dispatcher and slots never
    wait on stderr (a full pipe cannot stall heartbeats and get the agent declared lost); an
    agent running hundreds of short tasks a second wakes the writer a few times a second, not
    three times per task (each wake-up of a thread that then takes the GIL cost the dispatcher
    more than the line itself), and an idle one not at all. When QUEUE_MAX records wait
    (stderr is a pipe nobody reads), further records are dropped rather than waited on.

    `out` takes the text of one write; it may block (a full pipe), it must not raise for a
    stream that is gone (the log is then lost; the daemon goes on)."""

    def __init__(self, out: Callable[[str], None], *, thread: bool = True) -> None:
        """thread=False: no writer thread; lines are written by write_out() alone."""
        super().__init__()
        self.out = out
        self.records: deque[logging.LogRecord] = deque()
        self._written = threading.Lock()  # one writer at a time: lines stay in order
        self._waiting = threading.Event()  # set by the first record after a write
        self._stop = threading.Event()
        if thread:
            threading.Thread(target=self._loop, name="taskplan-log", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < QUEUE_MAX:
            self.records.append(record)  # the writer formats: JSON reads the record's fields
            if not self._waiting.is_set():
                self._waiting.set()

    def _loop(self) -> None:
        while True:
            self._waiting.wait()
            if self._stop.wait(WRITE_EVERY):  # the lines that follow within it go along
                return
            self._waiting.clear()
            self.write_out()

    def write_out(self) -> None:
        with self._written:
            lines = []
            while self.records:
                record = self.records.popleft()
                try:
                    lines.append(self.format(record))
                except Exception:  # a bad record must not take the others down
                    self.handleError(record)
            if lines:
                self.out("\n".join(lines) + "\n")

    def close_at_exit(self, within: float) -> None:
        """Write what waits and stop, giving up after `within` seconds (never hang on a
        stderr nobody reads)."""
        self._stop.set()
        self._waiting.set()
        done = threading.Thread(target=self.write_out, name="taskplan-log-exit", daemon=True)
        done.start()
        done.join(within)


QUEUE_MAX = 10_000
WRITE_EVERY = 0.1  # seconds a line may wait before it is written


def stderr_writer() -> Callable[[str], None]:
    """Writes to a descriptor of its own for stderr, not through sys.stderr: a writer blocked
    on a full pipe then holds none of sys.stderr's locks, so the exit's flush of sys.stderr
    (logging.shutdown, or before os._exit) cannot wait on it forever."""
    try:
        fd = os.dup(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # no real stderr (embedded, captured)
        def through(text: str) -> None:
            try:
                sys.stderr.write(text)
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
        return through

    def raw(text: str) -> None:
        data = memoryview(text.encode("utf-8", "backslashreplace"))
        try:
            while data:
                data = data[os.write(fd, data):]
        except OSError:
            pass  # stderr closed or broken
    return raw


def configure(fmt: str = "text", verbosity: int = 0) -> None:
    """Send taskplan's log to stderr. verbosity: -1 quiet (warnings and errors), 0 events
    (INFO), 1 and more debug."""
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 \
        else logging.DEBUG
    writer = LineWriter(stderr_writer())
    if fmt == "json":
        writer.setFormatter(JsonFormatter())
    else:
        writer.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("taskplan")
    for old in list(logger.handlers):
        if isinstance(old, LineWriter):  # configured before: its lines come first
            old.close_at_exit(1.0)
        logger.removeHandler(old)
    logger.addHandler(writer)
    logger.setLevel(level)
    logger.propagate = False
    atexit.register(writer.close_at_exit, 1.0)


def write_waiting(within: float = 1.0) -> None:
    """Write the lines that wait now: for a daemon leaving by os._exit, which runs no exit
    hooks."""
    for handler in logging.getLogger("taskplan").handlers:
        if isinstance(handler, LineWriter):
            handler.close_at_exit(within)
