"""`python` tasks: call `module.path:function` with the AttemptContext, in a worker process.

Each attempt runs in a worker process taken from a warm pool (see pyworker.py for the worker's
side), so a python task is as killable as a shell task: cancel, a timeout or an agent told to
stop kills the worker's whole process group at once, and a fresh worker replaces it. Workers
are started when first needed and kept between attempts, so the cost of a no-op task is one
round trip over a pipe, not a process start.

In the worker the module is imported from the job file's folder (put at the front of sys.path)
and the function is cached per (folder, target): code is loaded once per worker, like any
import. Module names share one interpreter-wide namespace, so two job folders that each hold a
`reports.py` cannot both be used by one worker: a worker that has the other folder's module
says so before importing, and the attempt goes to a fresh worker (idle workers that ran the
task's folder are taken first, so this is rare). In process the conflict is reported as an
error rather than silently running the other folder's code. Both checks cover the target's
top-level module and any module of another job folder loaded under a name this folder also
has (its helpers), before the target is imported.
"""

from __future__ import annotations

import copy
import importlib
import importlib.machinery
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Coroutine
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
from taskplan.executors.worker_output import AttemptOutput, new_marker

TaskFunction = Callable[[AttemptContext], Any]
_MAX_ERROR = 1000
_path_lock = threading.Lock()


class InProcessRunner:
    """Imports task functions (cached per folder and target) and calls them in this process.

    `route_prints`: send the calling thread's prints to the attempt's log (in the agent, where
    tasks share the process's streams); a worker process captures its fds instead, and the log
    sink then only receives the traceback of a failure.
    """

    def __init__(self, *, route_prints: bool = True) -> None:
        # Plain dict reads and writes are atomic; two threads loading the same target at once
        # both import it, and importlib's own per-module locks make that safe.
        self._functions: dict[tuple[str, str], TaskFunction] = {}
        self._route_prints = route_prints
        self._folders: set[str] = set()  # the job folders imported from

    def attempt(self, target: str, base_dir: str, context: AttemptContext, log: LogSink
                ) -> ExecResult:
        previous = route(log) if self._route_prints else None
        try:
            function = self._functions.get((base_dir, target))
            if function is None:
                loaded = self._load(target, base_dir, log)
                if isinstance(loaded, ExecResult):
                    return loaded
                function = loaded
            try:
                value = function(context)
                if isinstance(value, Coroutine):
                    # An `async def` task: run to its end on a loop of its own, as a script's
                    # asyncio.run would (no loop runs on a slot thread or in a worker).
                    import asyncio

                    value = asyncio.run(value)
            except SystemExit as exc:
                if exc.code not in (None, 0):
                    return _failure(exc, log)
                value = None
            except (Exception, KeyboardInterrupt) as exc:
                # A KeyboardInterrupt here is the task's own: a worker has its own session
                # (no Ctrl-C reaches it), and signals reach only the agent's main thread.
                return _failure(exc, log)
        finally:
            if self._route_prints:
                route(previous)
        return _to_result(value)

    def shadowed(self, target: str, base_dir: str) -> str | None:
        """Why `target` cannot be imported from `base_dir` here, checked before importing; None
        when it can. It cannot when a module of another job folder is loaded under a name this
        folder has a module of: the target's own, or a helper it may import (`helpers.py` in
        both folders), which would otherwise silently be the other folder's."""
        if (base_dir, target) in self._functions:
            return None
        module_name = target.partition(":")[0]
        if not module_name:
            return None
        folder = os.path.abspath(base_dir or os.curdir)
        if module_name.partition(".")[0] in sys.modules:
            said = _shadowed_by(module_name, folder)
            if said:
                return said
        others = tuple(os.path.join(f, "") for f in self._folders if f != folder)
        if not others:
            return None
        for name in {n.partition(".")[0] for n in list(sys.modules)}:
            loaded = getattr(sys.modules.get(name), "__file__", None)
            if isinstance(loaded, str) and loaded.startswith(others):
                said = _shadowed_by(name, folder)
                if said:
                    return said
        return None

    def _load(self, target: str, base_dir: str, log: LogSink) -> TaskFunction | ExecResult:
        module_name, _, attr_path = target.partition(":")
        if not module_name or not attr_path:
            return ExecResult(
                ok=False, error=f"python task needs 'module:function', got {target!r}"
            )
        folder = os.path.abspath(base_dir or os.curdir)
        conflict = self.shadowed(target, base_dir)
        if conflict:
            return ExecResult(ok=False, error=conflict)
        self._folders.add(folder)
        _put_first_on_path(folder)
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            failed = _failure(exc, log)
            return ExecResult(ok=False, error=f"cannot import {module_name}: {failed.error}")
        conflict = _shadowed_by(module_name, folder)
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
        self._functions[(base_dir, target)] = function
        return function  # type: ignore[no-any-return]


