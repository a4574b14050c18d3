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
import queue
import sys
import time
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener
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


class _DroppingQueueHandler(QueueHandler):
    """Hands records to the writer thread; when it is QUEUE_MAX records behind (stderr is a
    pipe nobody reads), further records are dropped rather than waited on."""

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            pass  # dropped: a log must never block the agent


QUEUE_MAX = 10_000


def configure(fmt: str = "text", verbosity: int = 0) -> None:
    """Send taskplan's log to stderr. verbosity: -1 quiet (warnings and errors), 0 events
    (INFO), 1 and more debug.

    Lines are written by a thread of their own: an agent's dispatcher and slots never wait on
    stderr, so a full pipe cannot stall heartbeats (and get the agent declared lost)."""
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 \
        else logging.DEBUG
    writer = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        writer.setFormatter(JsonFormatter())
    else:
        writer.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    records: queue.Queue[logging.LogRecord] = queue.Queue(QUEUE_MAX)
    listener = QueueListener(records, writer)
    listener.start()
    logger = logging.getLogger("taskplan")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    handler = _DroppingQueueHandler(records)
    # The writer formats (JSON needs the record's own fields, not a pre-formatted message).
    handler.prepare = lambda record: record  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    atexit.register(_drain, records)


def _drain(records: queue.Queue[logging.LogRecord]) -> None:
    """At exit, give the writer a second to print what is queued (never hang on stderr)."""
    deadline = time.monotonic() + 1.0
    while not records.empty() and time.monotonic() < deadline:
        time.sleep(0.01)
