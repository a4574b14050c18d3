"""The worker process that runs python tasks: `python -m taskplan.executors.pyworker R W L P M S`.

A worker runs one attempt at a time, for as long as its agent keeps it: it imports task modules
once (like any import) and calls the functions with an `AttemptContext`. Frames are JSON lists
over two pipes (R: requests and replies from the agent; W: frames to the agent):

    agent -> worker   {"target", "base_dir", "run_id", "task", "attempt", "params", "item",
                       "fire_time"}
    worker -> agent   ["results"]             ctx.results was first read: send them
    agent -> worker   ["results", {name: result}, [names waited for]]
    worker -> agent   ["done", ok, result, error]
    worker -> agent   ["done", false, null, error, "shadowed"]   another job folder's module of
                      the target's name is loaded here: the agent retries on a fresh worker
    worker -> agent   ["done", ok, result, error, "retire"]   the task left (non-daemon)
                      threads running: the agent stops this worker instead of reusing it

The attempt's output does not go over these pipes: fds 1 and 2 are a pipe of each attempt's
own, whose write end comes over the Unix socket S just before the request (see _Output), and M
is the marker (in hex) that ends an attempt's output there. P is the agent's pid. L is a
lifeline: the agent holds its write end and never writes. When the agent dies, the read
returns and the worker kills its own process group, so no task outlives the agent that ran it.
Killing a task is killing its worker's process group; the agent then starts a fresh worker.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any, TextIO

from taskplan.executors.base import AttemptContext, ExecResult, LazyResults
from taskplan.executors.python import InProcessRunner


class _Channel:
    """The worker's end of the pipes; sends may come from threads a task starts itself."""

    def __init__(self, reader: Connection, writer: Connection) -> None:
        self.reader = reader
        self.writer = writer
        self._lock = threading.Lock()

    def send(self, frame: list[Any]) -> None:
        data = json.dumps(frame).encode()
        with self._lock:
            self.writer.send_bytes(data)