class _Worker:
    """One worker process and the agent's ends of its pipes."""

    def __init__(self) -> None:
        self.folders: set[str] = set()  # the job folders it has imported from
        self.shadowed = False  # it said another folder's module of a target's name is loaded
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        life_r, self._life_w = os.pipe()
        # Each attempt's output pipe goes to the worker over this socket (SCM_RIGHTS).
        self._fd_socket, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.marker = new_marker()
        try:
            # Its own session: a kill takes the function's own children with it, and Ctrl-C
            # in the agent's terminal reaches the agent, which decides what stops. Its own
            # stderr stays the agent's until a first attempt (a worker that cannot start
            # says why there).
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "taskplan.executors.pyworker",
                 str(to_r), str(from_w), str(life_r), str(os.getpid()), self.marker.hex(),
                 str(theirs.fileno())],
                pass_fds=(to_r, from_w, life_r, theirs.fileno()), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, start_new_session=True)
        except BaseException:
            for fd in (to_w, from_r, self._life_w):
                os.close(fd)
            self._fd_socket.close()
            raise
        finally:
            for fd in (to_r, from_w, life_r):
                os.close(fd)
            theirs.close()
        # Imported here: multiprocessing (with tempfile and shutil) costs an in-process run's
        # start a few ms, and only worker processes talk over its pipes.
        from multiprocessing.connection import Connection

        self.to_worker = Connection(to_w, readable=False)
        self.from_worker = Connection(from_r, writable=False)

    def open_output(self) -> AttemptOutput:
        """A new output pipe for the next attempt: its write end goes to the worker."""
        out_r, out_w = os.pipe()
        try:
            socket.send_fds(self._fd_socket, [b"o"], [out_w])
        except BaseException:
            os.close(out_r)
            raise
        finally:
            os.close(out_w)
        return AttemptOutput(out_r, self.marker)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self) -> None:
        """Kill (if still running) and reap; the pipes go with it."""
        self.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.to_worker.close()
        self.from_worker.close()
        self._fd_socket.close()
        os.close(self._life_w)

    def describe_death(self) -> str:
        try:
            code = self.proc.wait(2)
        except subprocess.TimeoutExpired:
            return "the python worker stopped answering"
        if code < 0:
            return f"the python worker was killed by {signal.Signals(-code).name}"
        return f"the python worker exited with code {code}"


