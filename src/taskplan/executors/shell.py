"""`shell` tasks: an argv run with no shell, or a string run under `sh -c`.

A string that the shell would only split into words and hand to a program (`sleep 0.5`,
`python3 load.py --day 2026-01-01`: no quotes, `$`, globs, redirections, operators or
assignments, and a first word that is no builtin or reserved word) is run as that argv directly,
as make does: `sh -c` would start a shell only for it to start the program, about 1.5 ms of
CPU more per attempt (and 6 ms of an attempt's time with eight starting at once on two cores).
If the direct start fails (not found, not executable, not a binary) the string goes to `sh -c`
after all, so errors and exit codes (127, 126) are the shell's. The program gets what the shell
would have given it (PWD set to its folder; an environment with names that are not shell names,
or without PATH, keeps the shell). One difference remains, and is documented: a program killed
by a signal is reported as such ("killed by SIGKILL"), where dash, which forks the program
instead of exec'ing it, exits 128 + the signal (137) and prints the signal's name.

Each attempt runs in its own session (`start_new_session=True`), so its process group holds the
command and everything it starts. Timeout and cancel signal the whole group: SIGTERM, then SIGKILL
after a grace period, so `sh -c 'sleep 100 & sleep 100'` leaves nothing behind.

The group is also killed when the agent dies, even by SIGKILL (group_keeper.py), and cleaned
when the main process exits on its own. Background stragglers it left
behind would otherwise keep the output pipe open, and the attempt would hang waiting for an
end-of-file that never comes. Only a process that leaves the session (`setsid`, a daemon) escapes;
if it also keeps the pipe, its reader thread is abandoned after the grace period and what it
writes later is dropped.

Three threads per attempt: the caller supervises (timeout, cancel, cleanup), a reader streams the
merged stdout/stderr to the log as it arrives, a waiter reports the main process's exit.
"""

from __future__ import annotations

import codecs
import errno
import logging
import os
import re
import signal
import subprocess
import threading
import time
from typing import IO

from taskplan.executors.base import (
    Cancellation,
    ExecRequest,
    ExecResult,
    GatedSink,
    LogSink,
    format_seconds,
)
from taskplan.executors.env import MAX_ARG_STRLEN, drop_oversized, process_env
from taskplan.executors.group_keeper import KEEPER

KILL_GRACE = 3.0  # seconds between SIGTERM and SIGKILL
_CHUNK = 65536
logger = logging.getLogger(__name__)


class ShellExecutor:
    def __init__(self, kill_grace: float = KILL_GRACE) -> None:
        self.kill_grace = kill_grace

    def execute(self, request: ExecRequest, log: LogSink, cancel: Cancellation) -> ExecResult:
        if cancel.is_set():
            return ExecResult(ok=False, error="cancelled", cancelled=True)
        command = request.command
        direct = None
        if isinstance(command, str):
            argv = ["/bin/sh", "-c", command]
            direct = plain_argv(command)
        elif command:
            argv = list(command)
        else:
            return _not_started(log, "empty command")
        cwd = os.path.join(request.base_dir or os.getcwd(), request.spec.cwd or "")
        if not os.path.isdir(cwd):
            return _not_started(log, f"working directory not found: {cwd}")
        env = process_env(request.context, request.spec.env, request.extra_env)
        for line in drop_oversized(env):
            log.write(line)
        try:
            proc = _start(direct, argv, cwd, env)
        except FileNotFoundError:
            return _not_started(log, f"program not found: {argv[0]}")
        except PermissionError:
            return _not_started(log, f"program not executable: {argv[0]}")
        except (OSError, ValueError) as exc:
            # E2BIG from a huge item in the environment, a NUL byte in an argument, ...
            said = (_too_big(argv, env) if getattr(exc, "errno", None) == errno.E2BIG
                    else _holds_nul(argv, env) if isinstance(exc, ValueError) else None)
            return _not_started(log, said or f"cannot start {argv[0]}: {exc}")
        KEEPER.started(proc.pid)  # its session's id: killed with the agent, however it dies
        return _Attempt(proc, GatedSink(log), self.kill_grace).run(request.timeout, cancel)


