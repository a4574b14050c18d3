"""What every command shares: finding the store, exit codes, times, JSON and errors."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from collections.abc import Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from taskplan.errors import (
    DefinitionError,
    NoStoreError,
    StoreUnavailableError,
    TaskplanError,
    UsageError,
)
from taskplan.spec.durations import elapsed_text

if TYPE_CHECKING:
    from taskplan.config import Settings
    from taskplan.engine import Engine
    from taskplan.forecast import RunForecast
    from taskplan.store.db import Store

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT, EXIT_STORE = 0, 1, 2, 3
# The largest whole number a store column holds (SQLite's INTEGER, PostgreSQL's bigint): a run
# id, count or limit past it is refused by name, not left to overflow in the driver.
INT64_MAX = 2**63 - 1
# The dates the options take. datetime ends at years 1 and 9999; the margin keeps a zone's
# offset, or the day added to a bare `--to DATE`, from crossing either end.
EARLIEST, LATEST = date(1900, 1, 1), date(9998, 12, 31)
F = TypeVar("F", bound=Callable[..., Any])


def db_option(fn: F) -> F:
    """`--db URL` on every command (also accepted before the command name)."""
    return click.option(
        "--db", "db", default=None, metavar="URL",
        help="Store URL (else TASKPLAN_DB, else taskplan.toml, else sqlite:///taskplan.db).",
    )(fn)


def log_options(fn: F) -> F:
    """`--log-format text|json`, `--quiet`, `-v`: what a daemon prints on stderr."""
    fn = click.option("-v", "--verbose", "verbose", count=True,
                      help="More detail (-v: debug).")(fn)
    fn = click.option("--quiet", "-q", "quiet", is_flag=True,
                      help="Only warnings and errors.")(fn)
    return click.option("--log-format", "log_format", type=click.Choice(["text", "json"]),
                        default="text", show_default=True,
                        help="One line per event: plain text, or a JSON object.")(fn)


def setup_logging(log_format: str, quiet: bool, verbose: int) -> None:
    from taskplan.logsetup import configure

    configure(log_format, -1 if quiet else verbose)


def prepare_daemon() -> None:
    """What a daemon does at start rather than in the middle of its first run or firing:
    build the job-file validators, and stamp taskplan's code for the cache of checked
    definitions (an agent's first claim of a version reads it)."""
    from taskplan.spec import build_validators
    from taskplan.spec.checked import warm_up

    build_validators()
    warm_up()


def stop_signals() -> tuple[signal.Signals, ...]:
    """The signals a long-running command handles as a request to stop: SIGINT, SIGTERM, and
    SIGHUP (its terminal closed, its ssh session lost), unless SIGHUP is ignored (`nohup`).
    Left to its default, a hang-up would kill the process at once and leave its tasks behind,
    running for nobody."""
    signals = [signal.SIGINT, signal.SIGTERM]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signals.append(signal.SIGHUP)
    return tuple(signals)


def after_hangup(signum: int) -> None:
    """On SIGHUP the terminal is gone: what the command still prints (progress, its summary,
    log lines) to it goes to /dev/null, instead of failing to reach it (and the exit code with
    it). Output redirected to a file or a pipe still goes there: only the terminal is gone."""
    if signum != signal.SIGHUP:
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            if os.isatty(fd):
                os.dup2(null, fd)
    finally:
        os.close(null)


def whole(minimum: int) -> click.IntRange:
    """An integer option from `minimum` up to what the store holds."""
    return click.IntRange(minimum, INT64_MAX)


# agents.slots is a 32-bit integer on PostgreSQL: more slots than that failed mid-command
# (after `run FILE` had stored the job), so --workers/--slots stop there.
SLOTS_MAX = 2**31 - 1


def slot_count() -> click.IntRange:
    """A --workers or --slots option: 1 up to what the store keeps."""
    return click.IntRange(1, SLOTS_MAX)


class Seconds(click.types.FloatParamType):
    """A number of seconds from `minimum` to `maximum`. Not click's FloatRange: it takes nan
    (which no bound refuses, as nan compares false) and inf."""

    name = "seconds"

    def __init__(self, minimum: float, maximum: float) -> None:
        self.minimum, self.maximum = minimum, maximum

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = float("nan")
        if not self.minimum <= seconds <= self.maximum:  # also false for nan
            self.fail(f"expected a number of seconds from {self.minimum:g} to"
                      f" {self.maximum:g}, got {value!r}", param, ctx)
        return seconds


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)


