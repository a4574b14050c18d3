"""The names of the shared connections known where job files are checked.

Kept apart from the connections file's schema so that a job file found in the checked-file
cache (spec/checked.py) is keyed by these names without loading pydantic.
"""

from __future__ import annotations

from contextvars import ContextVar

# taskplan.toml's [connections], the store's applied connections, files given together: a task
# may name one of these without its job declaring it.
SHARED: ContextVar[frozenset[str]] = ContextVar("taskplan_shared_connections",
                                                default=frozenset())
