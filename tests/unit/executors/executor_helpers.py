"""Helpers for the executor tests (imported by module name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path


class RecordingSink:
    def __init__(self) -> None:
        self._parts: list[str] = []
        self._changed = threading.Condition()

    def write(self, text: str) -> None:
        with self._changed:
            self._parts.append(text)
            self._changed.notify_all()

    @property
    def text(self) -> str:
        with self._changed:
            return "".join(self._parts)

    def wait_for(self, needle: str, timeout: float = 5.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: needle in "".join(self._parts), timeout)


def process_alive(pid: int) -> bool:
    """Zombies count as dead: in a container nobody may reap an orphan we killed."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def live_group_members(pgid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-e", "-o", "pid=,pgid=,stat="], capture_output=True, text=True, check=True
    ).stdout
    members = []
    for line in out.splitlines():
        pid, group, stat = line.split(None, 2)
        if int(group) == pgid and not stat.startswith("Z"):
            members.append(int(pid))
    return members


def gone_soon(pids: list[int], pgid: int | None = None, timeout: float = 2.0) -> bool:
    """A signalled process is not dead the instant kill() returns; give the kernel a moment."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in pids if process_alive(p)]
        if pgid is not None:
            alive += live_group_members(pgid)
        if not alive:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
