"""Where taskplan finds its store and settings: --db, TASKPLAN_DB, taskplan.toml, a default."""

from __future__ import annotations

import math
import os
import re
from dataclasses import field
from pathlib import Path
from typing import Any

from taskplan.dataclass import dataclass
from taskplan.errors import UsageError

DEFAULT_DB = "sqlite:///taskplan.db"
CONFIG_NAME = "taskplan.toml"
# Every top-level key taskplan.toml may hold; anything else is an error (a misspelt key would
# otherwise be ignored silently). A helper adding a key adds it here.
KNOWN_KEYS = frozenset({"db", "timezone", "pools", "lease_seconds", "connections", "notify",
                        "smtp", "console_url"})


@dataclass(frozen=True)
class Settings:
    db: str
    timezone: str = "UTC"
    pools: dict[str, int] = field(default_factory=dict)
    lease_seconds: float = 30.0
    config_path: Path | None = None
    # Notifications (docs/operations.md): `[[notify]]` default rules, checked when the store
    # is opened (notify.config); `[smtp]` host/port/sender; the web console's base URL for
    # the links in notifications.
    notify: tuple[dict[str, Any], ...] = ()
    smtp: dict[str, Any] = field(default_factory=dict)
    console_url: str | None = None
    # [connections]: shared connection name -> URL with ${VAR} / ${file:...} unresolved.
    connections: dict[str, str] = field(default_factory=dict)


