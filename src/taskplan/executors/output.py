"""Per-thread routing of sys.stdout and sys.stderr, so print() in a python task reaches its log.

Python tasks share one interpreter, and several run at once on the agent's slot threads. A proxy
installed as sys.stdout/sys.stderr sends each write to the sink of the task running on the
writing thread, and every other write to the stream it replaced.

Limits, by construction: threads a task starts itself print to the real stream (a thread-local
is not inherited), and a logging handler that grabbed sys.stderr before the proxy was installed
keeps writing there.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

from taskplan.executors.base import LogSink

_local = threading.local()
_install_lock = threading.Lock()


class _Router:
    """Duck-types the replaced stream: everything but write/writelines/flush is forwarded."""

    def __init__(self, real: TextIO | None) -> None:
        self._real = real  # None when the process has no such stream (pythonw, some daemons)

    def write(self, text: str) -> int:
        sink: LogSink | None = getattr(_local, "sink", None)
        if sink is not None:
            sink.write(text)
        elif self._real is not None:
            return self._real.write(text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if getattr(_local, "sink", None) is None and self._real is not None:
            self._real.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def install() -> None:
    """Idempotent and cheap enough to call on every attempt. Checking each time (rather than
    once) re-wraps a stream that someone replaced after us, such as a test runner's capture."""
    if isinstance(sys.stdout, _Router) and isinstance(sys.stderr, _Router):
        return
    with _install_lock:
        if not isinstance(sys.stdout, _Router):
            sys.stdout = _Router(sys.stdout)
        if not isinstance(sys.stderr, _Router):
            sys.stderr = _Router(sys.stderr)


def route(sink: LogSink | None) -> LogSink | None:
    """Send this thread's prints to `sink` (None: the real streams); returns the previous sink.

    A pair of calls rather than a context manager: this sits on the path of every python task,
    and the generator machinery would cost more than the rest of a no-op task's overhead.
    """
    install()
    previous: LogSink | None = getattr(_local, "sink", None)
    _local.sink = sink
    return previous
