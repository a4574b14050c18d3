"""taskplan's errors as HTTP statuses, one table for the API and the pages."""

from __future__ import annotations

from taskplan.errors import (
    ConflictError,
    DefinitionError,
    NotFoundError,
    StoreUnavailableError,
    TaskplanError,
    UsageError,
)
from taskplan.redact import mask_url


def status_of(exc: BaseException) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, StoreUnavailableError):
        return 503
    if isinstance(exc, UsageError | DefinitionError | TaskplanError):
        return 422
    return 500


def message_of(exc: BaseException) -> str:
    """One line, passwords masked."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return mask_url(text)
