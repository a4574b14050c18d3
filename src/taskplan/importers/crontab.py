"""A crontab -> taskplan job documents, one job per entry (pure).

Read as cron (Vixie/cronie) reads a user crontab (`crontab -l`):

* blank lines and `#` comments are skipped;
* `NAME=value` lines set the environment of the entries below them (quotes around the value are
  removed, nothing is expanded); `SHELL` picks the shell the command runs under; `CRON_TZ` the
  zone of the entries below it; `MAILTO` and other cron settings have no taskplan meaning and
  are reported;
* an entry is five time fields (or `@yearly` .. `@hourly`) and a command. In the command an
  unescaped `%` ends the command: the text after it is the command's standard input, with each
  further `%` a newline (`split_command` has cron's exact rules). `@reboot` has no equivalent
  and is reported.

Each entry becomes a job named after its command alone (`_name_base`), with `on_overlap: allow`
and `on_misfire: skip` because cron starts every firing and never catches up on missed ones.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import PurePath
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from taskplan.dataclass import dataclass
from taskplan.importers.documents import Imported, job_name, literal_text
from taskplan.timing.cron import CRON_ALIASES, check_cron

# cron reads lines split at newlines only, and fields separated by blanks (space, tab) only.
_ENV = re.compile(r"[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*(.*)")
_BLANKS = re.compile(r"[ \t]+")
# One item of a cron field as cron (Vixie, cronie) reads it: `*`, `*/step`, `a`, `a-b` or
# `a-b/step`, with numbers, or names in the month and day-of-week fields. cronsim, which checks
# and matches the expression, also takes what cron refuses (`L`, `W`, `#`, `5/10`).
_CRON_ITEM = re.compile(r"\*(?:/\d+)?|([A-Za-z0-9]+)(?:-([A-Za-z0-9]+)(?:/(\d+))?)?")
_FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_STDIN_END = "TASKPLAN_STDIN"
_CD_HOME = 'cd "$HOME" || exit 1'
_IGNORED_SETTINGS = ("MAILTO", "MAILFROM", "RANDOM_DELAY", "CONTENT_TYPE",
                     "CONTENT_TRANSFER_ENCODING", "LOGNAME", "USER")
_NAME_MAX = 48
_FALLBACK_NAME = "cron_job"


def split_command(text: str) -> tuple[str, str | None]:
    """(command, standard input or None) from a crontab command, as cron's do_command reads it.

    The command ends at the first `%` that no `\\` escapes: `\\%` there is a `%`, any other
    `\\x` stays as written (so `\\\\%` is two backslashes, then the end). The rest is the input
    (`_stdin`); with nothing after the `%`, cron gives the command an empty input.
    """
    command: list[str] = []
    escaped = False
    for i, c in enumerate(text):
        if escaped:
            if c == "%":
                command[-1] = "%"
            else:
                command.append(c)
            escaped = False
        elif c == "%":
            return "".join(command), _stdin(text[i + 1:])
        else:
            command.append(c)
            escaped = c == "\\"
    return "".join(command), None


def _stdin(text: str) -> str:
    """The input cron writes for the text after the command's `%`: each `%` a newline, `\\%`
    a `%` (a backslash escapes the character after it, even a backslash, but is kept before
    anything but `%`), and a final newline unless the text already ends with one."""
    out: list[str] = []
    escaped = need_newline = False
    for c in text:
        if escaped:
            if c != "%":
                out.append("\\")
        elif c == "%":
            c = "\n"
        escaped = c == "\\"
        if not escaped:
            out.append(c)
            need_newline = c != "\n"
    if escaped:
        out.append("\\")
    if need_newline:
        out.append("\n")
    return "".join(out)


def _unquote(value: str) -> str:
    value = value.strip(" \t\v\f\r")
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _name_base(command: str, raw: str) -> str:
    """A job name made of the command alone: the program without its folder, then its
    arguments (options without their dashes), up to the first redirection or operator; from the
    first part of an `a && b` chain that is not a `cd`, leaving out `VAR=value` and `exec` in
    front. A longer name than _NAME_MAX is cut, and ends with a hash of the whole command
    (`raw`, as written in the crontab) so that two long commands sharing a start stay apart."""
    words: list[str] = []
    for part in re.split(r"[;|&]+", command):
        found = re.split(r"\s\d+[<>]|[<>]", part, maxsplit=1)[0].split()
        while found and (found[0] == "exec" or re.match(r"[A-Za-z_]\w*=", found[0])):
            found.pop(0)
        if found and found[0] != "cd":
            words = [PurePath(found[0].strip("'\"")).name, *found[1:]]
            break
    slugs = (re.sub(r"[^a-z0-9-]+", "_", w.lower().lstrip("-")).strip("_-") for w in words)
    base = "_".join(s for s in slugs if s)
    if len(base) > _NAME_MAX:
        base = f"{base[:_NAME_MAX - 7].rstrip('_-')}_{_digest(raw)}"
    return base or _FALLBACK_NAME


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:6]


@dataclass
class _Entry:
    item: Imported
    base: str  # the name the command makes (_name_base)
    command: str  # as written in the crontab, `%` parts included
    whole: str  # everything the job is made of: schedule, user, command, settings in force


def _name_all(entries: list[_Entry]) -> None:
    """Give each imported entry its job name, from that entry alone, never its position: the
    name its command makes; where several entries make the same one, each gets `_` and a hash
    of its command, or of its whole entry when the commands are the same too (the same command
    on other schedules). An entry the same as an earlier one in everything is a duplicate."""
    first: dict[str, _Entry] = {}
    groups: dict[str, list[_Entry]] = {}
    for e in entries:
        if e.whole in first:
            e.item.notes.append(f"the same entry as {first[e.whole].item.origin.split(': ')[0]}"
                                " (cron starts both at each firing; one job runs once): not"
                                " imported")
            e.item.document = None
            continue
        first[e.whole] = e
        groups.setdefault(e.base, []).append(e)
    taken: set[str] = set()
    for base, group in groups.items():
        for e in group:
            name = base
            if len(group) > 1:
                twins = sum(o.command == e.command for o in group) > 1
                name = f"{base}_{_digest(e.whole if twins else e.command)}"
            # Numbered by _unique only on a hash collision, or for a command whose own name
            # is another's with its hash: never in a crontab written by a person.
            e.item.name = job_name(name, taken, _FALLBACK_NAME)
            assert e.item.document is not None
            e.item.document["job"] = e.item.name


def _refused_by_cron(fields: list[str]) -> str | None:
    """Why cron refuses the line's five time fields, or None: a number, or a name in the
    month and day-of-week fields, alone, in a range, or `*`; a step only after `*` or a range."""
    for index, field in enumerate(fields):
        names = _MONTHS if index == 3 else _DAYS if index == 4 else ()
        for item in field.split(","):
            m = _CRON_ITEM.fullmatch(item)
            if m is None or not all(word is None or word.isdigit() or word.lower() in names
                                    for word in m.group(1, 2)):
                return (f"cron does not accept {item!r} in the {_FIELD_NAMES[index]} field"
                        f" {field!r}")
    return None


def _day_number(word: str) -> int:
    return int(word) if word.isdigit() else _DAYS.index(word.lower())


def _as_cronie_reads(fields: list[str]) -> str:
    """The five fields, with a day-of-week range ending on Sunday as 0 (`fri-sun`, `5-0`) read
    as cronie reads it: up to 7, the other number of Sunday (cronsim refuses a range that goes
    down)."""
    items = []
    for item in fields[4].split(","):
        m = _CRON_ITEM.fullmatch(item)
        if (m is not None and m.group(2) is not None and m.group(3) is None
                and _day_number(m.group(2)) == 0 and _day_number(m.group(1)) > 0):
            item = f"{m.group(1)}-7"
        items.append(item)
    return " ".join([*fields[:4], ",".join(items)])


def _zone_problem(value: str, where: str) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return (f"{where}: CRON_TZ {value!r} is not an IANA time zone name (like Europe/Paris),"
                " so the entries below it are not imported")
    return None


def convert_crontab(text: str, filename: str, timezone: str | None = None, *,
                    system: bool = False, unzoned_note: str | None = None) -> list[Imported]:
    """Every entry of a crontab as a job document, in file order. `system`: the format of
    /etc/crontab and /etc/cron.d, with a user name between the time fields and the command.
    `timezone` must be a zone name (the caller checks it). `unzoned_note`: said of each entry
    written without a zone (no `timezone`, no CRON_TZ above it)."""
    env: dict[str, str] = {}
    shell = "/bin/sh"
    zone = timezone
    bad_zone: str | None = None  # the note of a CRON_TZ line in force that names no zone
    items: list[Imported] = []
    entries: list[_Entry] = []
    settings: list[str] = []  # cron-only settings in force, reported on the entries below
    # Split at newlines only, as cron reads: str.splitlines would also split at a form feed,
    # U+2028 and others inside a command. A CRLF file's \r is dropped with its newline.
    lines = text.removesuffix("\n").split("\n")
    # cron ignores a last line without a newline. Only a system crontab is read by cron as it
    # is; a user crontab is installed by crontab(1), which refuses one: this file is a copy.
    unterminated = len(lines) if system and text and not text.endswith("\n") else 0
    for number, raw in enumerate(lines, 1):
        raw = raw.removesuffix("\r")
        line = raw.strip(" \t")
        if not line or line.startswith("#"):
            continue
        where = f"{filename}:{number}"
        m = _ENV.match(raw)
        if m and not line[0].isdigit() and not line.startswith(("*", "@")):
            key, value = m.group(1), _unquote(m.group(2))
            if key == "CRON_TZ":
                zone = value or timezone
                bad_zone = _zone_problem(value, where) if value else None
            elif key == "SHELL":
                shell = value or "/bin/sh"
                env[key] = shell
            elif key in _IGNORED_SETTINGS:
                settings.append(f"{where}: {key} is a setting of cron itself, not used by "
                               "taskplan (run output is kept in taskplan's logs)")
            else:
                env[key] = value
            continue
        entry = _entry(line, where, env, shell, zone, system)
        item = entry.item
        item.notes[:0] = settings
        if bad_zone is not None and item.document is not None:
            item.notes.append(bad_zone)
            item.document = None
        if number == unterminated and item.document is not None:
            item.notes.append("the file ends on this line without a newline, and cron ignores"
                              " a last line without one (\"missing newline before EOF\"):"
                              " not imported")
            item.document = None
        if item.document is not None:
            entries.append(entry)
            if unzoned_note and "timezone" not in item.document:
                item.notes.append(unzoned_note)
        items.append(item)
    _name_all(entries)
    return items


def _entry(line: str, where: str, env: dict[str, str], shell: str, zone: str | None,
           system: bool) -> _Entry:
    """The entry's job, without its name yet (`_name_all`)."""
    origin_line = line
    # cronie: a `-` before the time fields turns off the syslog line of each run.
    quiet = line.startswith("-") and len(line) > 1 and line[1] not in " \t"
    if quiet:
        line = line[1:]
    n_fields = 1 if line.startswith("@") else 5
    parts = _BLANKS.split(line, maxsplit=n_fields + system)
    if len(parts) < n_fields + system + 1:
        item = Imported("", f"{where}: {origin_line}", None)
        what = "@macro" if n_fields == 1 else "five time fields"
        item.notes.append(f"expected {what}, {'a user, ' if system else ''}and a command: "
                          "not imported")
        return _Entry(item, "", line, line)
    fields = " ".join(parts[:n_fields])
    origin_expr = ("-" if quiet else "") + " ".join(parts[:n_fields + system])
    written = command = parts[-1]
    user = parts[n_fields] if system else None
    # cronie: options before the command, each `-x` and a blank; `-n` (mail only when it
    # fails, once) is the only one.
    options: list[str] = []
    while command.startswith("-"):
        m = re.match(r"-n[ \t]+", command)
        if m is None or options:
            break
        options.append("-n")
        command = command[m.end():]
    cmd, stdin = split_command(command)
    item = Imported("", f"{where}: {origin_expr} {written}", None)
    entry = _Entry(item, _name_base(cmd, command), command, "")
    if quiet:
        item.notes.append("the - before the entry (cronie: no syslog line when it runs) has no"
                          " taskplan meaning: each run is kept in taskplan's history")
    if options:
        item.notes.append("-n before the command (cronie: mail its output only when it fails)"
                          " is not used by taskplan: output is kept in taskplan's logs; use"
                          " notify: with on: [run_failed] for mail")
    if command.startswith("-"):
        option = command.split()[0][:20]
        item.notes.append(f"cron refuses the command option {option!r} (cronie has -n alone,"
                          " once, followed by a blank and the command): not imported")
        return entry
    if parts[n_fields].startswith("*"):
        # cron refuses it ("bad command"): most likely a sixth time field (seconds, as in
        # Quartz), which would shift every field and make `*` a command, a file name pattern.
        what = "user" if system else "command"
        item.notes.append(f"the {what} starts with '*', which cron refuses (a sixth time field?"
                          " cron has five: minute hour day-of-month month day-of-week):"
                          " not imported")
        return entry
    if user is not None and user != "root":
        item.notes.append(f"cron runs it as user {user!r}; taskplan runs it as the agent's "
                          "user (route it with agent_labels to an agent running as that user)")
    elif user == "root":
        item.notes.append("cron runs it as root; taskplan runs it as the agent's user")
    if fields == "@reboot":
        item.notes.append("@reboot runs when cron starts, which has no taskplan equivalent "
                          "(a schedule fires at times; run the job from the machine's boot "
                          "scripts with taskplan run instead): not imported")
        return entry
    if fields.startswith("@") and fields not in CRON_ALIASES:
        item.notes.append(f"unknown cron macro {fields} (expected @reboot or one of "
                          f"{', '.join(CRON_ALIASES)}): not imported")
        return entry
    problem = _refused_by_cron(parts[:n_fields]) if n_fields == 5 else None
    if problem is None and n_fields == 5:
        fields = _as_cronie_reads(parts[:n_fields])
    problem = problem or check_cron(fields)
    if problem is not None:
        item.notes.append(f"{problem}: not imported")
        return entry
    if not cmd.strip():
        item.notes.append("the entry has no command: not imported")
        return entry
    if command.endswith("\\"):
        item.notes.append("the line ends with \\, but cron has no continuation lines: the"
                          " next line is not part of the command (imported as cron runs it)")
    script = cmd
    if stdin is not None:
        end = _STDIN_END
        while end in stdin:
            end += "_"
        if stdin and not stdin.endswith("\n"):
            # Only an input of backslashes alone ends without one; a here-document cannot.
            item.notes.append("cron gives this input without a final newline; the job's "
                              "input ends with one")
            stdin += "\n"
        # cron gives the text after the first % to the whole command as its standard input.
        script = f"{{ {cmd}\n}} <<'{end}'\n{stdin}{end}\n"
    # cron runs the command in $HOME (the crontab owner's home, or a HOME line above it) and
    # fails it if it cannot go there; a taskplan shell task runs in its job file's folder.
    script = f'{_CD_HOME}\n{script}'
    task: dict[str, Any] = {}
    if shell in ("/bin/sh", "sh"):
        task["shell"] = literal_text(script)
    else:
        task["shell"] = [shell, "-c", literal_text(script)]
    if env:
        task["env"] = {k: literal_text(v) for k, v in env.items()}
    doc: dict[str, Any] = {"job": "", "description": f"{where}: {command}"}
    if zone:
        doc["timezone"] = zone
    doc["on_misfire"] = "skip"
    doc["on_overlap"] = "allow"
    doc["schedules"] = [{"cron": fields}]
    doc["tasks"] = {"run": task}
    item.document = doc
    # The description holds the line number: two entries alike in all else are still the same.
    entry.whole = json.dumps([user, {k: v for k, v in doc.items() if k != "description"}],
                             sort_keys=True)
    return entry
