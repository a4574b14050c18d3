"""The exception tree. Every error taskplan raises on purpose derives from TaskplanError."""

from __future__ import annotations

from collections.abc import Iterable

from taskplan.dataclass import dataclass


class TaskplanError(Exception):
    """Root of every error taskplan raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a job file, at a position (1-based line and column)."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class DefinitionError(TaskplanError):
    """A job file is invalid; carries every problem found, each with file:line:col."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = sorted(problems, key=lambda p: (p.file, p.line, p.col))
        super().__init__("\n".join(str(p) for p in self.problems))


class UsageError(TaskplanError):
    """Bad input on the command line or to an API call (exit code 2)."""


class NotFoundError(UsageError):
    """A named job, run or task does not exist."""


class ConflictError(TaskplanError):
    """The request contradicts the current state of what it names (exit code 2).

    For example retrying a run that already succeeded, or stopping a run that has ended:
    nothing is changed. The web API answers it with HTTP 409.
    """


class NoStoreError(UsageError):
    """A command that only reads was pointed at a store that does not exist (exit code 2)."""


class StoreVersionError(UsageError):
    """The store's schema is not one this taskplan knows: newer (written by a later version),
    or not taskplan's at all (exit code 2: retrying cannot help)."""


class StoreUnavailableError(TaskplanError):
    """taskplan's own database cannot be reached (exit code 3)."""


class StoreConflictError(StoreUnavailableError):
    """A transaction lost a deadlock or serialization race and was rolled back.

    Nothing was written, so running it again is safe; daemons retry it like an outage.
    """
