"""How each channel sends one notification: webhook (JSON POST, HMAC-signed), email (SMTP,
STARTTLS when offered), command (argv, the JSON on stdin), apprise (other services).

Every call has a timeout; none raises: the outcome says whether it worked and whether trying
again could help. httpx, smtplib and apprise are imported on first use.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import threading
import time
from typing import Any

from taskplan import __version__
from taskplan.dataclass import dataclass
from taskplan.notify.rules import Channel
from taskplan.redact import mask_url

DEFAULT_TIMEOUT = 10.0  # seconds, for webhook, email and apprise
COMMAND_TIMEOUT = 30.0
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Sent:
    ok: bool
    status: int | None = None  # HTTP status or exit code
    error: str | None = None
    retry: bool = True  # False: trying again cannot help (a missing extra, a bad URL)
    # Some of the channel's targets got it, these did not: the next try is for them alone.
    left: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Smtp:
    """Where e-mail goes: `[smtp]` of taskplan.toml, then TASKPLAN_SMTP_* variables."""

    host: str = "localhost"
    port: int = 25
    sender: str = ""  # the From address; default taskplan@<this host>
    user: str | None = None
    password: str | None = None
    starttls: str = "auto"  # auto (when the server offers it) | always | never
    ssl: bool = False  # SMTP over TLS from the first byte (port 465)
    cafile: str | None = None  # trust this CA file (else the system's) for the server's cert

    @classmethod
    def from_settings(cls, raw: dict[str, Any], env: dict[str, str] | None = None) -> Smtp:
        env = dict(os.environ) if env is None else env

        def pick(key: str, default: Any) -> Any:
            return env.get(f"TASKPLAN_SMTP_{key.upper()}", raw.get(key, default))

        starttls = str(pick("starttls", "auto")).lower()
        if starttls not in ("auto", "always", "never"):
            starttls = "auto"
        return cls(host=str(pick("host", "localhost")), port=int(pick("port", 25)),
                   sender=str(pick("from", "")),
                   # Credentials from the environment only, never from the file.
                   user=env.get("TASKPLAN_SMTP_USER") or None,
                   password=env.get("TASKPLAN_SMTP_PASSWORD") or None,
                   starttls=starttls,
                   ssl=str(pick("ssl", "false")).lower() in ("1", "true", "yes"),
                   cafile=pick("cafile", None) or None)


def expand(text: str | None) -> str | None:
    """`${VAR}` from the sender's environment (KeyError naming a missing variable)."""
    if text is None:
        return None
    return _VAR.sub(lambda m: os.environ[m.group(1)], text)


def sign(secret: str, body: bytes) -> str:
    """The X-Taskplan-Signature header value for this body."""
    import hashlib  # (not at import: every `taskplan run` loads this module, few sign)
    import hmac

    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")


def summary(payload: dict[str, Any]) -> tuple[str, str]:
    """A readable subject and body (email, apprise)."""
    event = str(payload.get("event"))
    job = payload.get("job")
    run = payload.get("run") or {}
    task = payload.get("task") or {}
    what = {
        "run_failed": "failed", "run_succeeded": "succeeded",
        "task_failed": f"task {task.get('name')} failed",
        "task_retrying": f"task {task.get('name')} is retrying",
        "deadline_at_risk": "may miss its deadline", "deadline_missed": "missed its deadline",
        "schedule_misfired": "missed schedule firings", "agent_lost": "lost an agent",
        "test": "test notification",
    }.get(event, event)
    if event == "agent_lost" and job is None:
        agent = payload.get("agent") or {}
        subject = f"[taskplan] agent {agent.get('name')} lost"
    elif event == "test":
        subject = "[taskplan] test notification"
    else:
        subject = f"[taskplan] {job}" + (f" run {run['id']}" if run.get("id") else "") \
            + f" {what}"
    lines = [f"Event: {event}", f"At: {payload.get('at')}"]
    if job:
        lines.append(f"Job: {job}")
    if run.get("id"):
        lines.append(f"Run: {run['id']} ({run.get('state')})")
    if task:
        lines.append(f"Task: {task.get('name')} (attempt {task.get('attempt')} of "
                     f"{task.get('max_attempts')})")
    if payload.get("error"):
        lines.append(f"Error: {payload['error']}")
    detail = payload.get("detail")
    if detail:
        lines.append("Detail: " + (detail if isinstance(detail, str) else json.dumps(detail)))
    if run.get("url"):
        lines.append(f"Console: {run['url']}")
    lines += ["", "The event as JSON:", json.dumps(payload, indent=2, sort_keys=True)]
    return subject, "\n".join(lines) + "\n"