class _Output:
    """Fds 1 and 2 of the worker: a pipe of the attempt's own, whose read end the agent holds.

    So the log holds everything an attempt writes, in the order written: print and sys.stderr
    (ordinary text streams over fds 1 and 2, with fileno() and .buffer), C code writing to the
    fds, and programs the task starts without capturing their output, which inherit them; and
    what was written before the worker died, since the pipe outlives its writer. `settle()`
    ends the attempt with the agent's marker, written through the worker's own copy of the
    pipe (still there if the task redirected fd 1), before "done" is sent; then fds 1 and 2
    go to /dev/null, so a program the task left running writes into a pipe the agent has
    closed, never into a later attempt's log.
    """

    def __init__(self, marker: bytes, fd_socket: socket.socket) -> None:
        self._marker = marker
        self._fd_socket = fd_socket
        self._own_fd = -1
        self.stdout, self.stderr = _text_stream(1), _text_stream(2)

    def open_attempt(self) -> None:
        """Take this attempt's pipe from the agent and point fds 1 and 2, sys.stdout and
        sys.stderr at it: an earlier attempt may have redirected, replaced or closed any."""
        _, fds, _, _ = socket.recv_fds(self._fd_socket, 1, 1)
        self._own_fd = fds[0]
        os.set_inheritable(self._own_fd, False)  # the task's programs get fds 1 and 2 only
        os.dup2(self._own_fd, 1)
        os.dup2(self._own_fd, 2)
        if self.stdout.closed:
            self.stdout = _text_stream(1)
        if self.stderr.closed:
            self.stderr = _text_stream(2)
        sys.stdout, sys.stderr = self.stdout, self.stderr

    def write(self, text: str) -> None:
        """The runner's own output (a failure's traceback): after what the task wrote, and
        into the pipe even if the task redirected fd 2."""
        self._flush()
        _write_all(self._own_fd, text.encode("utf-8", "backslashreplace"))

    def settle(self) -> None:
        self._flush()
        try:
            _write_all(self._own_fd, self._marker)
        except OSError:
            pass  # the task closed the worker's own copy: the agent then reads to the pipe's end
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)
        try:
            os.close(self._own_fd)
        except OSError:
            pass

    def _flush(self) -> None:
        for stream in (self.stdout, self.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass  # the task closed it; what it wrote before is in the pipe


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _text_stream(fd: int) -> TextIO:
    # As Python's own stderr: line-buffered, and characters UTF-8 cannot encode are escaped.
    return open(fd, "w", encoding="utf-8", errors="backslashreplace",
                buffering=1, closefd=False)


class _RemoteResults(LazyResults):
    """ctx.results in a worker: fetched from the agent on first use."""

    def __init__(self, channel: _Channel) -> None:
        super().__init__()
        self._channel = channel

    def _fetch(self) -> dict[str, Any]:
        self._channel.send(["results"])
        reply = json.loads(self._channel.reader.recv_bytes())
        self.waits_for = list(reply[2])
        return dict(reply[1])


def _watch(lifeline: int) -> None:
    try:
        while os.read(lifeline, 1):
            pass
    except OSError:
        pass
    os.killpg(os.getpgrp(), signal.SIGKILL)


class _ProcessState:
    """The working folder, environment and umask the worker started with (its agent's): each
    attempt starts with them, whatever an earlier attempt in this worker did with os.chdir,
    os.environ or os.umask."""

    def __init__(self) -> None:
        self.cwd = os.getcwd()
        self.environ = dict(os.environ)
        self.umask = os.umask(0o022)
        os.umask(self.umask)

    def restore(self) -> None:
        try:
            os.chdir(self.cwd)
        except OSError:
            pass  # the agent's folder is gone: the agent itself has the same trouble
        if os.environ != self.environ:
            os.environ.clear()
            os.environ.update(self.environ)
        os.umask(self.umask)


def serve(reader: Connection, writer: Connection, marker: bytes, fd_socket: socket.socket
          ) -> None:
    channel = _Channel(reader, writer)
    output = _Output(marker, fd_socket)
    runner = InProcessRunner(route_prints=False)
    state = _ProcessState()
    while True:
        try:
            request = json.loads(reader.recv_bytes())
        except (EOFError, OSError):
            return
        state.restore()
        context = AttemptContext(run_id=request["run_id"], task=request["task"],
                                 attempt=request["attempt"], params=request["params"],
                                 item=request["item"], results=_RemoteResults(channel),
                                 fire_time=request.get("fire_time"))
        output.open_attempt()
        shadowed = runner.shadowed(request["target"], request["base_dir"])
        if shadowed is not None:
            output.settle()
            channel.send(["done", False, None, shadowed, "shadowed"])
            continue
        before = {thread.ident for thread in threading.enumerate()}
        result: ExecResult = runner.attempt(request["target"], request["base_dir"], context,
                                            output)
        left = [thread.name for thread in threading.enumerate()
                if thread.ident not in before and not thread.daemon and thread.is_alive()]
        if left:
            # What they print would land in a later attempt's log: the worker is stopped
            # (with them, and what they started) instead of going back to the pool.
            output.write(f"taskplan: the task left threads running ({', '.join(left)}); they"
                         " are stopped with its worker\n")
        output.settle()
        channel.send(["done", result.ok, result.result, result.error]
                     + (["retire"] if left else []))


def main(argv: list[str]) -> None:
    read_fd, write_fd, lifeline = (int(a) for a in argv[1:4])
    agent = int(argv[4])
    marker = bytes.fromhex(argv[5])
    fd_socket = socket.socket(fileno=int(argv[6]))
    if os.getppid() != agent:
        os._exit(1)  # the agent died while this worker started
    # (No PR_SET_PDEATHSIG: it fires when the *thread* that started the worker ends, and a
    # pooled worker outlives the slot thread that started it.)
    threading.Thread(target=_watch, args=(lifeline,), daemon=True).start()
    serve(Connection(read_fd, writable=False), Connection(write_fd, readable=False), marker,
          fd_socket)


if __name__ == "__main__":
    main(sys.argv)