def find_config() -> Path | None:
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib  # only where a taskplan.toml exists

    from taskplan.utf8 import NotUtf8, decode

    try:
        return tomllib.loads(decode(path.read_bytes()))
    except NotUtf8 as exc:
        raise UsageError(f"{path}:{exc.line}:{exc.col}: {exc.message}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from exc


def _check_keys(path: Path, data: dict[str, Any]) -> None:
    unknown = sorted(set(data) - KNOWN_KEYS)
    if not unknown:
        return
    key = unknown[0]
    line = _line_of(path, key)
    import difflib  # only on the way to an error

    close = difflib.get_close_matches(key, sorted(KNOWN_KEYS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise UsageError(f"{path}:{line}: unknown key {key!r} (expected one of "
                     f"{', '.join(sorted(KNOWN_KEYS))}){hint}")


def _line_of(path: Path, key: str) -> int:
    """The line defining top-level `key` (`key = ...`, `key.sub = ...` or `[key]`), else 1."""
    quoted = f"(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')"
    pattern = re.compile(rf"^\s*(?:\[\[?\s*{quoted}\s*[\].]|{quoted}\s*[=.])")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return 1
    for number, text in enumerate(lines, 1):
        if pattern.match(text):
            return number
    return 1


def key_line(path: Path | None, table_line: int, key: str) -> int:
    """The line of `key = ...` in the table whose header is at `table_line` (up to the next
    table), else `table_line`."""
    if path is None:
        return table_line
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return table_line
    assignment = re.compile(rf"^\s*(?:{re.escape(key)}|\"{re.escape(key)}\"|"
                            rf"'{re.escape(key)}')\s*=")
    for number in range(table_line + 1, len(lines) + 1):
        text = lines[number - 1]
        if text.lstrip().startswith("["):
            break
        if assignment.match(text):
            return number
    return table_line


def entry_line(path: Path | None, table: str, index: int) -> int:
    """The line of the `index`-th `[[table]]` header (0-based), else of the `table` key."""
    if path is None:
        return 1
    header = re.compile(rf"^\s*\[\[\s*(?:{re.escape(table)}|\"{re.escape(table)}\")\s*\]\]")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return 1
    found = [n for n, text in enumerate(lines, 1) if header.match(text)]
    return found[index] if index < len(found) else _line_of(path, table)


def _where(path: Path | None, key: str) -> str:
    """`file:line` of a top-level key, for errors."""
    return f"{path}:{_line_of(path, key) if path else 1}"


# The store keeps a pool's name in a column of this many characters (as a job file's pool
# names are bounded): a longer one passed here and PostgreSQL refused it mid-command.
MAX_POOL_NAME = 200
POOL_MAX = 2**31 - 1  # the store's integer column, as a job file's pool sizes are bounded


def _checked_pools(path: Path | None, pools: object) -> dict[str, int]:
    """`[pools]`, each entry refused at its own line: a name the store cannot keep, or a size
    that is not a whole number >= 1."""
    table_line = _line_of(path, "pools") if path else 1
    if not isinstance(pools, dict):
        raise UsageError(f"{path}:{table_line}: pools: expected a table of pool name = size"
                         f" ([pools] then mart = 4), got {pools!r}")
    for name, size in pools.items():
        at = f"{path}:{key_line(path, table_line, name)}"
        if not name:
            raise UsageError(f"{at}: pools: expected a pool name, got ''")
        if len(name) > MAX_POOL_NAME:
            raise UsageError(f"{at}: pools: expected a pool name of at most {MAX_POOL_NAME}"
                             f" characters (the store keeps no more), got one of {len(name)}")
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= POOL_MAX:
            raise UsageError(f"{at}: pools.{name}: expected a whole number from 1 to"
                             f" {POOL_MAX}, got {size!r}")
    return {str(k): int(v) for k, v in pools.items()}


def _store_url(db: str | None, path: Path | None, data: dict[str, Any]) -> str:
    """The first of --db, TASKPLAN_DB, taskplan.toml's db that is given, else the default.
    Given but empty is an error, not "not given": a blank variable or `--db "$UNSET"` would
    otherwise quietly use, and create, ./taskplan.db."""
    env = os.environ.get("TASKPLAN_DB")
    if db is not None:
        url, where = db, "--db"
    elif env is not None:
        url, where = env, "TASKPLAN_DB"
    elif "db" in data:
        url, where = data["db"], f"{path}:{_line_of(path, 'db') if path else 1}: db"
        if not isinstance(url, str):
            raise UsageError(f"{where} must be a string URL")
    else:
        return DEFAULT_DB
    if not url.strip():
        raise UsageError(f"{where}: the store URL is empty (expected a URL such as "
                         "sqlite:///taskplan.db, or leave it unset for the default)")
    return url


def _timezone(path: Path | None, data: dict[str, Any]) -> str:
    """taskplan.toml's `timezone`, checked here: every command that reads a schedule uses it,
    and a bad one would otherwise surface only there, as a lookup error."""
    if "timezone" not in data:
        return "UTC"
    name = data["timezone"]
    where = f"{path}:{_line_of(path, 'timezone') if path else 1}: timezone"
    if not isinstance(name, str):
        raise UsageError(f"{where}: expected an IANA time zone name as a string, such as"
                         f" \"Europe/Paris\", got {name!r}")
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # The job file's check says it in these words too (timing.check_timezone).
        raise UsageError(f"{where}: unknown time zone {name!r} (expected an IANA name such"
                         " as Europe/Paris)") from None
    return name


def _lease_seconds(path: Path | None, data: dict[str, Any]) -> float:
    """TASKPLAN_LEASE_SECONDS, else taskplan.toml's `lease_seconds`, else 30: at least 1 and
    finite (a lease of inf would never end, and nan compares false with every instant)."""
    env = os.environ.get("TASKPLAN_LEASE_SECONDS")
    if env:
        value: Any = env
        where = "TASKPLAN_LEASE_SECONDS"
    elif "lease_seconds" in data:
        value = data["lease_seconds"]
        where = f"{path}:{_line_of(path, 'lease_seconds') if path else 1}: lease_seconds"
    else:
        return 30.0
    try:
        lease = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        lease = math.nan
    if not (math.isfinite(lease) and lease >= 1.0):
        raise UsageError(f"{where}: expected a number of seconds >= 1, got {value!r}")
    return lease


# The keys of [smtp]; each may also come from TASKPLAN_SMTP_<KEY>, which wins.
SMTP_KEYS = ("host", "port", "from", "starttls", "ssl", "cafile")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _smtp(path: Path | None, data: dict[str, Any]) -> dict[str, Any]:
    """[smtp], checked here (with the TASKPLAN_SMTP_* variables that override it): a bad port
    would otherwise fail every e-mail later with a bare ValueError, and a misspelt key or a
    starttls/ssl value nobody reads would quietly send mail some other way."""
    smtp = data.get("smtp", {})
    line = _line_of(path, "smtp") if path else 1
    where = f"{path}:{line}: [smtp]"
    if not isinstance(smtp, dict):
        raise UsageError(f"{where} must be a table ([smtp])")

    def at(key: str) -> str:  # the key's own line
        return f"{path}:{key_line(path, line, key)}: [smtp]"

    for key in smtp:
        if key in ("user", "password"):
            raise UsageError(f"{at(key)} {key}: credentials are not read from the file; set"
                             f" TASKPLAN_SMTP_{key.upper()} in the environment")
        if key not in SMTP_KEYS:
            import difflib  # only on the way to an error

            close = difflib.get_close_matches(key, SMTP_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"{at(key)}: unknown key {key!r} (expected one of"
                             f" {', '.join(SMTP_KEYS)}){hint}")
    for key in SMTP_KEYS:
        variable = f"TASKPLAN_SMTP_{key.upper()}"
        if variable in os.environ:
            value: Any = os.environ[variable]
            named = variable
        elif key in smtp:
            value, named = smtp[key], f"{at(key)} {key}"
        else:
            continue
        problem = _smtp_problem(key, value)
        if problem:
            raise UsageError(f"{named}: expected {problem}, got {value!r}")
    return dict(smtp)


def _smtp_problem(key: str, value: Any) -> str | None:
    """What an [smtp] value should have been, or None if it is fine (strings from the
    environment included)."""
    if key == "port":
        text = str(value).strip() if not isinstance(value, bool | float) else ""
        ok = text.isdigit() and 1 <= int(text) <= 65535
        return None if ok else "a port number from 1 to 65535"
    if key == "starttls":
        ok = isinstance(value, str) and value.lower() in ("auto", "always", "never")
        return None if ok else "auto, always or never"
    if key == "ssl":
        ok = isinstance(value, bool) or (
            isinstance(value, str) and value.lower() in _TRUE + _FALSE)
        return None if ok else "true or false"
    if not (isinstance(value, str) and value.strip()):
        return "a non-empty string"
    if key == "from":
        from taskplan.notify.rules import sender_problem  # only with a [smtp] from

        if sender_problem(value):
            return "an e-mail address like taskplan@example.com"
    return None


def load_settings(db: str | None = None) -> Settings:
    """Resolve settings in order: --db, TASKPLAN_DB, taskplan.toml, default."""
    path = find_config()
    data = _read_toml(path) if path else {}
    if path is not None:
        _check_keys(path, data)
    url = _store_url(db, path, data)
    pools = _checked_pools(path, data.get("pools", {}))
    from_file = db is None and "TASKPLAN_DB" not in os.environ and "db" in data
    if path is not None and from_file and url.startswith("sqlite:///") and not url.startswith(
        "sqlite:////"
    ):
        # A relative SQLite path in taskplan.toml is relative to that file, not to the cwd.
        url = "sqlite:///" + str((path.parent / url[len("sqlite:///"):]).resolve())
    lease = _lease_seconds(path, data)
    notify = data.get("notify", [])
    if not isinstance(notify, list) or not all(isinstance(n, dict) for n in notify):
        raise UsageError(f"{_where(path, 'notify')}: 'notify' must be a list of tables"
                         " ([[notify]] entries)")
    smtp = _smtp(path, data)
    console_url = data.get("console_url")
    if console_url is not None and not (
            isinstance(console_url, str) and re.fullmatch(r"https?://[^\s/]+\S*", console_url)):
        # The base of every link in notifications: anything else makes links that lead nowhere.
        raise UsageError(f"{_where(path, 'console_url')}: console_url: expected the web"
                         " console's http:// or https:// URL, such as"
                         f" \"https://taskplan.example.com\", got {console_url!r}")
    connections = data.get("connections", {})
    if not isinstance(connections, dict) or not all(
        isinstance(v, str) and "://" in v for v in connections.values()
    ):
        raise UsageError(f"{_where(path, 'connections')}: [connections] must map names to URLs"
                         " (e.g. mart = \"postgresql://etl:${MART_PASSWORD}@db/mart\")")
    return Settings(
        db=url,
        connections={str(k): v for k, v in connections.items()},
        timezone=_timezone(path, data),
        pools=pools,
        lease_seconds=float(lease),
        config_path=path,
        notify=tuple(notify),
        smtp=dict(smtp),
        console_url=console_url,
    )
