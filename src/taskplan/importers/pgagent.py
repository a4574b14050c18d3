"""pgAgent jobs -> taskplan job documents (pure; `store.pgagent_catalog` reads the catalog).

What maps to what (docs/migrating.md has the table):

* steps -> tasks in pgAgent's order (jstname, jstid), each depending on the enabled step
  before it; a disabled step -> `enabled: false`, kept for the record with nothing depending on
  it (pgAgent leaves it out of the chain);
* SQL steps -> `sql` tasks on a connection built from `jstconnstr`, or the catalog's server
  with `jstdbname`; a step of several statements in one transaction, as pgAgent sends it as one
  query string; batch steps -> `shell` tasks run by `sh` like pgAgent's script file;
* `jstonerror`: f -> a failure fails the run and the following steps do not run; s and i ->
  the step's failure is logged and the chain goes on, the run succeeding as pgAgent's job does;
* schedules -> calendar schedules read in the server's zone: pgAgent's boolean arrays become
  minutes/hours/weekdays/monthdays/months (an array with nothing set means "any"), `jscstart`
  and `jscend` the bounds, each exception row an exception of that schedule only;
* the job class -> a tag, `jobhostagent` -> `agent_labels: ["host=<name>"]`, disabled jobs and
  schedules -> `enabled: false`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote, unquote_to_bytes
from zoneinfo import ZoneInfo

from taskplan.executors.sqltext import CODE, segments, split_statements
from taskplan.importers.documents import (
    Imported,
    fit_name,
    job_name,
    literal_text,
    task_name,
)
from taskplan.model import Calendar
from taskplan.spec.fields import AGENT_LABEL_RE
from taskplan.store.pgagent_catalog import Catalog, PgJob, PgSchedule, PgStep
from taskplan.timing.calendar import check_calendar

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
               "dec")
# The leading words of top-level statements that cannot run inside the transaction the import
# gives a step (BEGIN ... COMMIT, or a DO block): they control transactions themselves, or
# PostgreSQL refuses them in a transaction block or a function. CALL may run a procedure that
# commits, which fails in both.
_CONTROLS = ("begin", "start transaction", "commit", "end", "rollback", "abort", "savepoint",
             "release", "prepare transaction", "set transaction")
_REFUSED = ("vacuum", "create database", "drop database", "create tablespace",
            "drop tablespace", "alter system", "reindex database", "reindex system",
            "discard all", "create subscription", "drop subscription", "call")
# CLUSTER without a table, and CREATE/DROP INDEX, REINDEX and DETACH PARTITION with
# CONCURRENTLY are refused too (REFRESH MATERIALIZED VIEW CONCURRENTLY is not).
_BARE_CLUSTER = re.compile(r"cluster(\s+verbose)?")
# REINDEX of a whole schema, database or system, with or without options (`REINDEX (VERBOSE)
# SCHEMA s`), and moving a database to another tablespace.
_REINDEX_MANY = re.compile(r"reindex\s*(\([^)]*\)\s*)?(schema|database|system)\b")
_DATABASE_TABLESPACE = re.compile(r"alter database (.+ )?set tablespace\b")
_CONCURRENTLY = re.compile(r"\bconcurrently\b")
_HEREDOC = "TASKPLAN_PGAGENT_STEP"


def convert(catalog: Catalog, zone: str) -> list[Imported]:
    """Every job of the catalog as a document, in jobid order."""
    ZoneInfo(zone)  # the caller checked it; fail loudly otherwise
    taken: set[str] = set()
    return [convert_job(job, catalog, zone, taken) for job in catalog.jobs]


def convert_job(job: PgJob, catalog: Catalog, zone: str, taken: set[str]) -> Imported:
    name = job_name(job.name, taken, f"pgagent_{job.id}")
    item = Imported(name, f"pgAgent job {job.id} {job.name!r}, imported by taskplan import "
                    "pgagent", None)
    if not job.steps:
        item.notes.append("the job has no steps (a job file needs at least one task): "
                          "not imported")
        return item
    doc: dict[str, Any] = {"job": name}
    doc["description"] = job.description or job.name
    doc["timezone"] = zone
    if not job.enabled:
        doc["enabled"] = False
    if job.job_class:
        doc["tags"] = [job.job_class]
    if job.host_agent:
        label = f"host={job.host_agent}"
        if AGENT_LABEL_RE.fullmatch(label):
            doc["agent_labels"] = [label]
        else:
            # No host has such a name, so no pgAgent ever ran the job on its schedules.
            doc["enabled"] = False
            item.notes.append(f"jobhostagent {job.host_agent!r} is not a host name an agent can"
                              " have (letters, digits and _ . : / @ + = -), so no pgAgent ran"
                              " the job on its schedules: imported with enabled: false")
    connections: dict[str, str] = {}
    tasks: dict[str, Any] = {}
    used: set[str] = set()
    on_from: list[str] = []  # the steps connecting to the catalog's server as its user
    previous: str | None = None  # the last enabled step: pgAgent runs only those, in order
    for step in job.steps:
        tname = task_name(step.name, used, f"step_{step.id}")
        try:
            task = _task(step, catalog, connections, item.notes)
        except _Unreadable as exc:
            item.notes.append(f"step {step.name!r}: {exc}; pgAgent cannot connect for it either"
                              " (the step fails at every run): fix it in pgAgent and import"
                              " again: not imported")
            return item
        except _Unrunnable as exc:
            item.notes.append(str(exc))
            return item
        if step.kind == "s" and not step.connstr:
            on_from.append(step.name)
        if previous is not None:
            task = {"depends_on": [previous], **task}
        if step.enabled:
            previous = tname
        else:
            # A disabled task ends skipped when the run is created: a step depending on it
            # would start at once, beside the steps before it and whatever they do.
            task["enabled"] = False
        tasks[tname] = task
    if connections:
        doc["connections"] = connections
    if on_from and catalog.password:
        named = ", ".join(repr(n) for n in on_from[:5]) + (
            f" and {len(on_from) - 5} more" if len(on_from) > 5 else "")
        item.notes.append(f"step{'s' if len(on_from) > 1 else ''} {named} connect"
                          f"{'' if len(on_from) > 1 else 's'} to the server of --from as"
                          f" {catalog.user} without the password --from gave (not written to"
                          " the job file: give the agents PGPASSWORD or a ~/.pgpass)")
    schedules = [s for s in (_schedule(sc, zone, job, item.notes) for sc in job.schedules)
                 if s is not None]
    _name_schedules(schedules)
    if schedules:
        doc["schedules"] = schedules
    doc["tasks"] = tasks
    item.document = doc
    return item


# -- steps -------------------------------------------------------------------------------------
def _task(step: PgStep, catalog: Catalog, connections: dict[str, str],
          notes: list[str]) -> dict[str, Any]:
    tolerant = step.on_error in ("s", "i")
    if step.kind == "s":
        conn = _connection(step, catalog, connections, notes)
        sql = step.code
        statements = split_statements(sql)
        if not statements and not tolerant:
            # PostgreSQL answers an empty query, which pgAgent counts as a failure.
            raise _Unrunnable(f"step {step.name!r} has no SQL statement, which pgAgent fails at"
                              " every run (an empty query), so the job fails there: fix it in"
                              " pgAgent and import again: not imported")
        bound = next((w for w in map(_transaction_bound, statements) if w), None)
        if bound is not None and len(statements) > 1 and _why(bound) == _REFUSED_WHY:
            # pgAgent's one query string is one implicit transaction block, so PostgreSQL
            # refuses the statement there: the step never ran in pgAgent.
            notes.append(f"step {step.name!r}: pgAgent sends its statements as one query"
                         f" string, in which PostgreSQL refuses its {bound} (cannot run inside"
                         " a transaction block), so the step failed at every pgAgent run;"
                         " taskplan runs its statements one by one, so it runs now, each"
                         " committing on its own")
        if tolerant:
            if bound is None:
                sql = _tolerant_sql(sql, step)
            else:
                notes.append(f"step {step.name!r}: on error {_ON_ERROR[step.on_error]}, but its"
                             f" {bound} cannot run inside a DO block ({_why(bound)}): a failure"
                             " fails the taskplan run and stops the steps after it")
        elif len(statements) > 1:
            if bound is None:
                # pgAgent sends the step as one query string: one implicit transaction.
                sql = f"BEGIN;\n{sql}\n;\nCOMMIT;"
            elif _why(bound) != _REFUSED_WHY:  # else said above: it never ran in pgAgent
                notes.append(f"step {step.name!r}: not run as one transaction, as pgAgent runs"
                             f" it, since its {bound} cannot run inside BEGIN ... COMMIT"
                             f" ({_why(bound)}): each statement outside a transaction the"
                             " step opens itself commits on its own, so a failure leaves those"
                             " before it committed")
        return {"sql": literal_text(sql), "connection": conn}
    if not step.code.strip():
        notes.append(f"step {step.name!r} has no code: pgAgent runs it as an empty script,"
                     " which succeeds: written as true")
        return {"shell": "true"}
    return {"shell": literal_text(_script(step.code, step, tolerant))}


_ON_ERROR = {"f": "fail", "s": "succeed", "i": "ignore"}


def _transaction_bound(statement: str) -> str | None:
    """The leading words (upper case) of a statement that cannot run inside a transaction
    block or a DO block, else None. Only code counts: a BEGIN in a comment, a string or a
    dollar-quoted body (a DO block, a function) is not a statement of the step."""
    code = " ".join(" ".join(t if k == CODE else " " for k, t in segments(statement)).split())
    code = code.lower()
    for words in _CONTROLS + _REFUSED:
        if code == words or code.startswith(words + " ") or code.startswith(words + "("):
            return words.upper()
    if _BARE_CLUSTER.fullmatch(code):
        return "CLUSTER"
    if m := _REINDEX_MANY.match(code):
        return f"REINDEX {m.group(2).upper()}"
    if _DATABASE_TABLESPACE.match(code):
        return "ALTER DATABASE ... SET TABLESPACE"
    first = code.split(" ", 1)[0]
    if first in ("create", "drop", "reindex", "alter") and _CONCURRENTLY.search(code):
        return f"{first.upper()} ... CONCURRENTLY"
    return None


def _why(words: str) -> str:
    if words.lower() in _CONTROLS:
        return "the step controls its transactions itself"
    if words == "CALL":
        return "the procedure may commit"
    return _REFUSED_WHY


_REFUSED_WHY = "PostgreSQL refuses it in a transaction"


def _tolerant_sql(sql: str, step: PgStep) -> str:
    """The step's SQL in a DO block that reports a failure as a notice instead of failing.

    pgAgent sends a step's SQL as one query string, i.e. one implicit transaction: EXECUTE of the
    same string inside the block is rolled back whole on an error, as there.
    """
    tag = "tp"
    while f"${tag}$" in sql or f"$q{tag}$" in sql:
        tag += "_"
    verdict = "succeeded" if step.on_error == "s" else "ignored"
    return (f"DO ${tag}$ BEGIN EXECUTE $q{tag}${sql}$q{tag}$; EXCEPTION WHEN OTHERS THEN"
            f" RAISE NOTICE 'step failed (%), {verdict} as pgAgent''s on error"
            f" {_ON_ERROR[step.on_error]} says', SQLERRM; END ${tag}$")


def _script(code: str, step: PgStep, tolerant: bool) -> str:
    """A shell command that runs the step's code as pgAgent does: saved to a file and executed,
    so a `#!` line picks the interpreter and anything else runs under sh."""
    code = code.replace("\r\n", "\n")
    if not tolerant and not code.lstrip().startswith("#!"):
        return code
    end = _HEREDOC
    while end in code:
        end += "_"
    if not code.endswith("\n"):
        code += "\n"
    if tolerant:
        verdict = "succeeded" if step.on_error == "s" else "ignored"
        finish = (f'[ "$rc" -eq 0 ] || echo "taskplan: step failed (exit code $rc),'
                  f' {verdict} as pgAgent\'s on error {_ON_ERROR[step.on_error]} says"\nexit 0')
    else:
        finish = 'exit "$rc"'
    return (f'f=$(mktemp) || exit 1\ncat > "$f" <<\'{end}\'\n{code}{end}\nchmod 700 "$f"\n'
            f'"$f"; rc=$?\nrm -f "$f"\n{finish}\n')


class _Unreadable(ValueError):
    """A connection string libpq cannot read."""


class _Unrunnable(Exception):
    """A step pgAgent fails at every run: the job is not imported (the message says why)."""


# libpq reads a connection string that starts so as a URI (postgresql://user@host/db?k=v).
_URI_PREFIXES = ("postgresql://", "postgres://")


def parse_conninfo(text: str) -> dict[str, str]:
    """A libpq connection string as a dict, read as pgAgent's libpq reads it
    (PQconninfoParse): `key=value key='quoted \\' value'`, or a URI
    `postgresql://user:password@host:port/dbname?key=value`."""
    for prefix in _URI_PREFIXES:
        if text.startswith(prefix):
            return _parse_uri(text, text[len(prefix):])
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        m = re.compile(r"(\w+)\s*=\s*").match(text, i)
        if not m:
            # Only the word: a password written without its `=` stays out of the report.
            raise _Unreadable("cannot read the connection string near"
                              f" {text[i:].split()[0][:20]!r} (expected key=value)")
        key, i = m.group(1), m.end()
        value = []
        quoted = i < n and text[i] == "'"
        i += int(quoted)  # past the opening quote
        # A quoted value ends at its closing quote, a bare one at white space; \ escapes both.
        while i < n and (text[i] != "'" if quoted else not text[i].isspace()):
            if text[i] == "\\" and i + 1 < n:
                i += 1
            value.append(text[i])
            i += 1
        if quoted and i >= n:
            raise _Unreadable(f"the connection string has an unterminated quoted value ({key})")
        i += int(quoted)  # past the closing quote
        out[key] = "".join(value)
    return out


def _parse_uri(text: str, rest: str) -> dict[str, str]:
    """libpq's URI form (conninfo_uri_parse_options): `[user[:password]@]` before the first
    `/`, then hosts `host[:port]` (`[v6]` in brackets) separated by commas, `/dbname`, and
    `?key=value&...`; every part percent-decoded."""

    def decoded(part: str) -> str:
        if re.search(r"%(?![0-9A-Fa-f]{2})", part) or "%00" in part:
            raise _Unreadable(f"the connection URI {_masked(text)!r} has a bad %-escape")
        try:
            return unquote_to_bytes(part).decode()
        except UnicodeDecodeError:
            raise _Unreadable(f"the connection URI {_masked(text)!r} is not UTF-8") from None

    out: dict[str, str] = {}
    head, at, tail = rest.partition("@")
    if at and "/" not in head:
        user, colon, password = head.partition(":")
        if user:
            out["user"] = decoded(user)
        if colon and password:
            out["password"] = decoded(password)
        rest = tail
    hostspec = re.match(r"(\[[^\]]*\]|[^/?])*", rest)
    assert hostspec is not None  # matches the empty text at least
    hosts: list[str] = []
    ports: list[str] = []
    for one in hostspec.group(0).split(","):
        m = re.fullmatch(r"\[([^\]]*)\](?::(.*))?|([^:\[\]]*)(?::(.*))?", one)
        if m is None:
            raise _Unreadable(f"cannot read the host {one!r} of the connection URI"
                              f" {_masked(text)!r}")
        hosts.append(decoded(m.group(1) if m.group(1) is not None else m.group(3)))
        ports.append(decoded(m.group(2) or m.group(4) or ""))
    if any(hosts):
        out["host"] = ",".join(hosts)
    if any(ports):
        out["port"] = ",".join(ports)
    rest = rest[hostspec.end():]
    if rest.startswith("/"):
        dbname, _, query = rest[1:].partition("?")
        if dbname:
            out["dbname"] = decoded(dbname)
    else:
        query = rest[1:]  # after the `?`, or nothing
    for pair in filter(None, query.split("&")):
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise _Unreadable(f"the parameter {pair!r} of the connection URI"
                              f" {_masked(text)!r} is not key=value")
        key, value = decoded(key), decoded(value)
        if key == "ssl" and value == "true":  # libpq's synonym
            key, value = "sslmode", "require"
        out[key] = value
    return out


def _masked(uri: str) -> str:
    return re.sub(r"^([^/]*//[^:/@]*:)[^@/]*@", r"\1***@", uri)


def _url(host: str, port: str | int | None, user: str | None, dbname: str,
         extra: dict[str, str]) -> str:
    params = dict(extra)
    # A Unix-socket folder goes in the query, as libpq reads it; so do several hosts (libpq
    # tries each in turn, with the port at the same place in the port list), since a URL's
    # host:port part holds one port and the sql tasks' URL reader takes no list there.
    if host.startswith("/") or "," in host or "," in str(port or ""):
        params["host"], host = host, ""
        if not params["host"]:
            del params["host"]
    netloc = (quote(user, safe="") + "@" if user else "") + (
        f"[{host}]" if ":" in host else quote(host, safe=""))
    if port and host:
        netloc += f":{port}"
    elif port:
        params["port"] = str(port)
    query = "&".join(f"{quote(k)}={quote(v, safe='/,' if k in ('host', 'port') else '/')}"
                     for k, v in sorted(params.items()))
    return f"postgresql://{netloc}/{quote(dbname, safe='')}" + (f"?{query}" if query else "")


def _connection(step: PgStep, catalog: Catalog, connections: dict[str, str],
                notes: list[str]) -> str:
    """The name of the step's connection, added to `connections` when new."""
    if step.connstr:
        info = parse_conninfo(step.connstr)  # _Unreadable: the job is not imported
        if info.pop("password", None) is not None:
            notes.append(f"step {step.name!r}: the password of its connection string is not "
                         "written to the job file (give the agents PGPASSWORD or a ~/.pgpass)")
        host, port = info.pop("host", ""), info.pop("port", "")
        if "service" in info:
            # libpq takes what the string leaves out from the service file (pg_service.conf):
            # a server or database added here would override it.
            user, dbname = info.pop("user", ""), info.pop("dbname", "")
        else:
            if host or info.get("hostaddr"):
                # libpq's port for a string naming a server without one (PGPORT aside).
                port = port or "5432"
            else:
                # No server named: pgAgent's libpq connects to its local server, the best guess
                # of which is the catalog's.
                host, port = catalog.host, port or str(catalog.port)
            user = info.pop("user", "") or catalog.user
            dbname = info.pop("dbname", "") or user
        url = _url(host, port, user, dbname, info)
        label = dbname or info.get("service", "")
    else:
        label = dbname = step.dbname
        url = _url(catalog.host, catalog.port, catalog.user, dbname, {})
    for name, known in connections.items():
        if known == url:
            return name
    base = re.sub(r"[^A-Za-z0-9_]+", "_", label).strip("_") or "db"
    name, n = base, 2
    while name in connections:
        name, n = f"{base}_{n}", n + 1
    connections[name] = url
    return name