def send(channel: Channel, payload: dict[str, Any], smtp: Smtp | None = None) -> Sent:
    try:
        if channel.kind == "webhook":
            return webhook(channel, payload)
        if channel.kind == "email":
            return email(channel, payload, smtp or Smtp.from_settings({}))
        if channel.kind == "command":
            return command(channel, payload)
        if channel.kind == "apprise":
            return apprise(channel, payload)
        return Sent(False, error=f"unknown channel kind {channel.kind!r}", retry=False)
    except KeyError as exc:
        return Sent(False, error=f"environment variable {exc.args[0]} is not set")
    except Exception as exc:  # a channel must never take the sender down
        return Sent(False, error=f"{type(exc).__name__}: {exc}")


def webhook(channel: Channel, payload: dict[str, Any]) -> Sent:
    import httpx

    body = body_of(payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"taskplan/{__version__}",
        "X-Taskplan-Event": str(payload.get("event")),
        # The same value on every try of one notification: receivers drop repeats by it.
        "X-Taskplan-Delivery": str(payload.get("delivery")),
        "Idempotency-Key": str(payload.get("delivery")),
    }
    secret = expand(channel.secret)
    if secret:
        headers["X-Taskplan-Signature"] = sign(secret, body)
    url = expand(channel.target[0]) or ""
    limit = channel.timeout or DEFAULT_TIMEOUT
    # httpx's timeout bounds each read, not the whole answer: a receiver that trickles its
    # body held a try (and `notify test`) for as long as it went on. The status is all a try
    # needs; of a failure's body, the first bytes that come within the timeout.
    deadline = time.monotonic() + limit
    try:
        with httpx.stream("POST", url, content=body, headers=headers, timeout=limit) as response:
            status = response.status_code
            if 200 <= status < 300:
                return Sent(True, status=status)
            head = b""
            try:
                for chunk in response.iter_bytes():
                    head += chunk
                    if len(head) >= 4096 or time.monotonic() >= deadline:
                        break
            except httpx.HTTPError:
                pass  # a body that stalls or breaks off: the status is the failure to say
    except httpx.HTTPError as exc:
        return Sent(False, error=f"{type(exc).__name__}: {exc}")
    text = " ".join(head.decode("utf-8", "replace").split())[:200]
    return Sent(False, status=status, error=f"HTTP {status}" + (f": {text}" if text else ""))


def email(channel: Channel, payload: dict[str, Any], smtp: Smtp) -> Sent:
    import smtplib
    import ssl
    from email.message import EmailMessage
    from email.utils import formatdate, parseaddr

    subject, text = summary(payload)
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = smtp.sender or f"taskplan@{socket.gethostname()}"
    msg["To"] = ", ".join(channel.target)
    # Required of every message (RFC 5322); a server passing mail on need not add them. The
    # Message-ID is the delivery's, the same on every try, so a repeat can be told as one.
    msg["Date"] = formatdate(localtime=True)
    domain = parseaddr(str(msg["From"]))[1].rpartition("@")[2] or socket.gethostname()
    msg["Message-ID"] = f"<{payload.get('delivery')}.taskplan@{domain}>"
    msg["X-Taskplan-Delivery"] = str(payload.get("delivery"))
    msg.set_content(text)
    timeout = channel.timeout or DEFAULT_TIMEOUT
    # The server's certificate is verified (smtplib's own default context would not).
    try:
        context = ssl.create_default_context(cafile=smtp.cafile)
    except (OSError, ssl.SSLError) as exc:  # a missing file, or one that holds no cert
        return Sent(False, error=f"[smtp] cafile {smtp.cafile}: {type(exc).__name__}:"
                                 f" {exc.strerror or exc}")
    try:
        client = (smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=timeout, context=context)
                  if smtp.ssl else smtplib.SMTP(smtp.host, smtp.port, timeout=timeout))
        with client:
            client.ehlo()
            if not smtp.ssl and (smtp.starttls == "always" or (
                    smtp.starttls == "auto" and client.has_extn("starttls"))):
                client.starttls(context=context)
                client.ehlo()
            if smtp.user:
                client.login(smtp.user, smtp.password or "")
            # Those refused while others were taken (all refused raises): theirs is a failed
            # try, of them alone, not a delivery.
            refused = client.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        return Sent(False, error=f"{type(exc).__name__}: {exc}")
    if not refused:
        return Sent(True)
    left = tuple(t for t in channel.target if parseaddr(t)[1] in refused)
    said = ", ".join(f"{address} ({code} {reason.decode('utf-8', 'replace')})"
                     for address, (code, reason) in refused.items())
    taken = ", ".join(t for t in channel.target if t not in left)
    return Sent(False, error=f"refused by the server: {said}; delivered to {taken}",
                left=left or None)


