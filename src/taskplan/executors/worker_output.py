"""The agent's end of a python worker's output pipe (the worker's fds 1 and 2).

The worker writes everything an attempt prints there, then the marker that ends the attempt,
then sends "done" on its frame pipe. Reading here, in the agent, rather than relaying from a
thread in the worker keeps what a task wrote before its worker died (a segfault, `os._exit`,
a kill on timeout): the pipe's contents outlive its writer.
"""

from __future__ import annotations

import codecs
import os

from taskplan.executors.base import LogSink

_CHUNK = 65536


def new_marker() -> bytes:
    """Bytes no task prints by chance: NUL-delimited, with a random part."""
    return b"\0taskplan-attempt-end-" + os.urandom(8).hex().encode() + b"\0"


class WorkerOutput:
    """Reads the pipe without blocking and forwards decoded text to the attempt's log."""

    def __init__(self, fd: int, marker: bytes) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self._marker = marker
        self._pending = b""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def discard(self) -> None:
        """Before an attempt: drop what arrived since the last one ended (a program an earlier
        task left running in the background)."""
        while self._read():
            pass
        self._pending = b""
        self._decoder.reset()

    def forward(self, log: LogSink) -> bool:
        """Forward what can be read now; True once the attempt's marker (or the pipe's end)
        has been read. What follows the marker is not this attempt's and is dropped."""
        while True:
            chunk = self._read()
            if chunk is None:
                self._send(log, self._pending, final=True)
                self._pending = b""
                return True
            if not chunk:
                return False
            data = self._pending + chunk
            at = data.find(self._marker)
            if at >= 0:
                self._send(log, data[:at], final=True)
                self._pending = b""
                return True
            keep = _marker_start(data, self._marker)
            self._send(log, data[: len(data) - keep], final=False)
            self._pending = data[len(data) - keep:]

    def close(self) -> None:
        os.close(self.fd)

    def _read(self) -> bytes | None:
        """A chunk; b"" when nothing is there now; None at the end of the pipe."""
        try:
            return os.read(self.fd, _CHUNK) or None
        except BlockingIOError:
            return b""

    def _send(self, log: LogSink, data: bytes, *, final: bool) -> None:
        text = self._decoder.decode(data, final)
        if final:
            self._decoder.reset()
        if text:
            log.write(text)


def _marker_start(data: bytes, marker: bytes) -> int:
    """How many bytes at the end of data could begin a marker split across two reads."""
    for size in range(min(len(data), len(marker) - 1), 0, -1):
        if marker.startswith(data[-size:]):
            return size
    return 0
