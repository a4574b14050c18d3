"""The bytes of a job file, read with the same bounds as its text (spec/source.py).

Reading comes before any bound on the text can be checked, so it has bounds of its own: only a
regular file is read (`/dev/zero` never ends, a named pipe waits for a writer that may never
come), and no more of it than the text bound allows.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from taskplan.errors import DefinitionError, Problem
from taskplan.spec.source import MAX_DOCUMENT_CHARS, too_large
from taskplan.utf8 import NotUtf8, decode

# A UTF-8 character is at most 4 bytes, so a file longer than this has more characters than
# the text bound allows whatever it holds: it is refused without reading the rest.
MAX_DOCUMENT_BYTES = 4 * MAX_DOCUMENT_CHARS

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def not_regular(mode: int) -> str | None:
    """Why a file of this mode is not read (None for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    return f"not a regular file ({kind})"


def _why_not(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        # The system's words ("too many levels of symbolic links") hide the usual cause.
        return "a symbolic link loop (or more links in a row than the system follows)"
    return exc.strerror or str(exc)


def read_source(path: str | Path, shown: str) -> tuple[bytes, str]:
    """The bytes of the job file at `path` and their text; DefinitionError naming `shown` if
    it cannot be read, is not a regular file or is too large."""

    def refuse(line: int, col: int, message: str) -> DefinitionError:
        return DefinitionError([Problem(shown, line, col, message)])

    try:
        # Its path is stored as text (where it was applied from, the tasks' folder): a name
        # that is not UTF-8 made apply and run fail with a UnicodeEncodeError.
        os.path.abspath(path).encode("utf-8")
    except UnicodeEncodeError:
        raise refuse(1, 1, "its path is not UTF-8 text, which a job's folder must be (it is"
                     " kept as text): rename the file, or the folders above it") from None
    try:
        # O_NONBLOCK: opening a named pipe otherwise waits for a writer before fstat can tell
        # what it is. A regular file ignores it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise refuse(1, 1, f"cannot read the file: {_why_not(exc)}") from None
    why = not_regular(os.fstat(fd).st_mode)
    if why is not None:
        os.close(fd)
        raise refuse(1, 1, why)
    with os.fdopen(fd, "rb") as fh:
        try:
            raw = fh.read(MAX_DOCUMENT_BYTES + 1)
        except OSError as exc:
            raise refuse(1, 1, f"cannot read the file: {exc.strerror or exc}") from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        problem = too_large(raw.decode("utf-8", errors="replace"), shown)
        raise DefinitionError([problem])
    try:
        text = decode(raw)
    except NotUtf8 as exc:
        raise refuse(exc.line, exc.col, exc.message) from None
    return raw, text