# -- schedules ---------------------------------------------------------------------------------
def calendar_fields(sc: PgSchedule) -> dict[str, list[Any]]:
    """pgAgent's arrays as calendar keys. An array with nothing set means "any"; taskplan's
    calendar reads `hours` alone as minute 0, so minutes are always listed when hours are."""
    minutes = [i for i, on in enumerate(sc.minutes) if on] or list(range(60))
    hours = [i for i, on in enumerate(sc.hours) if on]
    out: dict[str, list[Any]] = {}
    if hours and len(hours) < 24:
        out["hours"] = hours
    out["minutes"] = minutes
    # pgAgent: index 1 = Sunday (date_part DOW + 1); taskplan: 0 = Monday.
    days = sorted((i + 6) % 7 for i, on in enumerate(sc.weekdays) if on)
    if days and len(days) < 7:
        out["weekdays"] = [WEEKDAY_NAMES[d] for d in days]
    monthdays: list[Any] = [i + 1 for i, on in enumerate(sc.monthdays[:31]) if on]
    if sc.monthdays[31]:
        monthdays.append("last")
    if monthdays:
        out["monthdays"] = monthdays
    months = [MONTH_NAMES[i] for i, on in enumerate(sc.months) if on]
    if months and len(months) < 12:
        out["months"] = months
    return out