def command(channel: Channel, payload: dict[str, Any]) -> Sent:
    env = {**os.environ, "TASKPLAN_EVENT": str(payload.get("event")),
           "TASKPLAN_DELIVERY": str(payload.get("delivery"))}
    limit = channel.timeout or COMMAND_TIMEOUT
    # Its stderr goes to a file and its stdout nowhere, not to pipes: a process the command
    # leaves running (`page-oncall &`) keeps its pipes open, and waiting for their end made a
    # try that had succeeded time out, and be sent again.
    import tempfile  # (with shutil and random: for a command channel's try only)

    with tempfile.TemporaryFile() as stderr:
        try:
            proc = subprocess.Popen(list(channel.target), stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=stderr, env=env,
                                    cwd=channel.cwd)
        except OSError as exc:
            where = f" (in {channel.cwd})" if channel.cwd is not None else ""
            return Sent(False, error=f"cannot start {channel.target[0]}{where}:"
                                     f" {exc.strerror or exc}")
        try:
            proc.communicate(body_of(payload), timeout=limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return Sent(False, error=f"timed out after {limit:g}s")
        if proc.returncode == 0:
            return Sent(True, status=0)
        stderr.seek(0)
        said = stderr.read()
    tail = " ".join(said.decode("utf-8", "replace").split())[-200:]
    return Sent(False, status=proc.returncode,
                error=f"exit code {proc.returncode}" + (f": {tail}" if tail else ""))


APPRISE_UNKNOWN_URL = "Apprise does not understand this URL"


def apprise(channel: Channel, payload: dict[str, Any]) -> Sent:
    try:
        import apprise as apprise_lib  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return Sent(False, retry=False, error=(
            "the apprise channel needs the optional extra: pip install 'taskplan[apprise]'"))
    notifier = apprise_lib.Apprise()
    url = expand(channel.target[0]) or ""
    if not notifier.add(url):
        return Sent(False, retry=False, error=APPRISE_UNKNOWN_URL)
    subject, text = summary(payload)
    said = _Said()
    _listen(said, True)
    try:
        if notifier.notify(title=subject, body=text):
            return Sent(True)
    finally:
        _listen(said, False)
    # Apprise says why only in its log, which `notify test` and `notifications` never show.
    reason = mask_url(said.lines[-1]) if said.lines else "it gave no reason"
    return Sent(False, error=f"Apprise could not deliver: {reason}")


_APPRISE_LOG = logging.getLogger("apprise")
_listening: list[int | None] = [0, None]  # handlers listening, the level before the first
_listen_lock = threading.Lock()


def _listen(handler: logging.Handler, on: bool) -> None:
    """Hear Apprise's warnings while it delivers, even where logging is set to show only
    errors (its level is put back when the last listener leaves)."""
    with _listen_lock:
        if on:
            _APPRISE_LOG.addHandler(handler)
            if _listening[0] == 0:
                _listening[1] = _APPRISE_LOG.level
                if not _APPRISE_LOG.isEnabledFor(logging.WARNING):
                    _APPRISE_LOG.setLevel(logging.WARNING)
            _listening[0] = (_listening[0] or 0) + 1
        else:
            _APPRISE_LOG.removeHandler(handler)
            _listening[0] = (_listening[0] or 1) - 1
            if _listening[0] == 0 and _listening[1] is not None:
                _APPRISE_LOG.setLevel(_listening[1])


class _Said(logging.Handler):
    """Apprise's warnings and errors while one delivery runs (Apprise logs them from threads
    of its own, so two Apprise tries failing at the same moment may hear each other's)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(" ".join(record.getMessage().split())[:300])
