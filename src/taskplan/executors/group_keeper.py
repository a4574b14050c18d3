"""Shell tasks end with their agent, even one killed with SIGKILL.

A shell attempt runs in a session of its own (so that a timeout or a cancel can kill all it
started), which also means nothing kills it when its agent dies: it would run on for nobody
while the work is retried elsewhere, twice at once. So each agent process keeps one small `sh`
(the keeper) that holds the read end of a pipe; the agent writes `+ PGID` when an attempt's
process group starts and `- PGID` just before it reaps the group's leader. When the agent dies,
however it dies, the pipe reaches its end and the keeper kills every group still listed.

A group id cannot be reused while its leader is unreaped, and the agent removes it before
reaping, so the keeper never kills an unrelated group. The keeper runs in a session of its own
and ignores the terminal's signals: a Ctrl-C is for the agent, which stops its tasks itself.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading

logger = logging.getLogger(__name__)

# `${groups%% $pg *}` is what comes before the id, `${groups#* $pg }` what follows it.
_KEEPER = """
trap '' INT TERM HUP
groups=' '
while read -r op pg; do
  case $op in
    +) groups="$groups$pg " ;;
    -) case $groups in *" $pg "*) groups="${groups%% $pg *} ${groups#* $pg }" ;; esac ;;
  esac
done
for pg in $groups; do kill -9 "-$pg" 2>/dev/null; done
"""


class GroupKeeper:
    """The agent's side: started on first use, restarted (with the live groups) if it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._live: set[int] = set()

    def started(self, pgid: int) -> None:
        with self._lock:
            self._live.add(pgid)
            self._send(f"+ {pgid}\n")

    def ending(self, pgid: int) -> None:
        """Before the group's leader is reaped (the id is still pinned to it)."""
        with self._lock:
            self._live.discard(pgid)
            self._send(f"- {pgid}\n")

    def _send(self, line: str) -> None:
        for _ in range(2):  # a keeper that died is replaced once, with every live group
            if self._fd is None and not self._start():
                return
            assert self._fd is not None
            try:
                os.write(self._fd, line.encode())
                return
            except OSError:
                os.close(self._fd)
                self._fd = None
                line = "".join(f"+ {pg}\n" for pg in sorted(self._live))

    def _start(self) -> bool:
        read_end, write_end = os.pipe()  # neither is inherited by the tasks
        try:
            subprocess.Popen(["/bin/sh", "-c", _KEEPER], stdin=read_end,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True, close_fds=True)
        except OSError as exc:
            os.close(write_end)
            logger.warning("no keeper for shell tasks (they would outlive a killed agent): %s",
                           exc)
            return False
        finally:
            os.close(read_end)
        self._fd = write_end
        return True


KEEPER = GroupKeeper()
