"""taskplan.toml's notification settings, checked with the job file's rules for `notify:`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from taskplan.config import Settings, entry_line, key_line
from taskplan.errors import UsageError
from taskplan.notify.rules import Channel, Rule, rules_from

if TYPE_CHECKING:
    from taskplan.store.db import Store


def default_rules(settings: Settings) -> tuple[Rule, ...]:
    """The `[[notify]]` entries of taskplan.toml as rules; UsageError naming the first bad one
    (file, entry, key and what was expected)."""
    if not settings.notify:
        return ()
    from taskplan.spec.report import Reporter
    from taskplan.spec.schema import NotifyModel
    from taskplan.spec.source import Positions

    path = settings.config_path
    data = {"notify": list(settings.notify)}
    reporter = Reporter(str(path), Positions(), data)
    names: dict[str, int] = {}
    for i, entry in enumerate(settings.notify):
        reporter.validate(NotifyModel, entry, ("notify", i))
        if reporter.problems:
            message = reporter.problems[0].message
            key = re.match(rf"notify\[{i}\]\.(\w+)", message)
            raise UsageError(f"{path}:{_key_line(path, i, key.group(1) if key else None)}:"
                             f" {message}")
        name = entry.get("name")
        if name in names:
            # `taskplan notify test NAME` names one entry.
            raise UsageError(f"{path}:{_key_line(path, i, 'name')}: notify[{i}].name:"
                             f" {name!r} already names notify[{names[name]}]; expected a"
                             " name of its own")
        if name is not None:
            names[name] = i
    return rules_from(settings.notify, str(path.parent) if path is not None else None)


def _key_line(path: Path | None, index: int, key: str | None) -> int:
    """The line of `key = ...` in the `index`-th [[notify]] entry, else of the entry."""
    line = entry_line(path, "notify", index)
    return line if key is None else key_line(path, line, key)


def named_channel(settings: Settings, name: str) -> Channel | None:
    """The channel of the `[[notify]]` entry called `name`, if any."""
    for rule in default_rules(settings):
        if rule.channel.name == name:
            return rule.channel
    return None


def configure_store(store: Store, settings: Settings) -> None:
    """Give the store this process's defaults, so events it records find them."""
    from taskplan.store import notify_ops

    notify_ops.configure(store, default_rules(settings), settings.console_url)
