"""A crontab -> taskplan job documents, one job per entry (pure).

Read as cron (Vixie/cronie) reads a user crontab (`crontab -l`):

* blank lines and `#` comments are skipped;
* `NAME=value` lines set the environment of the entries below them (quotes around the value are
  removed, nothing is expanded); `SHELL` picks the shell the command runs under; `CRON_TZ` the
  zone of the entries below it; `MAILTO` and other cron settings have no taskplan meaning and
  are reported;
* an entry is five time fields (or `@yearly` .. `@hourly`) and a command. In the command an
  unescaped `%` ends the command: the text after it is the command's standard input, with each
  further `%` a newline; `\\%` is a literal `%`. `@reboot` has no equivalent and is reported.

Each entry becomes a job named after its command (stable while the command stays the same),
with `on_overlap: allow` and `on_misfire: skip` because cron starts every firing and never
catches up on missed ones.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

from taskplan.importers.documents import Imported, job_name, literal_text
from taskplan.timing.cron import CRON_ALIASES, check_cron

_ENV = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
_STDIN_END = "TASKPLAN_STDIN"
_IGNORED_SETTINGS = ("MAILTO", "MAILFROM", "RANDOM_DELAY", "CONTENT_TYPE",
                     "CONTENT_TRANSFER_ENCODING", "LOGNAME", "USER")


def split_command(text: str) -> tuple[str, str | None]:
    """(command, standard input or None) from a crontab command with cron's `%` rules."""
    command: list[str] = []
    stdin: list[str] | None = None
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] == "%":
            (command if stdin is None else stdin).append("%")
            i += 2
            continue
        if c == "%":
            if stdin is None:
                stdin = []
            else:
                stdin.append("\n")
        else:
            (command if stdin is None else stdin).append(c)
        i += 1
    return "".join(command), None if stdin is None else "".join(stdin)


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _name_source(command: str) -> str:
    """The words a job name is made of: program names without their folders, then arguments,
    up to the first redirection or operator; from the first part of a `a && b` chain that has
    any (`cd /x && make` -> make)."""
    for part in re.split(r"[;|&]+", command):
        words: list[str] = []
        for word in re.split(r"[<>]", part, maxsplit=1)[0].split():
            word = word.strip("'\"$")
            if "/" in word:
                word = PurePath(word).name or word
            if word in ("cd", "exec", "nice", "ionice", "flock", "sudo") or not re.search(
                    r"[A-Za-z0-9]", word) or word.startswith("-") or "=" in word:
                continue
            words.append(word)
            if len(words) == 4:
                break
        if words and not (part.split()[0] == "cd" and len(words) == 1):
            return "_".join(words)[:48]
    return ""


def convert_crontab(text: str, filename: str, timezone: str | None = None, *,
                    system: bool = False) -> list[Imported]:
    """Every entry of a crontab as a job document, in file order. `system`: the format of
    /etc/crontab and /etc/cron.d, with a user name between the time fields and the command."""
    env: dict[str, str] = {}
    shell = "/bin/sh"
    zone = timezone
    taken: set[str] = set()
    items: list[Imported] = []
    settings: list[str] = []  # cron-only settings in force, reported on the entries below
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{filename}:{number}"
        m = _ENV.match(raw)
        if m and not line[0].isdigit() and not line.startswith(("*", "@")):
            key, value = m.group(1), _unquote(m.group(2))
            if key == "CRON_TZ":
                zone = value or timezone
            elif key == "SHELL":
                shell = value or "/bin/sh"
                env[key] = shell
            elif key in _IGNORED_SETTINGS:
                settings.append(f"{where}: {key} is a setting of cron itself, not used by "
                               "taskplan (run output is kept in taskplan's logs)")
            else:
                env[key] = value
            continue
        item = _entry(line, where, env, shell, zone, taken, system)
        item.notes[:0] = settings
        items.append(item)
    return items


def _entry(line: str, where: str, env: dict[str, str], shell: str, zone: str | None,
           taken: set[str], system: bool) -> Imported:
    n_fields = 1 if line.startswith("@") else 5
    parts = line.split(None, n_fields + system)
    if len(parts) < n_fields + system + 1:
        item = Imported("", f"{where}: {line}", None)
        what = "@macro" if n_fields == 1 else "five time fields"
        item.notes.append(f"expected {what}, {'a user, ' if system else ''}and a command: "
                          "not imported")
        return item
    fields = " ".join(parts[:n_fields])
    if n_fields == 1:
        fields = fields.lower()
    origin_expr = " ".join(parts[:n_fields + system])
    command = parts[-1]
    user = parts[n_fields] if system else None
    cmd, stdin = split_command(command)
    name = job_name(_name_source(cmd), taken, "cron_job")
    item = Imported(name, f"{where}: {origin_expr} {command}", None)
    if user is not None and user != "root":
        item.notes.append(f"cron runs it as user {user!r}; taskplan runs it as the agent's "
                          "user (route it with agent_labels to an agent running as that user)")
    elif user == "root":
        item.notes.append("cron runs it as root; taskplan runs it as the agent's user")
    if fields == "@reboot":
        item.notes.append("@reboot runs when cron starts, which has no taskplan equivalent "
                          "(a schedule fires at times; run the job from the machine's boot "
                          "scripts with taskplan run instead): not imported")
        return item
    if fields.startswith("@") and fields not in CRON_ALIASES:
        item.notes.append(f"unknown cron macro {fields} (expected @reboot or one of "
                          f"{', '.join(CRON_ALIASES)}): not imported")
        return item
    problem = check_cron(fields)
    if problem is not None:
        item.notes.append(f"{problem}: not imported")
        return item
    if not cmd.strip():
        item.notes.append("the entry has no command: not imported")
        return item
    script = cmd
    if stdin is not None:
        end = _STDIN_END
        while end in stdin:
            end += "_"
        # cron gives the text after the first % to the whole command as its standard input.
        script = f"{{ {cmd}\n}} <<'{end}'\n{stdin}\n{end}\n"
    task: dict[str, Any] = {}
    if shell in ("/bin/sh", "sh"):
        task["shell"] = literal_text(script)
    else:
        task["shell"] = [shell, "-c", literal_text(script)]
    if env:
        task["env"] = {k: literal_text(v) for k, v in env.items()}
    doc: dict[str, Any] = {"job": name, "description": f"{where}: {command}"}
    if zone:
        doc["timezone"] = zone
    doc["on_misfire"] = "skip"
    doc["on_overlap"] = "allow"
    doc["schedules"] = [{"cron": fields}]
    doc["tasks"] = {"run": task}
    item.document = doc
    return item
