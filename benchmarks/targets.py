"""Where a repetition's store lives: a fresh SQLite file, or a URL given on the command line.

PostgreSQL comes later: give `Target` a `fresh()` that creates (and drops) a database per
repetition, and a floor of its own in floor.py. Only SQLite is implemented now.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from taskplan.store.urls import backend_of, mask_url


@dataclass(frozen=True)
class Target:
    spec: str  # what --db said: "sqlite" or a URL
    workdir: str  # a temp folder for this process: job module files, SQLite stores

    @property
    def backend(self) -> str:
        return "sqlite" if self.spec == "sqlite" else backend_of(self.spec)

    @property
    def shown(self) -> str:
        return self.spec if self.spec == "sqlite" else mask_url(self.spec)

    @contextmanager
    def fresh(self, label: str) -> Iterator[str]:
        """A store URL for one repetition, removed afterwards when we created it."""
        if self.spec == "sqlite":
            fd, path = tempfile.mkstemp(prefix=f"{label}-", suffix=".db", dir=self.workdir)
            os.close(fd)
            os.unlink(path)  # let the store create it, as a user's first run would
            try:
                yield f"sqlite:///{path}"
            finally:
                for suffix in ("", "-wal", "-shm"):
                    try:
                        os.unlink(path + suffix)
                    except FileNotFoundError:
                        pass
            return
        if self.backend == "sqlite":
            yield self.spec  # the caller's own file: runs are scoped by run id, so it can grow
            return
        raise SystemExit(
            f"--db {self.shown}: the {self.backend} rows are not implemented yet"
            " (only --db sqlite or a sqlite:/// URL)"
        )


def check(spec: str) -> None:
    """Fail early, in the parent, on a --db the rows cannot use."""
    if spec == "sqlite" or backend_of(spec) == "sqlite":
        return
    if backend_of(spec) == "postgresql":
        raise SystemExit("--db postgresql://...: the PostgreSQL rows are not implemented yet")
    raise SystemExit(f"--db {mask_url(spec)}: expected 'sqlite' or a sqlite:/// URL")
