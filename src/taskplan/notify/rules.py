"""Notification rules as plain data: the events that can be notified and the channel of each
rule. Pure: the store reads these from a job's stored definition and from taskplan.toml."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable
from typing import Any

from taskplan.dataclass import dataclass

EVENTS = (
    "run_failed", "run_succeeded", "task_failed", "task_retrying",
    "deadline_at_risk", "deadline_missed", "agent_lost", "schedule_misfired",
)
CHANNEL_KINDS = ("webhook", "email", "command", "apprise")

# One try's timeout is also how long a sender that dies mid-try holds its notification back
# from the others (docs/operations.md): past an hour that is no plan but a typo.
MAX_TIMEOUT = 3600.0
TIMEOUT_EXPECTED = "expected a duration of at most 1h (one try of a notification)"
WEBHOOK_EXPECTED = "expected an http:// or https:// URL"
ADDRESS_EXPECTED = "expected an e-mail address like ops@example.com"
APPRISE_EXPECTED = "expected an Apprise URL like slack://token or tgram://bot/chat"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


# The checks of a channel's target, shared by job files, taskplan.toml and `notify test`: each
# says what was expected, or None. What they let through, the sender can at least try.
def webhook_problem(url: object) -> str | None:
    if (not isinstance(url, str) or not url.startswith(("http://", "https://"))
            or not _SCHEME.fullmatch(url)):
        return WEBHOOK_EXPECTED
    from urllib.parse import urlsplit

    # As the sender's HTTP client reads it: a host, and a port from 1 to 65535 (a ${VAR}
    # there is read when sending).
    try:
        parts = urlsplit(url)
        if not parts.hostname or ("${" not in parts.netloc and parts.port == 0):
            return WEBHOOK_EXPECTED
    except ValueError:  # an unclosed [IPv6], a port out of range or not a number
        if "${" not in url.split("/", 3)[2]:
            return WEBHOOK_EXPECTED
    return None


def address_problem(address: object) -> str | None:
    """Read as the sender reads its To header: one address, with a user and a domain."""
    if not isinstance(address, str) or "@" not in address or any(
            c.isspace() for c in address):
        return ADDRESS_EXPECTED
    found = _header_addresses("To", address)
    if found is None or len(found) != 1 or found[0].display_name or not (
            found[0].username and found[0].domain):
        return ADDRESS_EXPECTED
    return None


def sender_problem(address: str) -> bool:
    """Whether `address` cannot be the From of a message (and its envelope's sender): one
    address with a user and a domain, a display name allowed ("Ops <ops@example.com>")."""
    found = _header_addresses("From", address)
    return found is None or len(found) != 1 or not (found[0].username and found[0].domain)


def _header_addresses(header: str, address: str) -> list[Any] | None:
    """The addresses a message's `header` holds once set to `address`; None when the header
    parser refuses it."""
    from email.message import EmailMessage  # only where there is an address to check

    msg = EmailMessage()
    try:
        msg[header] = address
        return list(msg[header].addresses)
    except Exception:  # the header parser raises IndexError, ValueError, its own errors
        return None


COMMAND_QUOTES_EXPECTED = ("expected a command line with its quotes closed, like ./alert.sh"
                           " --quiet 'the text'")
COMMAND_PROGRAM_EXPECTED = "expected a command line that names a program"


def command_problem(command: object) -> str | None:
    """A string is split like a shell would split it when the notification is sent, so its
    quotes must close; either form must name a program (an empty first word runs nothing)."""
    if isinstance(command, str):
        try:
            argv = shlex.split(command)
        except ValueError:  # "No closing quotation", "No escaped character"
            return COMMAND_QUOTES_EXPECTED
    elif isinstance(command, list | tuple):
        argv = [str(a) for a in command]
    else:
        return None  # the schema says what a command is
    if not argv or not argv[0]:
        return COMMAND_PROGRAM_EXPECTED
    return None


def apprise_problem(url: object) -> str | None:
    if not isinstance(url, str) or not _SCHEME.fullmatch(url):
        return APPRISE_EXPECTED
    return None


@dataclass(frozen=True)
class Channel:
    """Where a notification goes. `target`: the URL (webhook, apprise), the addresses
    (email) or the argv (command). `secret` is kept as written: `${VAR}` is expanded by the
    sender, so a secret given that way never reaches the store."""

    kind: str
    target: tuple[str, ...]
    secret: str | None = None
    name: str | None = None
    timeout: float | None = None
    # A command's folder: its job file's (as for its shell tasks), taskplan.toml's for a
    # [[notify]] entry; None runs it in the sender's own folder (`notify test command:...`).
    cwd: str | None = None

    def to_json(self) -> str:
        data: dict[str, Any] = {"kind": self.kind, "target": list(self.target)}
        for key in ("secret", "name", "timeout", "cwd"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Channel:
        data = json.loads(text)
        return cls(kind=str(data["kind"]), target=tuple(str(t) for t in data["target"]),
                   secret=data.get("secret"), name=data.get("name"),
                   timeout=data.get("timeout"), cwd=data.get("cwd"))

    def describe(self) -> str:
        """One line naming the channel, with no secret in it."""
        from taskplan.redact import mask_url

        shown = " ".join(self.target) if self.kind == "command" else ", ".join(
            mask_url(t) for t in self.target)
        return f"{self.kind} {shown}"


@dataclass(frozen=True)
class Rule:
    events: frozenset[str]
    channel: Channel


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def channel_from(entry: dict[str, Any], folder: str | None = None) -> Channel:
    """The channel of one validated entry (`webhook: URL`, `email: [a@b]`, `command: argv or
    a string split like a shell would`, `apprise: URL`); a command runs in `folder`."""
    kind = next(k for k in CHANNEL_KINDS if entry.get(k) is not None)
    value = entry[kind]
    if kind == "command":
        target = tuple(str(v) for v in value) if not isinstance(value, str) else (
            tuple(shlex.split(value)) if command_problem(value) is None
            # A definition stored before the check above: its tries fail, naming it, rather
            # than the transaction that records the event.
            else (value,))
    else:
        target = tuple(str(v) for v in _list(value))
    timeout = entry.get("timeout")
    if timeout is not None:
        from taskplan.spec.durations import parse_duration  # job files write "10s"

        timeout = parse_duration(timeout)
    return Channel(kind=kind, target=target, secret=entry.get("secret"),
                   name=entry.get("name"), timeout=timeout,
                   cwd=folder if kind == "command" else None)


def rules_from(entries: Iterable[dict[str, Any]], folder: str | None = None
               ) -> tuple[Rule, ...]:
    """Rules of already validated `notify:` entries (job file or taskplan.toml, whose folder
    is `folder`)."""
    return tuple(Rule(frozenset(str(e) for e in _list(entry.get("on"))),
                      channel_from(entry, folder))
                 for entry in entries)
