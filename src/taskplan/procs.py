"""Is a process that registered as an agent still alive? Asked only on the same machine.

An agent row records the process that owns it as `<boot id>/<pid namespace>/<start time>`
(Linux: /proc/sys/kernel/random/boot_id, the inode of /proc/self/ns/pid, field 22 of
/proc/PID/stat in clock ticks since boot). Another process that sees the same boot id and pid
namespace shares its process table, so it can tell at once that the owner is gone, without
waiting for the lease to run out: no such pid, a zombie, or a pid reused by a process that
started at another time. Anywhere else (another machine or container, a system without /proc)
nothing is known and lease expiry decides.
"""

from __future__ import annotations

import os
from functools import cache


@cache
def machine() -> str | None:
    """`<boot id>/<pid namespace>` of this process, or None where they cannot be read."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            boot = fh.read().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{boot}/{namespace}" if boot else None


_STAT = "/proc/{pid}/stat"


def _start_ticks(pid: int) -> tuple[str, str] | None:
    """(state letter, start time) of a pid, or None when there is no such process. Any other
    error (EACCES under hidepid, ...) raises: it says nothing about the process."""
    try:
        with open(_STAT.format(pid=pid), encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = text[text.rfind(")") + 2:].split()
    if len(fields) < 20:
        raise OSError(f"unexpected {_STAT.format(pid=pid)}")
    return fields[0], fields[19]


def identity(pid: int) -> str | None:
    """What an agent row records about its process; None when it cannot be known."""
    where = machine()
    try:
        found = _start_ticks(pid)
    except OSError:
        return None
    if where is None or found is None:
        return None
    return f"{where}/{found[1]}"


def is_gone(pid: int, recorded: str | None) -> bool:
    """True only when sure: `recorded` names a process of this machine that no longer runs."""
    where = machine()
    if recorded is None or where is None or not recorded.startswith(where + "/"):
        return False
    try:
        found = _start_ticks(pid)
    except OSError:
        return False  # unreadable (another user's process under hidepid): the lease decides
    if found is None or found[0] in {"Z", "X", "x"}:
        return True  # no such pid, or a zombie its parent has not waited for yet
    return recorded != f"{where}/{found[1]}"