def _as_calendar(fields: dict[str, list[Any]]) -> Calendar:
    return Calendar(
        minutes=tuple(fields.get("minutes", ())), hours=tuple(fields.get("hours", ())),
        weekdays=tuple(WEEKDAY_NAMES.index(d) for d in fields.get("weekdays", ())),
        monthdays=tuple(-1 if d == "last" else d for d in fields.get("monthdays", ())),
        months=tuple(MONTH_NAMES.index(m) + 1 for m in fields.get("months", ())))


def _wall(at: datetime, zone: str, *, floor_minute: bool) -> str:
    local = at.astimezone(ZoneInfo(zone)).replace(tzinfo=None, microsecond=0)
    if floor_minute:
        local = local.replace(second=0)
    return local.isoformat(timespec="seconds" if local.second else "minutes")


def _schedule(sc: PgSchedule, zone: str, job: PgJob, notes: list[str]) -> dict[str, Any] | None:
    label = f"schedule {sc.name!r}"
    fields = calendar_fields(sc)
    problems = check_calendar(_as_calendar(fields))
    if problems:
        notes.append(f"{label}: {'; '.join(problems)} (pgAgent would never run it): "
                     "not imported")
        return None
    if sc.never_starts or sc.ended_before_time:
        what = "starts after year 9999" if sc.never_starts else "ends before year 1"
        notes.append(f"{label}: it {what} ('infinity'?), so pgAgent never runs it:"
                     " not imported")
        return None
    out: dict[str, Any] = {"name": sc.name}
    out.update(fields)
    # pgAgent's first firing is at or after jscstart truncated to the minute, in local time.
    # A start before year 1 ('-infinity') is no bound: it fires from now on.
    if sc.start is not None:
        out["start"] = _wall(sc.start, zone, floor_minute=True)
    if sc.end is not None:
        out["end"] = _wall(sc.end, zone, floor_minute=False)
    if sc.start is not None and sc.end is not None:
        start, end = (datetime.fromisoformat(out[k]) for k in ("start", "end"))
        if end < start:
            notes.append(f"{label}: it ends before its start ({out['end']}), so pgAgent never"
                         " runs it: not imported")
            return None
        if end == start:
            # pgAgent's way of running a job once (end = start): it fires at that minute if the
            # arrays allow it. taskplan wants an end after the start; firings are whole
            # minutes, so this end allows the same one.
            out["end"] = (end + timedelta(seconds=59)).isoformat(timespec="seconds")
    if not sc.enabled:
        out["enabled"] = False
    exceptions = list(_exceptions(sc, label, notes))
    if exceptions:
        out["exceptions"] = exceptions
    return out


