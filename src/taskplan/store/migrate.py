"""Create or upgrade the schema on first use, safely when several processes start at once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Connection, Engine

# The newest migration. Checking it with one plain SELECT lets a CLI command skip importing
# Alembic and SQLAlchemy when the schema is current; a test keeps it equal to the scripts' head.
HEAD = "0017"
_MIGRATIONS = Path(__file__).parent / "migrations"
# An arbitrary constant: the PostgreSQL advisory lock key that serialises migrations.
_PG_LOCK_KEY = 7_251_031_001


def stored_revision(dbapi_conn: Any) -> str | None:
    """The schema revision the database says it holds; None when it has none (no table yet,
    or an empty one). One plain SELECT: no Alembic."""
    cur = dbapi_conn.cursor()
    try:
        cur.execute("SELECT version_num FROM alembic_version")
        rows = cur.fetchall()
    except Exception as exc:
        dbapi_conn.rollback()
        if not _no_such_table(exc):
            raise  # the database cannot be read (a full disk, a lost server): not "no store"
        return None
    dbapi_conn.rollback()
    # (More than one row is no schema of ours: joined, it names itself in the refusal.)
    return ",".join(sorted(str(r[0]) for r in rows)) or None


def _no_such_table(exc: Exception) -> bool:
    # SQLite: "no such table: alembic_version"; PostgreSQL: SQLSTATE 42P01 (undefined_table).
    return "no such table" in str(exc) or getattr(exc, "sqlstate", None) == "42P01"


def is_current(dbapi_conn: Any) -> bool:
    """True when the store's schema is at HEAD (False with no schema yet)."""
    return stored_revision(dbapi_conn) == HEAD


def known_revisions() -> set[str]:
    """Every revision this taskplan has a migration for (from the scripts' file names)."""
    return {p.name.partition("_")[0] for p in (_MIGRATIONS / "versions").glob("[0-9]*_*.py")}


def refusal(revision: str, where: str) -> str | None:
    """Why a store at `revision` cannot be opened by this taskplan, or None when it can."""
    if revision == HEAD or revision in known_revisions():
        return None
    if revision.isdigit() and len(revision) == len(HEAD) and revision > HEAD:
        return (f"the store at {where} has schema {revision}, newer than this taskplan knows"
                f" ({HEAD}): it was upgraded by a later version; upgrade taskplan to use it")
    return (f"{where} is not a taskplan store: its alembic_version table says {revision!r},"
            " a revision of another program (check --db)")


def alembic_config(connection: Connection) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the schema to head. Cheap when already there (one SELECT)."""
    from alembic import command
    from sqlalchemy import text

    head = head_revision()
    with engine.connect() as conn:
        if current_revision(conn) == head:
            return
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Transaction-scoped: released at commit, so a crash cannot leave it held.
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        if current_revision(conn) == head:
            return
        command.upgrade(alembic_config(conn), "head")