# Only these commands may create a store that does not exist yet; every other one answers
# "no store at ..." (exit 2) rather than leave an empty store behind a typo in --db.
CREATING_COMMANDS = frozenset({"apply", "run", "agent", "scheduler", "serve", "import"})


class Context:
    """Lazily opened store and engine for one command invocation. Commands that only read
    (status, runs, logs) take `store` and never import the engine."""

    def __init__(self, db: str | None, *, create: bool = True) -> None:
        self._db = db
        self.create = create
        self._scratch: Any = None  # a TemporaryDirectory holding a scratch store
        self._settings: Settings | None = None
        self._store: Store | None = None
        self._engine: Engine | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from taskplan.config import load_settings

            self._settings = load_settings(self._db)
        return self._settings

    @property
    def store(self) -> Store:
        if self._store is None:
            from taskplan.notify.config import configure_store, default_rules
            from taskplan.store.db import Store

            # A bad taskplan.toml is reported before a missing store.
            default_rules(self.settings)
            store = Store(self.settings.db, create=self.create)
            configure_store(store, self.settings)
            if self.settings.pools:
                from taskplan.store import ops

                with store.tx() as tx:
                    for name, size in self.settings.pools.items():
                        ops.upsert_pool(tx, name, size)
            self._store = store
        return self._store

    def existing_store(self) -> Store | None:
        """The store if it exists already, else None: what a check before anything is
        written, or a dry run, reads, without creating a store to find it empty."""
        if self._store is not None:
            return self._store
        create, self.create = self.create, False
        try:
            return self.store
        except NoStoreError:
            return None
        finally:
            self.create = create

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from taskplan.engine import Engine

            engine = Engine(self.store)
            engine.default_tz = self.settings.timezone
            engine.shared_connections = dict(self.settings.connections)
            engine.configured_pools = dict(self.settings.pools)
            self._engine = engine
        return self._engine

    def engine_or_scratch(self) -> Engine:
        """The store's engine; with no store yet, an empty scratch store's (removed on close),
        for commands that read a job file and would only use the store for history."""
        try:
            return self.engine
        except NoStoreError:
            import tempfile

            from taskplan.engine import Engine
            from taskplan.store.db import Store

            self._scratch = tempfile.TemporaryDirectory(prefix="taskplan-scratch-")
            self._engine = Engine(Store(f"sqlite:///{self._scratch.name}/scratch.db"))
            self._engine.default_tz = self.settings.timezone
            return self._engine

    def close(self) -> None:
        if self._engine is not None and self._engine.store is not self._store:
            self._engine.store.close()  # the scratch store
        if self._store is not None:
            self._store.close()
        if self._scratch is not None:
            self._scratch.cleanup()


def share_connections(ctx: Context) -> None:
    """Let job files name the shared connections (taskplan.toml's [connections], and those
    applied to the store) without declaring them. A SQLite store that does not exist yet is
    not created for this."""
    from taskplan.spec.shared import SHARED

    names = set(ctx.settings.connections)
    try:
        store = ctx.existing_store()
        if store is not None:
            from taskplan.store import connection_ops

            with store.read() as tx:
                names |= {c.name for c in connection_ops.all_connections(tx)}
    except StoreUnavailableError:
        pass  # checking files needs no store: only the store's own names are unknown
    SHARED.set(frozenset(names))


def get_context(db: str | None) -> Context:
    ctx = click.get_current_context()
    root = ctx.find_root()
    root_db = root.params.get("db") if root.params else None
    obj: Context | None = root.obj if isinstance(root.obj, Context) else None
    if obj is None:
        top = ctx
        while top.parent is not None and top.parent is not root:
            top = top.parent  # `import crontab ...`: the command under `taskplan` decides
        # `is not None`, not `or`: an empty --db is an error to report, not "not given".
        obj = Context(db if db is not None else root_db,
                      create=top.info_name in CREATING_COMMANDS)
        root.obj = obj
        ctx.call_on_close(obj.close)
    elif db is not None:
        obj._db = db
    return obj


