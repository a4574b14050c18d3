"""The contract between the agent and the code that runs one attempt of a task.

The agent renders the command, builds an `ExecRequest`, and calls `executor_for(kind).execute`
on one of its slot threads. Executors never raise for a task's own failure: everything the task
did wrong comes back as an `ExecResult`. They know nothing of the store, so they can be tested
(and reused) with nothing but processes and threads.
"""

from __future__ import annotations

import logging
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import field
from typing import Any, Protocol

from taskplan.dataclass import dataclass
from taskplan.errors import TaskplanError
from taskplan.model import TaskSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True, hot=True)
class AttemptContext:
    """What a task sees of its run. Python tasks receive this very object as their argument."""

    run_id: int
    task: str
    attempt: int  # 1-based
    params: Mapping[str, Any]
    item: Any | None  # the foreach item: a dict for sql rows, any JSON value otherwise
    results: Mapping[str, Any]  # upstream results by task name
    # The schedule instant the run stands for (else its creation), ISO 8601 in the job's zone.
    fire_time: str | None = None


class MissingResultError(KeyError):
    """`ctx.results[name]` for a name with no result; its message lists the names there are."""

    def __str__(self) -> str:
        return str(self.args[0])


def missing_result(key: object, waits_for: Sequence[str], found: Mapping[str, Any]
                   ) -> MissingResultError:
    have = ", ".join(sorted(found)) or "none"
    if key in waits_for:
        return MissingResultError(f"no result for {key!r}: it did not succeed"
                                  f" (results has: {have})")
    return MissingResultError(f"no result for {key!r}: not a task this one waits for"
                              f" (results has: {have})")


class LazyResults(Mapping[str, Any]):
    """`ctx.results`, read only when a task first asks (most never do): the agent reads the
    store, a python worker asks its agent. `_fetch` returns the results; `waits_for` names the
    tasks this one waits for (a missing key is explained by them)."""

    def __init__(self, waits_for: Sequence[str] = ()) -> None:
        self.waits_for = waits_for
        self._found: dict[str, Any] | None = None

    @abstractmethod
    def _fetch(self) -> dict[str, Any]: ...

    def _load(self) -> dict[str, Any]:
        if self._found is None:
            self._found = self._fetch()
        return self._found

    def __getitem__(self, key: str) -> Any:
        found = self._load()
        try:
            return found[key]
        except KeyError:
            raise missing_result(key, self.waits_for, found) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return repr(self._load())


@dataclass(frozen=True, hot=True)
class ExecRequest:
    context: AttemptContext
    spec: TaskSpec
    command: str | tuple[str, ...]  # already rendered by the caller
    base_dir: str  # the job file's folder: default cwd and python import root
    timeout: float | None  # seconds; None waits forever
    extra_env: Mapping[str, str] = field(default_factory=dict)
    # sql tasks: the job's URL for the task's connection (${VAR} not yet expanded), and the
    # template values; the sql executor renders `command` itself to quote identifiers for
    # the target dialect.
    connection_url: str | None = None
    template_values: Mapping[str, Any] | None = None


@dataclass(frozen=True, hot=True)
class ExecResult:
    ok: bool
    exit_code: int | None = None
    result: Any = None  # JSON-serialisable
    error: str | None = None  # one line, e.g. "exit code 3", "timed out after 2s"
    cancelled: bool = False
    timed_out: bool = False


def format_seconds(seconds: float) -> str:
    return f"{seconds:g}s"


def timed_out_result(timeout: float) -> ExecResult:
    return ExecResult(ok=False, error=f"timed out after {format_seconds(timeout)}", timed_out=True)


CANCELLED = ExecResult(ok=False, error="cancelled", cancelled=True)


class LogSink(Protocol):
    """Where an attempt's output goes. Must be thread-safe; the agent bounds and stores it."""

    def write(self, text: str) -> None: ...


class GatedSink:
    """Forwards to a sink until closed, then drops writes.

    Some work outlives its attempt (a python thread abandoned on timeout, a pipe reader stuck on
    an escaped daemon); closing the gate keeps its late output out of a log that is already final.
    """

    __slots__ = ("_open", "_sink")

    def __init__(self, sink: LogSink) -> None:
        self._sink = sink
        self._open = True

    def write(self, text: str) -> None:
        if self._open and text:
            self._sink.write(text)

    def close(self) -> None:
        self._open = False


class Cancellation:
    """A one-way flag the agent sets from another thread; executors hook their kill logic on it.

    One instance may be shared by many attempts (say, one per run), so `on_cancel` hands back a
    function that unregisters the callback; executors call it when their attempt ends, which keeps
    the callback list from growing with every attempt.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: dict[object, Callable[[], None]] = {}

    def cancel(self) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            callbacks = list(self._callbacks.values())
            self._callbacks.clear()
        # Outside the lock: a callback may itself touch this object.
        for callback in callbacks:
            try:
                callback()
            except Exception:
                # One broken hook must not stop the others from killing their work.
                logger.exception("cancel callback failed")

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` once on cancel (now, if already cancelled); returns an unregister."""
        token = object()
        with self._lock:
            if not self._event.is_set():
                self._callbacks[token] = callback
                return lambda: self._forget(token)
        callback()
        return _noop

    def _forget(self, token: object) -> None:
        with self._lock:
            self._callbacks.pop(token, None)


def _noop() -> None:
    return None


class Executor(Protocol):
    def execute(self, request: ExecRequest, log: LogSink, cancel: Cancellation) -> ExecResult:
        """Run one attempt to its end. Blocks the calling thread; never raises for task errors."""
        ...


class UnknownKindError(TaskplanError, LookupError):
    """No executor is registered for a task kind."""


_registry: dict[str, Executor] = {}


def register_executor(kind: str, executor: Executor) -> None:
    """Make `executor` the one for `kind`. Executors are shared by every slot: keep them stateless
    or thread-safe."""
    _registry[kind] = executor


# Built-in kinds, created on first use (module, class): importing the package stays cheap.
_BUILTIN = {
    "shell": ("taskplan.executors.shell", "ShellExecutor"),
    "python": ("taskplan.executors.python", "PythonExecutor"),
    "sql": ("taskplan.executors.sql", "SqlExecutor"),
}
_builtin_lock = threading.Lock()


def executor_for(kind: str) -> Executor:
    executor = _registry.get(kind)
    if executor is not None:
        return executor
    builtin = _BUILTIN.get(kind)
    if builtin is None:
        raise UnknownKindError(f"no executor for task kind {kind!r}")
    import importlib

    with _builtin_lock:
        executor = _registry.get(kind)
        if executor is None:
            executor = getattr(importlib.import_module(builtin[0]), builtin[1])()
            _registry[kind] = executor
    return executor


class SqlSetupError(TaskplanError):
    """The attempt could not start: a missing variable, an unknown connection, a bad bind.

    Defined here, not beside the SQL executor, so that code handling it (the agent's foreach
    expansion) does not import SQLAlchemy for jobs that run no SQL."""
