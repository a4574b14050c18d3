"""`--labels` of the commands that run an agent (agent, serve, run, retry)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TypeVar

import click

from taskplan.errors import UsageError
from taskplan.model import AGENT_LABEL_RE, AGENT_LABEL_WORDS

F = TypeVar("F", bound=Callable[..., object])


def labels_option(fn: F) -> F:
    return click.option(
        "--labels", "labels", default=None, metavar="A,B",
        help="Routing labels of this agent, comma-separated (host=<hostname> is always"
             " added); it claims only task runs whose agent_labels it has, see docs/routing.md.",
    )(fn)


def parse_labels(value: str | None) -> tuple[str, ...]:
    """`etl,gpu` -> ('etl', 'gpu'); a bad label is a usage error (exit 2)."""
    if value is None:
        return ()
    labels = [x.strip() for x in value.split(",") if x.strip()]
    for label in labels:
        if not AGENT_LABEL_RE.fullmatch(label):
            raise UsageError(f"--labels: {label!r} is not {AGENT_LABEL_WORDS}")
        if label.startswith("host=") and label != f"host={socket.gethostname()}":
            # It would take the tasks pinned to that machine (a pgAgent job's host, say).
            raise UsageError(f"--labels: {label!r} names another machine; this agent has"
                             f" host={socket.gethostname()} already, and only that one")
    return tuple(sorted(set(labels)))
