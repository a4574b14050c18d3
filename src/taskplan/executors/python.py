"""`python` tasks: call `module.path:function` with the AttemptContext, in this process.

The module is imported from the job file's folder (put at the front of sys.path) and the function
is cached per (folder, target): code is loaded once per process, like any import. Module names
share one interpreter-wide namespace, so two job folders that each hold a `reports.py` cannot both
be used by one agent; that conflict is reported as an error rather than silently running the
other folder's code (only for the target's top-level module; helpers it imports are not checked).

Timeouts: a thread cannot be killed. With a timeout the function runs on a daemon thread and the
attempt stops waiting when the time is up (or on cancel): the thread is abandoned, keeps running
to its end, and its result and output are dropped. Without a timeout the function runs inline on
the calling slot thread, which keeps a no-op task to a few microseconds; cancel then cannot
interrupt it, and the attempt is reported cancelled once the function returns.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import json
import os
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

from taskplan.executors.base import (
    CANCELLED,
    AttemptContext,
    Cancellation,
    ExecRequest,
    ExecResult,
    GatedSink,
    LogSink,
    timed_out_result,
)
from taskplan.executors.output import route

TaskFunction = Callable[[AttemptContext], Any]
_MAX_ERROR = 1000
_path_lock = threading.Lock()


class PythonExecutor:
    def __init__(self) -> None:
        # Plain dict reads and writes are atomic; two threads loading the same target at once
        # both import it, and importlib's own per-module locks make that safe.
        self._functions: dict[tuple[str, str], TaskFunction] = {}

    def execute(self, request: ExecRequest, log: LogSink, cancel: Cancellation) -> ExecResult:
        if cancel.is_set():
            return CANCELLED
        if request.timeout is None:
            outcome = self._attempt(request, log)
            return CANCELLED if cancel.is_set() else outcome
        return self._attempt_in_thread(request, log, cancel, request.timeout)

    def _attempt_in_thread(
        self, request: ExecRequest, log: LogSink, cancel: Cancellation, timeout: float
    ) -> ExecResult:
        gate = GatedSink(log)
        wake = threading.Event()
        outcome: list[ExecResult] = []

        def body() -> None:
            try:
                outcome.append(self._attempt(request, gate))
            finally:
                wake.set()

        thread = threading.Thread(
            target=body, name=f"taskplan-py-{request.context.task}", daemon=True
        )
        unhook = cancel.on_cancel(wake.set)
        try:
            thread.start()
            wake.wait(timeout)
        finally:
            unhook()
        if outcome:
            return outcome[0]
        gate.close()  # the abandoned thread may print on; none of it belongs to this attempt
        return CANCELLED if cancel.is_set() else timed_out_result(timeout)

    def _attempt(self, request: ExecRequest, log: LogSink) -> ExecResult:
        previous = route(log)
        try:
            function = self._functions.get((request.base_dir, _target(request)))
            if function is None:
                loaded = self._load(request, log)
                if isinstance(loaded, ExecResult):
                    return loaded
                function = loaded
            try:
                value = function(request.context)
            except SystemExit as exc:
                if exc.code not in (None, 0):
                    return _failure(exc, log)
                value = None
            except Exception as exc:
                return _failure(exc, log)
        finally:
            route(previous)
        return _to_result(value)

    def _load(self, request: ExecRequest, log: LogSink) -> TaskFunction | ExecResult:
        target = _target(request)
        module_name, _, attr_path = target.partition(":")
        if not module_name or not attr_path:
            return ExecResult(
                ok=False, error=f"python task needs 'module:function', got {target!r}"
            )
        base_dir = os.path.abspath(request.base_dir or os.curdir)
        _put_first_on_path(base_dir)
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            failed = _failure(exc, log)
            return ExecResult(ok=False, error=f"cannot import {module_name}: {failed.error}")
        conflict = _shadowed_by(module_name, base_dir)
        if conflict:
            return ExecResult(ok=False, error=conflict)
        function: Any = module
        for part in attr_path.split("."):
            try:
                function = getattr(function, part)
            except AttributeError:
                return ExecResult(ok=False, error=f"{module_name} has no attribute {attr_path}")
        if not callable(function):
            return ExecResult(ok=False, error=f"{target} is not callable")
        self._functions[(request.base_dir, target)] = function
        return function  # type: ignore[no-any-return]


def _target(request: ExecRequest) -> str:
    command = request.command
    return command if isinstance(command, str) else " ".join(command)


def _put_first_on_path(base_dir: str) -> None:
    with _path_lock:
        if base_dir not in sys.path:
            sys.path.insert(0, base_dir)
            # A folder's directory listing may have been cached before its file was written.
            importlib.invalidate_caches()


def _shadowed_by(module_name: str, base_dir: str) -> str | None:
    """Say so when base_dir holds the target's top-level module but another copy was loaded."""
    top = module_name.partition(".")[0]
    spec = importlib.machinery.PathFinder.find_spec(top, [base_dir])
    loaded = getattr(sys.modules.get(top), "__file__", None)
    if spec is None or not spec.origin or not loaded:
        return None
    if os.path.realpath(spec.origin) == os.path.realpath(loaded):
        return None
    return (
        f"module {top!r} is already loaded from {loaded}, not {spec.origin}: "
        "module names must be unique across job folders"
    )


def one_line(exc: BaseException) -> str:
    message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"


def _failure(exc: BaseException, log: LogSink) -> ExecResult:
    # Skip our own frame: the user's traceback starts at their function.
    tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
    log.write("".join(traceback.format_exception(type(exc), exc, tb)))
    return ExecResult(ok=False, error=one_line(exc))


_NONE_RESULT = ExecResult(ok=True)
# One encoder, built once: json.dumps with any option builds a new one per call (microseconds).
_encoder = json.JSONEncoder(allow_nan=False)


def _to_result(value: Any) -> ExecResult:
    if value is None:
        return _NONE_RESULT
    try:
        text = _encoder.encode(value)
    except (TypeError, ValueError) as exc:
        return ExecResult(ok=False, error=f"result is not JSON-serialisable: {exc}")
    if isinstance(value, str | int | float):
        return ExecResult(ok=True, result=value)
    # Round-trip containers so the result is what a later reader gets back from the store:
    # tuples become lists, non-string keys become strings.
    return ExecResult(ok=True, result=json.loads(text))
