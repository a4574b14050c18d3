"""The worker process that runs python tasks: `python -m taskplan.executors.pyworker R W L`.

A worker runs one attempt at a time, for as long as its agent keeps it: it imports task modules
once (like any import) and calls the functions with an `AttemptContext`. Frames are JSON lists
over two pipes (R: requests and replies from the agent; W: frames to the agent):

    agent -> worker   {"target", "base_dir", "run_id", "task", "attempt", "params", "item",
                       "fire_time"}
    worker -> agent   ["log", text]           output of the attempt (print, sys.stderr)
                      ["results"]             ctx.results was first read: send them
    agent -> worker   ["results", {name: result}, [names waited for]]
    worker -> agent   ["done", ok, result, error]

L is a lifeline: the agent holds its write end and never writes. When the agent dies, the read
returns and the worker kills its own process group, so no task outlives the agent that ran it.
Killing a task is killing its worker's process group; the agent then starts a fresh worker.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

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


class _FrameWriter:
    """sys.stdout and sys.stderr of the worker: text goes to the agent as log frames.

    Lines are gathered until a newline (or 8 KiB), so a print is one frame, not two.
    """

    def __init__(self, channel: _Channel) -> None:
        self._channel = channel
        self._parts: list[str] = []
        self._size = 0
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        if not text:
            return 0
        with self._lock:
            self._parts.append(text)
            self._size += len(text)
            if "\n" not in text and self._size < 8192:
                return len(text)
            data = "".join(self._parts)
            self._parts.clear()
            self._size = 0
        self._channel.send(["log", data])
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        with self._lock:
            data = "".join(self._parts)
            self._parts.clear()
            self._size = 0
        if data:
            self._channel.send(["log", data])

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return "utf-8"


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


class _Sink:
    def __init__(self, writer: _FrameWriter) -> None:
        self._writer = writer

    def write(self, text: str) -> None:
        self._writer.write(text)


def _watch(lifeline: int) -> None:
    try:
        while os.read(lifeline, 1):
            pass
    except OSError:
        pass
    os.killpg(os.getpgrp(), signal.SIGKILL)


def serve(reader: Connection, writer: Connection) -> None:
    channel = _Channel(reader, writer)
    out = _FrameWriter(channel)
    sys.stdout = sys.stderr = out
    runner = InProcessRunner()
    sink = _Sink(out)
    while True:
        try:
            request = json.loads(reader.recv_bytes())
        except (EOFError, OSError):
            return
        context = AttemptContext(run_id=request["run_id"], task=request["task"],
                                 attempt=request["attempt"], params=request["params"],
                                 item=request["item"], results=_RemoteResults(channel),
                                 fire_time=request.get("fire_time"))
        result: ExecResult = runner.attempt(request["target"], request["base_dir"], context,
                                            sink)
        out.flush()
        channel.send(["done", result.ok, result.result, result.error])


def main(argv: list[str]) -> None:
    read_fd, write_fd, lifeline = (int(a) for a in argv[1:4])
    agent = int(argv[4]) if len(argv) > 4 else None
    if agent is not None and os.getppid() != agent:
        os._exit(1)  # the agent died while this worker started
    # (No PR_SET_PDEATHSIG: it fires when the *thread* that started the worker ends, and a
    # pooled worker outlives the slot thread that started it.)
    threading.Thread(target=_watch, args=(lifeline,), daemon=True).start()
    serve(Connection(read_fd, writable=False), Connection(write_fd, readable=False))


if __name__ == "__main__":
    main(sys.argv)
