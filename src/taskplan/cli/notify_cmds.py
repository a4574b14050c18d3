"""`taskplan notifications` (the outbox: deliveries and their tries, resend) and
`taskplan notify test CHANNEL` (send a test event now)."""

from __future__ import annotations

import shlex
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import click

from taskplan.cli.common import (
    EXIT_OK,
    EXIT_RUN_FAILED,
    db_option,
    get_context,
    handle_errors,
    json_option,
    parse_id,
    parse_run_id,
    print_json,
    short_time,
    whole,
)
from taskplan.errors import NotFoundError, UsageError
from taskplan.notify.rules import Channel
from taskplan.shapes import iso
from taskplan.store.notify_ops import NotificationInfo

if TYPE_CHECKING:
    from taskplan.cli.common import Context
    from taskplan.notify.channels import Smtp


def _shape(n: NotificationInfo) -> dict[str, Any]:
    """One element of `notifications --json` (no secret: the channel is described)."""
    return {
        "id": n.id, "event": n.event, "created_at": iso(n.created_at), "job": n.job,
        "run_id": n.run_id, "task_run_id": n.task_run_id,
        "channel": {"kind": n.channel.kind, "name": n.channel.name,
                    "target": n.channel.describe().split(" ", 1)[1]},
        "state": n.state, "attempts": n.attempts, "next_try_at": iso(n.next_at),
        "delivered_at": iso(n.delivered_at), "last_error": n.last_error,
        "tries": [{"attempt": a.attempt, "sender": a.sender, "started_at": iso(a.started_at),
                   "finished_at": iso(a.finished_at), "ok": a.ok, "status": a.status,
                   "error": a.error} for a in n.tries],
    }


def _print_table(items: list[NotificationInfo]) -> None:
    header = ("ID", "EVENT", "JOB", "RUN", "CHANNEL", "STATE", "TRIES", "CREATED")
    rows = [header] + [
        (str(n.id), n.event, n.job or "-", str(n.run_id or "-"), _short(n.channel),
         n.state, str(n.attempts), short_time(n.created_at)) for n in items]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for n, row in zip([None, *items], rows, strict=True):
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n is not None and n.state != "delivered" and n.last_error:
            when = f", next try {short_time(n.next_at)}" if n.next_at else ""
            click.echo(f"    last error: {n.last_error}{when}")


def _short(channel: Channel) -> str:
    text = channel.describe()
    return text if len(text) <= 50 else text[:47] + "..."


@click.group("notifications", invoke_without_command=True)
@click.option("--failed", "failed_only", is_flag=True,
              help="Only notifications that were given up on.")
@click.option("--run", "run", default=None, metavar="RUN", help="Only those of this run.")
@click.option("--limit", type=whole(1), default=50, show_default=True,
              help="The newest this many.")
@json_option
@db_option
@click.pass_context
@handle_errors
def notifications_cmd(click_ctx: click.Context, failed_only: bool, run: str | None, limit: int,
                      as_json: bool, db: str | None) -> None:
    """Notification deliveries, newest first, with their tries (`resend ID` queues one
    again)."""
    if click_ctx.invoked_subcommand is not None:
        return
    from taskplan.store import notify_ops, reports

    run_id = None if run is None else parse_run_id(run)
    ctx = get_context(db)
    with ctx.engine.store.read() as tx:
        items = notify_ops.list_notifications(tx, failed_only=failed_only, limit=limit,
                                              run_id=run_id)
        if run_id is not None and not items and reports.run_info(tx, run_id) is None:
            # A run's notifications go with it when it is purged: none to list is a typo.
            raise NotFoundError(f"no run {run_id}")
    if as_json:
        print_json([_shape(n) for n in items])
        return
    if not items:
        click.echo("no failed notifications" if failed_only else "no notifications")
        return
    _print_table(items)


@notifications_cmd.command("resend")
@click.argument("notification_id", metavar="ID")
@json_option
@db_option
@handle_errors
def resend_cmd(notification_id: str, as_json: bool, db: str | None) -> None:
    """Queue a notification again for a new round of tries, and try it now."""
    from taskplan.notify.sender import Sender
    from taskplan.store import notify_ops

    nid = parse_id(notification_id, "notification")
    ctx = get_context(db)
    store = ctx.engine.store
    queued_at = time.time()
    with store.tx() as tx:
        before = notify_ops.resend(tx, nid, queued_at)
    if before is None:
        raise NotFoundError(f"no notification {nid} (see taskplan notifications)")
    Sender(store, smtp=_smtp(ctx), lease=ctx.settings.lease_seconds).deliver_ids([nid])
    with store.read() as tx:
        info = notify_ops.list_notifications(tx, ids=[nid])[0]
    last = info.tries[-1] if info.tries else None
    tried = last is not None and last.finished_at is not None and last.started_at >= queued_at
    failed = tried and info.state != "delivered"
    if as_json:
        print_json(_shape(info))
    elif not tried:  # another sender is trying it right now
        click.echo(f"notification {nid} queued again (was {before}); a running agent,"
                   " scheduler or serve sends it")
    elif failed:
        click.echo(f"notification {nid} queued again (was {before}); the try failed:"
                   f" {info.last_error} (taskplan notifications shows the next try)")
    else:
        click.echo(f"notification {nid} delivered (was {before})")
    sys.exit(EXIT_RUN_FAILED if failed else EXIT_OK)