# Bytes the shell gives no meaning to inside a word: anything else (quotes, `$`, globs, `~`, `#`,
# redirections, operators, newlines, non-ASCII) leaves the string to `sh -c`.
_PLAIN = re.compile(r"[A-Za-z0-9_./:,@%+=-]+(?:[ \t]+[A-Za-z0-9_./:,@%+=-]+)*")
# Words whose meaning `sh` supplies itself (dash's and POSIX's builtins, reserved words).
_SHELL_WORDS = frozenset((
    ".", ":", "[", "alias", "bg", "break", "cd", "command", "continue", "echo", "eval", "exec",
    "exit", "export", "false", "fc", "fg", "getopts", "hash", "jobs", "kill", "local", "printf",
    "pwd", "read", "readonly", "return", "set", "shift", "test", "times", "trap", "true", "type",
    "ulimit", "umask", "unalias", "unset", "wait", "if", "then", "else", "elif", "fi", "case",
    "esac", "for", "while", "until", "do", "done", "in", "function", "select", "time", "source",
))


def plain_argv(command: str) -> list[str] | None:
    """The argv `sh -c command` would run when the shell only splits words, else None."""
    text = command.strip(" \t")
    if not _PLAIN.fullmatch(text):
        return None
    words = text.split()
    if words[0] in _SHELL_WORDS or "=" in words[0]:
        return None
    return words


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _start(
    direct: list[str] | None, argv: list[str], cwd: str, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    if direct is not None and _shell_would_pass_on(env):
        try:
            return _spawn(direct, cwd, {**env, "PWD": _pwd(env, cwd)})
        except OSError:
            pass  # the shell starts it, or says why it cannot, in its own words
    return _spawn(argv, cwd, env)


def _shell_would_pass_on(env: dict[str, str]) -> bool:
    """Whether the program would get this environment from `sh` as it is: dash drops names
    that are not shell names (`spring.profiles.active`), and without PATH searches its own
    default list. Such an environment keeps the shell in between."""
    return "PATH" in env and all(_NAME.fullmatch(name) for name in env)


def _pwd(env: dict[str, str], cwd: str) -> str:
    """What the shell would export as PWD: the inherited one if it names `cwd`, else the
    physical path (the agent's own PWD is some other folder)."""
    inherited = env.get("PWD", "")
    try:
        if os.path.isabs(inherited) and os.path.samefile(inherited, cwd):
            return inherited
    except OSError:
        pass
    return os.path.realpath(cwd)


def _spawn(argv: list[str], cwd: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )


def _too_big(argv: list[str], env: dict[str, str]) -> str | None:
    """Which string made exec fail with E2BIG ("Argument list too long" named the program,
    when it was the item in TASKPLAN_ITEM or one argument)."""
    limit = "over the 128 KiB one argument or environment variable may hold"
    for name, value in env.items():
        size = len(os.fsencode(name)) + 1 + len(os.fsencode(value))
        if size >= MAX_ARG_STRLEN:
            return f"cannot start: environment variable {name} is {size:,} bytes, {limit}"
    for index, arg in enumerate(argv):
        size = len(os.fsencode(arg))
        if size >= MAX_ARG_STRLEN:
            what = "the command" if argv[:2] == ["/bin/sh", "-c"] and index == 2 else (
                f"argument {index}")
            return f"cannot start: {what} is {size:,} bytes, {limit}"
    total = sum(len(os.fsencode(a)) + 1 for a in argv) + sum(
        len(os.fsencode(k)) + len(os.fsencode(v)) + 2 for k, v in env.items())
    return (f"cannot start: its arguments and environment total {total:,} bytes, over what"
            " the system allows")


def _holds_nul(argv: list[str], env: dict[str, str]) -> str | None:
    """Which string made the start fail with "embedded null byte"."""
    nul = "holds a NUL byte, which no program can be given"
    for name, value in env.items():
        if "\0" in value:
            return f"cannot start: environment variable {name} {nul}"
    for index, arg in enumerate(argv):
        if "\0" in arg:
            what = "the command" if argv[:2] == ["/bin/sh", "-c"] and index == 2 else (
                f"argument {index}")
            return f"cannot start: {what} {nul}"
    return None


def _not_started(log: LogSink, message: str) -> ExecResult:
    log.write(f"taskplan: {message}\n")
    return ExecResult(ok=False, error=message)


class _Attempt:
    def __init__(self, proc: subprocess.Popen[bytes], sink: GatedSink, grace: float) -> None:
        self.proc = proc
        self.sink = sink
        self.grace = grace
        self.exited = threading.Event()
        self.wake = threading.Event()  # exit or cancel: something for the supervisor to look at
        assert proc.stdout is not None
        self.reader = threading.Thread(
            target=self._read, args=(proc.stdout,), name=f"taskplan-out-{proc.pid}", daemon=True
        )
        self.waiter = threading.Thread(
            target=self._wait, name=f"taskplan-wait-{proc.pid}", daemon=True
        )

    def run(self, timeout: float | None, cancel: Cancellation) -> ExecResult:
        self.reader.start()
        self.waiter.start()
        unhook = cancel.on_cancel(self.wake.set)
        try:
            stopped_by = self._supervise(timeout, cancel)
            self._clean_group()
        finally:
            KEEPER.ending(self.proc.pid)  # before the reap frees the group's id
            code = self.proc.wait()
            unhook()
            self.sink.close()
        if stopped_by == "cancel":
            return ExecResult(ok=False, exit_code=code, error="cancelled", cancelled=True)
        if stopped_by == "timeout":
            assert timeout is not None
            return ExecResult(
                ok=False,
                exit_code=code,
                error=f"timed out after {format_seconds(timeout)}",
                timed_out=True,
            )
        if code == 0:
            return ExecResult(ok=True, exit_code=0)
        if code < 0:
            return ExecResult(ok=False, exit_code=code, error=f"killed by {_signal_name(-code)}")
        return ExecResult(ok=False, exit_code=code, error=f"exit code {code}")

    def _supervise(self, timeout: float | None, cancel: Cancellation) -> str | None:
        """Block until the main process exits (None), the timeout passes, or cancel is set."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.exited.is_set():
            if cancel.is_set():
                return "cancel"
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return "timeout"
            self.wake.wait(remaining)
            # Safe to clear: the loop re-reads the flags themselves, never the event.
            self.wake.clear()
        return None

    def _clean_group(self) -> None:
        """SIGTERM the group, give it the grace period to exit and release the pipe, SIGKILL."""
        self._signal_group(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        self.exited.wait(self.grace)
        self.reader.join(max(0.0, deadline - time.monotonic()))
        # Unconditional: a member that closed its stdout and ignores SIGTERM is invisible to the
        # checks above. When everything is gone this reaches only the unreaped leader, harmlessly.
        self._signal_group(signal.SIGKILL)
        self.exited.wait()
        # Now only a process that left the session can hold the pipe.
        self.reader.join(self.grace)

    def _signal_group(self, sig: signal.Signals) -> None:
        # The waiter does not reap the leader, so until proc.wait() its zombie keeps the group
        # id from being reused by an unrelated process group.
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _wait(self) -> None:
        try:
            if hasattr(os, "waitid"):
                os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT)
            else:  # pragma: no cover - macOS before 3.13: reaps, so the group id is not pinned
                self.proc.wait()
        except ChildProcessError:
            pass
        finally:
            self.exited.set()
            self.wake.set()

    def _read(self, stream: IO[bytes]) -> None:
        # read1 returns whatever one read(2) brings, so output reaches the log as it is written
        # rather than when a buffer fills. Incremental decoding keeps a UTF-8 character that is
        # split across two chunks intact.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        sink: GatedSink | None = self.sink
        with stream:
            while chunk := stream.read1(_CHUNK):  # type: ignore[attr-defined]
                if sink is None:
                    continue
                try:
                    sink.write(decoder.decode(chunk))
                except Exception:
                    # Keep draining: a process blocked on a full pipe would hang the attempt.
                    logger.exception("log sink failed; dropping the rest of the output")
                    sink = None
            if sink is not None:
                sink.write(decoder.decode(b"", final=True))


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