class PythonExecutor:
    """Runs each attempt in a worker process from a warm pool; see the module docstring."""

    def __init__(self) -> None:
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._runner = InProcessRunner()

    def close(self) -> None:
        """Stop the idle workers (busy ones are closed when their attempt ends)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close()

    def execute(self, request: ExecRequest, log: LogSink, cancel: Cancellation) -> ExecResult:
        if cancel.is_set():
            return CANCELLED
        if request.spec.in_process:
            return self._in_process(request, log, cancel)
        worker = self._take(request.base_dir)
        unhook = cancel.on_cancel(worker.kill)
        keep = False
        try:
            outcome, keep = self._converse(worker, request, log, cancel)
            if worker.shadowed:
                # This worker ran another job folder's module of the same name (a `tasks.py`
                # in two folders): a fresh worker imports this folder's own.
                unhook()
                worker.close()
                worker = _Worker()
                unhook = cancel.on_cancel(worker.kill)
                outcome, keep = self._converse(worker, request, log, cancel)
        finally:
            unhook()
            if keep and not cancel.is_set():
                with self._lock:
                    self._idle.append(worker)
            else:
                worker.close()
        return outcome

    def _in_process(self, request: ExecRequest, log: LogSink, cancel: Cancellation
                    ) -> ExecResult:
        """`in_process: true`: on the calling slot thread, a few microseconds per no-op call.

        A thread cannot be killed. Without a timeout the function runs inline and a cancel
        is reported once it returns; with one it runs on a daemon thread that is abandoned
        (left running, its output dropped) when the time is up or on cancel.
        """
        target = _target(request)
        context = _own_params(request.context)
        if request.timeout is None:
            outcome = self._runner.attempt(target, request.base_dir, context, log)
            return CANCELLED if cancel.is_set() else outcome
        gate = GatedSink(log)
        wake = threading.Event()
        box: list[ExecResult] = []

        def body() -> None:
            try:
                box.append(self._runner.attempt(target, request.base_dir, context, gate))
            finally:
                wake.set()

        thread = threading.Thread(target=body, name=f"taskplan-py-{request.context.task}",
                                  daemon=True)
        unhook = cancel.on_cancel(wake.set)
        try:
            thread.start()
            wake.wait(request.timeout)
        finally:
            unhook()
        if box:
            return box[0]
        gate.close()  # the abandoned thread may print on; none of it belongs to this attempt
        return CANCELLED if cancel.is_set() else timed_out_result(request.timeout)

    def _take(self, base_dir: str) -> _Worker:
        """An idle worker, one that already ran tasks of this job folder if there is one."""
        with self._lock:
            for index in range(len(self._idle) - 1, -1, -1):
                if base_dir in self._idle[index].folders:
                    self._idle.append(self._idle.pop(index))
                    break
            while self._idle:
                worker = self._idle.pop()
                if worker.proc.poll() is None:
                    return worker
                worker.close()
        return _Worker()

    def _converse(self, worker: _Worker, request: ExecRequest, log: LogSink,
                  cancel: Cancellation) -> tuple[ExecResult, bool]:
        """Send the attempt, relay its output and frames; (outcome, whether the worker may be
        reused). The outcome waits for the attempt's output to be read to its end marker."""
        ctx = request.context
        frame = {"target": _target(request), "base_dir": request.base_dir, "run_id": ctx.run_id,
                 "task": ctx.task, "attempt": ctx.attempt, "params": dict(ctx.params),
                 "item": ctx.item, "fire_time": ctx.fire_time}
        deadline = None if request.timeout is None else time.monotonic() + request.timeout
        output: AttemptOutput | None = None
        outcome: tuple[ExecResult, bool] | None = None
        try:
            output = worker.open_output()
            worker.to_worker.send_bytes(_frame_encoder.encode(frame).encode())
            worker.folders.add(request.base_dir)
            poller = select.poll()
            frames = worker.from_worker.fileno()
            poller.register(frames, select.POLLIN)
            poller.register(output.fd, select.POLLIN)
            while outcome is None or not output.ended:
                now = time.monotonic()
                if outcome is None and deadline is not None and now >= deadline:
                    worker.kill()
                    output.forward(log)
                    assert request.timeout is not None
                    return timed_out_result(request.timeout), False
                # Once "done" came the marker is already in the pipe (written first); only a
                # task that closed the worker's own copy of the pipe can keep it away.
                # (poll takes a C int of ms: a wait past ~24 days overflows it, so a long
                # timeout is waited for a day at a time)
                wait = (_MARKER_WAIT if outcome is not None
                        else None if deadline is None else min(deadline - now, 86400.0))
                ready = poller.poll(None if wait is None else max(0, int(wait * 1000) + 1))
                if not ready and outcome is not None:
                    break
                for fd, _ in ready:
                    if fd == output.fd:
                        output.forward(log)
                        if output.ended:
                            poller.unregister(fd)
                    elif outcome is None:
                        outcome = self._frame(worker, ctx, cancel)
                        if outcome is not None:
                            poller.unregister(fd)
        except (EOFError, OSError):
            if output is not None:
                output.forward(log)
            if cancel.is_set():
                return CANCELLED, False
            return ExecResult(ok=False, error=worker.describe_death()), False
        finally:
            if output is not None:
                output.close()
        return outcome

    @staticmethod
    def _frame(worker: _Worker, ctx: AttemptContext, cancel: Cancellation
               ) -> tuple[ExecResult, bool] | None:
        """Handle one frame from the worker; the outcome once it is "done"."""
        message = json.loads(worker.from_worker.recv_bytes())
        if message[0] == "results":
            results = ctx.results
            names = getattr(results, "waits_for", None)
            reply = ["results", dict(results),
                     list(names) if names is not None else list(results)]
            worker.to_worker.send_bytes(json.dumps(reply).encode())
            return None
        _, ok, value, error = message[:4]
        if cancel.is_set():
            return CANCELLED, False
        if len(message) > 4 and message[4] == "shadowed":
            worker.shadowed = True
            return ExecResult(ok=False, error=error), False
        reuse = len(message) < 5  # "retire": the task left threads running in the worker
        if ok:
            return (_NONE_RESULT if value is None else ExecResult(ok=True, result=value)), reuse
        return ExecResult(ok=False, error=error), reuse


def _own_params(context: AttemptContext) -> AttemptContext:
    """The context with a copy of the run's params: they are the agent's one copy, which every
    later task of the run reads (templates, TASKPLAN_PARAM_*, ctx.params), so a function that
    changed `ctx.params` in process changed them for the rest of the run. (A worker gets its
    own copy with the request.)"""
    if not context.params:
        return context
    return AttemptContext(run_id=context.run_id, task=context.task, attempt=context.attempt,
                          params=copy.deepcopy(dict(context.params)), item=context.item,
                          results=context.results, fire_time=context.fire_time)


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
# How long to wait for an attempt's end marker once "done" came: the worker writes it first, so
# only a task that closed the worker's own copy of the output pipe can keep it away.
_MARKER_WAIT = 5.0
# One encoder, built once: json.dumps with any option builds a new one per call (microseconds).
_encoder = json.JSONEncoder(allow_nan=False)
# The request to a worker (Python to Python) carries an item as the query gave it: a NaN of a
# sql foreach's row reaches ctx.item as float('nan'), as it does in process.
_frame_encoder = json.JSONEncoder()


def _to_result(value: Any) -> ExecResult:
    if value is None:
        return _NONE_RESULT
    try:
        text = _encoder.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        return ExecResult(ok=False, error=f"result is not JSON-serialisable: {exc}")
    if isinstance(value, str | int | float):
        return ExecResult(ok=True, result=value)
    # Round-trip containers so the result is what a later reader gets back from the store:
    # tuples become lists, non-string keys become strings.
    return ExecResult(ok=True, result=json.loads(text))
