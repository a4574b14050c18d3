"""The agent's end of a python attempt's output pipe (the worker's fds 1 and 2 for that attempt).

Each attempt gets a pipe of its own: the agent makes it, hands the write end to the worker just
before the request, and reads here. The worker writes everything the attempt prints, then the
marker that ends the attempt, then sends "done" on its frame pipe. Reading here, in the agent,
rather than relaying from a thread in the worker keeps what a task wrote before its worker
died (a segfault, `os._exit`, a kill on timeout): the pipe's contents outlive its writer.
Closing the read end after the attempt leaves a program the task left running writing into
nothing (it gets EPIPE), never into a later attempt's log.
"""

from __future__ import annotations

import codecs
import os

from taskplan.executors.base import LogSink

_CHUNK = 65536
# Bytes one `forward` reads at most, so a task that writes without pause cannot keep the
# agent from checking its deadline or its frames.
_MAX_PER_CALL = 16 * _CHUNK


def new_marker() -> bytes:
    """Bytes no task prints by chance: NUL-delimited, with a random part."""
    return b"\0taskplan-attempt-end-" + os.urandom(8).hex().encode() + b"\0"


class AttemptOutput:
    """Reads one attempt's pipe without blocking and forwards decoded text to its log."""

    def __init__(self, fd: int, marker: bytes) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self.ended = False  # the marker, or the end of the pipe, was read
        self._marker = marker
        self._pending = b""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def forward(self, log: LogSink) -> None:
        """Forward what can be read now (up to a bound); sets `ended` once the attempt's
        marker or the pipe's end has been read. What follows the marker is not this
        attempt's and is dropped."""
        budget = _MAX_PER_CALL
        while budget > 0 and not self.ended:
            chunk = self._read()
            if chunk is None:
                self._finish(log, self._pending)
                return
            if not chunk:
                return
            budget -= len(chunk)
            data = self._pending + chunk
            at = data.find(self._marker)
            if at >= 0:
                self._finish(log, data[:at])
                return
            keep = _marker_start(data, self._marker)
            self._send(log, data[: len(data) - keep], final=False)
            self._pending = data[len(data) - keep:]

    def close(self) -> None:
        os.close(self.fd)

    def _finish(self, log: LogSink, data: bytes) -> None:
        self._send(log, data, final=True)
        self._pending = b""
        self.ended = True

    def _read(self) -> bytes | None:
        """A chunk; b"" when nothing is there now; None at the end of the pipe."""
        try:
            return os.read(self.fd, _CHUNK) or None
        except BlockingIOError:
            return b""

    def _send(self, log: LogSink, data: bytes, *, final: bool) -> None:
        text = self._decoder.decode(data, final)
        if text:
            log.write(text)


def _marker_start(data: bytes, marker: bytes) -> int:
    """How many bytes at the end of data could begin a marker split across two reads."""
    for size in range(min(len(data), len(marker) - 1), 0, -1):
        if marker.startswith(data[-size:]):
            return size
    return 0