def one_line(message: str) -> str:
    """Driver errors span lines (hints, SQLAlchemy's "Background on this error"): fold them."""
    lines = [ln.strip() for ln in message.splitlines()
             if ln.strip() and not ln.strip().startswith("(Background on this error")]
    return " ".join(lines)


def stdout_gone() -> bool:
    """The reader of stdout went away (`logs --follow | head -3`): a command that only prints
    has nothing left to do. (main._ReaderGone keeps the writes from failing.)"""
    raw = getattr(getattr(sys.stdout, "buffer", None), "raw", None)
    return bool(getattr(raw, "gone", False))


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    from taskplan.cli.terminal_text import safe_line
    from taskplan.store.urls import mask_url  # only on the way out

    click.echo(f"taskplan: {safe_line(one_line(mask_url(message)))}", err=True)
    sys.exit(code)


def handle_errors(fn: F) -> F:
    """Turn taskplan's errors into one-line messages and the documented exit codes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DefinitionError as exc:
            from taskplan.cli.terminal_text import safe_line
            from taskplan.store.urls import mask_url

            for problem in exc.problems:
                # A problem quotes the file: its name and keys may hold escape sequences.
                click.echo(safe_line(mask_url(str(problem))), err=True)
            sys.exit(EXIT_BAD_INPUT)
        except StoreUnavailableError as exc:
            fail(str(exc), EXIT_STORE)
        except UsageError as exc:
            fail(str(exc), EXIT_BAD_INPUT)
        except TaskplanError as exc:
            fail(str(exc), EXIT_BAD_INPUT)
        except OSError as exc:
            fail(str(exc), EXIT_BAD_INPUT)
        except Exception as exc:
            # The last resort: one line, not a traceback (values out of datetime's or an
            # integer's range end up here). `--debug` shows the traceback instead.
            if os.environ.get("TASKPLAN_DEBUG"):
                raise
            fail(f"{type(exc).__name__}: {exc} (taskplan --debug ... shows where)",
                 EXIT_BAD_INPUT)

    return wrapper  # type: ignore[return-value]



def short_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def clock_time(ts: float, now: float) -> str:
    """06:42 today, else the date too: a time people read at a glance."""
    local = datetime.fromtimestamp(ts).astimezone()
    same_day = local.date() == datetime.fromtimestamp(now).astimezone().date()
    return local.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M")


def forecast_line(forecast: RunForecast | None, now: float) -> str:
    """`finishes ~06:42 (critical path: a -> b -> c)`, or why there is no forecast."""
    if forecast is None:
        return "finishes: no forecast (no agent is alive to run it)"
    path = " -> ".join(forecast.critical_path) or "nothing left to start"
    return f"finishes ~{clock_time(forecast.finish_at, now)} (critical path: {path})"


def duration(start: float | None, end: float | None) -> str:
    if start is None:
        return "-"
    if end is None:
        return "…"
    return elapsed_text(end - start, hours=False)


def print_json(value: Any) -> None:
    try:
        text = json.dumps(value, indent=2, default=str, allow_nan=False)
    except ValueError:
        # A NaN or infinity (a SQL row's float) is no JSON: null, as the web API gives it.
        from taskplan.shapes import finite

        text = json.dumps(finite(value), indent=2, default=str, allow_nan=False)
    click.echo(text)


def parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param expects KEY=VALUE, got {pair!r}")
        if key.strip() in params:  # the last one won, unsaid, even with another value
            raise UsageError(f"--param {key.strip()} is given twice ({key.strip()}="
                             f"{params[key.strip()]} and {pair}); give it once")
        params[key.strip()] = value
    return params


def parse_run_id(text: str) -> int:
    return parse_id(text, "run")


def parse_id(text: str, what: str) -> int:
    """The id of a `what` (a run, a notification): a whole number the store can hold."""
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"expected a {what} id (a whole number), got {text!r}") from None
    if not 1 <= value <= INT64_MAX:
        raise UsageError(f"expected a {what} id between 1 and {INT64_MAX}, got {value}")
    return value


def check_day(day: date, option: str, text: str) -> None:
    """Refuse the day `text` given to `option` names if no option takes it."""
    if not EARLIEST <= day <= LATEST:
        raise UsageError(f"{option} expects a date between {EARLIEST} and {LATEST}, "
                         f"got {text!r}")
