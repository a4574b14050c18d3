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

import json
import logging
import sys
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


def configure(fmt: str = "text", verbosity: int = 0) -> None:
    """Send taskplan's log to stderr. verbosity: -1 quiet (warnings and errors), 0 events
    (INFO), 1 and more debug."""
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 \
        else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("taskplan")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