def _exceptions(sc: PgSchedule, label: str, notes: list[str]) -> Iterable[dict[str, Any]]:
    """pgAgent suppresses a firing whose local date and time equal an exception's (a missing
    date or time matching any)."""
    for ex in sc.exceptions:
        if ex.never is not None:
            notes.append(f"{label}: exception {ex.id} on {ex.never} never matches a firing"
                         " (as in pgAgent): left out")
            continue
        if ex.date is None and ex.time is None:
            notes.append(f"{label}: exception {ex.id} has neither date nor time (pgAgent "
                         "ignores it): left out")
            continue
        if ex.time is not None and (ex.time.second or ex.time.microsecond):
            notes.append(f"{label}: exception {ex.id} at {ex.time.isoformat()} is not a whole "
                         "minute, so it never matches a firing (as in pgAgent): left out")
            continue
        entry: dict[str, Any] = {}
        if ex.date is not None:
            entry["dates"] = [_day(ex.date)]
        if ex.time is not None:
            entry["at"] = [_clock(ex.time)]
        yield entry


def _day(d: date) -> str:
    return d.isoformat()


def _clock(t: time) -> str:
    return f"{t.hour:02d}:{t.minute:02d}"


def _name_schedules(schedules: Sequence[dict[str, Any]]) -> None:
    """Schedule names must be unique, non-empty and not a number."""
    seen: set[str] = set()
    for i, s in enumerate(schedules):
        base = " ".join(str(s["name"]).split())
        if not base or base.isdigit():
            base = f"schedule {base or i + 1}"
        base = fit_name(base, " ")
        name, n = base, 2
        while name in seen:
            name, n = f"{base} ({n})", n + 1
        seen.add(name)
        s["name"] = name
