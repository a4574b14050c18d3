"""What taskplan's PostgreSQL server-side code and its Python callers must agree on.

The step functions live as versioned SQL files in `store/sql/` (`step_v1.sql`, `step_v2.sql`,
...): a change is a new file and a migration that executes it, so the history of the server
code reads like any other source. The files name the shared constants as `@NAME@` tokens,
filled in from here, so a lock class or channel is written in one place.
"""

from __future__ import annotations

import re

# These values are written into the functions a migration installs, so they are as frozen as
# the step_vN.sql files: changing one needs a new step_vN.sql and a new migration, never an
# edit in place (stores created earlier would keep the old value in their functions).

# The advisory lock class of runs: key (RUN_LOCK_CLASS, run id). The general path takes it
# exclusively (ops.lock_runs), the server step shared.
RUN_LOCK_CLASS = 7251
# The channel every wake-up NOTIFY goes to, and that each process LISTENs on.
NOTIFY_CHANNEL = "taskplan"
# The SQLSTATE the server step raises inside itself to hand a step to the general path.
STEP_FALLBACK = "TP001"

_TOKENS = {
    "@RUN_LOCK_CLASS@": str(RUN_LOCK_CLASS),
    "@NOTIFY_CHANNEL@": NOTIFY_CHANNEL,
    "@STEP_FALLBACK@": STEP_FALLBACK,
}


def server_sql(name: str) -> str:
    """The text of `store/sql/<name>` with its constants filled in."""
    # Imported here: importlib.resources pulls in tempfile, shutil and the compressors, and
    # only PostgreSQL needs the server code (every command opens a store).
    from importlib.resources import files

    text = files("taskplan.store").joinpath("sql", name).read_text(encoding="utf-8")
    for token, value in _TOKENS.items():
        text = text.replace(token, value)
    leftover = sorted(set(re.findall(r"@[A-Z_]+@", text)))
    if leftover:
        raise ValueError(f"{name}: unknown token(s) {', '.join(leftover)}")
    return text