def _smtp(ctx: Context) -> Smtp:
    from taskplan.notify.channels import Smtp

    return Smtp.from_settings(ctx.settings.smtp)


@click.group("notify")
def notify_cmd() -> None:
    """Notification channels."""


def parse_channel(text: str, secret: str | None, settings_channel: Channel | None) -> Channel:
    """CHANNEL of `notify test`: a [[notify]] name of taskplan.toml, an http(s) URL
    (webhook), an e-mail address, `command:ARGV...`, or an Apprise URL; checked as a job
    file's `notify:` entries are (UsageError naming CHANNEL)."""
    from taskplan.notify.rules import (
        address_problem,
        apprise_problem,
        command_problem,
        webhook_problem,
    )
    from taskplan.redact import mask_url

    if settings_channel is not None:
        if secret is not None:
            raise UsageError(f"--secret only applies to a webhook URL; {text!r} names a"
                             " [[notify]] entry of taskplan.toml, whose own secret signs it")
        return settings_channel
    if text.startswith(("http://", "https://")):
        if (problem := webhook_problem(text)) is not None:
            raise UsageError(f"CHANNEL {mask_url(text)!r}: {problem}")
        return Channel("webhook", (text,), secret=secret)
    if secret is not None:
        raise UsageError("--secret only applies to a webhook URL")
    if text.startswith("command:"):
        line = text[len("command:"):]
        if not line.strip():
            raise UsageError("command: expects a command line, e.g. command:'./alert.sh'")
        if (problem := command_problem(line)) is not None:
            raise UsageError(f"CHANNEL {text!r}: {problem}")
        return Channel("command", tuple(shlex.split(line)))
    if text.startswith("mailto:"):
        text = text[len("mailto:"):]
    if "@" in text and "://" not in text:
        addresses = tuple(a.strip() for a in text.split(",") if a.strip())
        for address in addresses:
            if (problem := address_problem(address)) is not None:
                raise UsageError(f"CHANNEL {address!r}: {problem}")
        return Channel("email", addresses)
    if "://" in text:
        if (problem := apprise_problem(text)) is not None:
            raise UsageError(f"CHANNEL {mask_url(text)!r}: {problem}")
        return Channel("apprise", (text,))
    raise UsageError(
        f"unknown channel {text!r}: expected the name of a [[notify]] entry of taskplan.toml,"
        " an http(s):// URL, an e-mail address, command:ARGV or an Apprise URL")


@notify_cmd.command("test")
@click.argument("channel")
@click.option("--secret", default=None, help="Sign the test webhook with this secret.")
@click.option("--event", default="test", show_default=True,
              help="The event name the test payload carries.")
@db_option
@handle_errors
def test_cmd(channel: str, secret: str | None, event: str, db: str | None) -> None:
    """Send a test notification to CHANNEL now and say whether it arrived.

    CHANNEL: the name of a [[notify]] entry in taskplan.toml, an http(s) URL (webhook), an
    e-mail address, command:ARGV (the JSON on stdin) or an Apprise URL (slack://...).
    Exit 0 when delivered, 1 when the channel failed.
    """
    from taskplan.notify import channels
    from taskplan.notify.config import named_channel
    from taskplan.notify.rules import APPRISE_EXPECTED, EVENTS

    if event != "test" and event not in EVENTS:
        raise UsageError(f"--event: expected test or one of {', '.join(EVENTS)}, got {event!r}")
    ctx = get_context(db)
    chosen = parse_channel(channel, secret, named_channel(ctx.settings, channel))
    now = time.time()
    payload = {
        "event": event, "delivery": uuid.uuid4().hex, "at": iso(now), "test": True,
        "job": None, "run": None, "task": None, "error": None,
        "detail": "a test notification from taskplan notify test",
    }
    sent = channels.send(chosen, payload, _smtp(ctx))
    if sent.error == channels.APPRISE_UNKNOWN_URL:
        # Not a failure of the channel: nothing would ever deliver to this URL.
        raise UsageError(f"{chosen.describe()}: {sent.error} ({APPRISE_EXPECTED})")
    if sent.ok:
        status = f" (status {sent.status})" if sent.status is not None else ""
        click.echo(f"sent a test notification to {chosen.describe()}{status}")
        sys.exit(EXIT_OK)
    click.echo(f"taskplan: {chosen.describe()}: {sent.error}", err=True)
    sys.exit(EXIT_RUN_FAILED)
