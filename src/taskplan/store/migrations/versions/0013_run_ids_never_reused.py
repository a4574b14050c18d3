"""SQLite: run ids are never reused (runs.id AUTOINCREMENT), as on PostgreSQL.

Without it SQLite gives a new row the highest id plus one, so after `taskplan purge` deleted
the newest runs, the next run took the id of a purged one: a run number a user had written
down (in a ticket, a notification, a log) would then name another run. PostgreSQL's
sequence never goes back; nothing to do there.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


_COLUMNS = """
    job_id INTEGER NOT NULL,
    version_id INTEGER NOT NULL,
    root_run_id INTEGER,
    parent_task_run_id INTEGER,
    state VARCHAR(20) NOT NULL,
    "trigger" VARCHAR(20) NOT NULL,
    trigger_ref TEXT,
    params TEXT NOT NULL,
    priority INTEGER DEFAULT '0' NOT NULL,
    max_parallel INTEGER,
    on_failure VARCHAR(20) NOT NULL,
    halt VARCHAR(20),
    halt_stage INTEGER,
    unfinished INTEGER DEFAULT '0' NOT NULL,
    running INTEGER DEFAULT '0' NOT NULL,
    ready INTEGER DEFAULT '0' NOT NULL,
    failed INTEGER DEFAULT '0' NOT NULL,
    created_at FLOAT NOT NULL,
    started_at FLOAT,
    finished_at FLOAT,
    error TEXT,
    fire_at FLOAT,
    deadline_at FLOAT,
    deadline_state VARCHAR(20),
    pin_agent_id INTEGER,
    max_label_set INTEGER DEFAULT '0' NOT NULL,
    CONSTRAINT fk_runs_job_id_jobs FOREIGN KEY(job_id) REFERENCES jobs (id),
    CONSTRAINT fk_runs_version_id_job_versions FOREIGN KEY(version_id)
        REFERENCES job_versions (id)
"""
_NAMES = ("id, job_id, version_id, root_run_id, parent_task_run_id, state, \"trigger\","
          " trigger_ref, params, priority, max_parallel, on_failure, halt, halt_stage,"
          " unfinished, running, ready, failed, created_at, started_at, finished_at, error,"
          " fire_at, deadline_at, deadline_state, pin_agent_id, max_label_set")
_INDEXES = ("CREATE INDEX ix_runs_job_id_id ON runs (job_id, id)",
            "CREATE INDEX ix_runs_root_run_id ON runs (root_run_id)",
            "CREATE INDEX ix_runs_state_priority ON runs (state, priority)")


def _copy_runs(id_column: str, key: str = "") -> None:
    # Written out rather than Alembic's batch mode, whose copy orders constraints and indexes
    # differently from one process to the next: store/sql/fresh_sqlite.sql is rendered from
    # what this leaves in sqlite_master, and must come out the same every time. Copying sets
    # sqlite_sequence to the highest id kept.
    op.execute(f"CREATE TABLE runs_copy (\n    {id_column},{_COLUMNS}{key})")
    op.execute(f"INSERT INTO runs_copy ({_NAMES}) SELECT {_NAMES} FROM runs")
    op.execute("DROP TABLE runs")
    op.execute("ALTER TABLE runs_copy RENAME TO runs")
    for index in _INDEXES:
        op.execute(index)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _copy_runs("id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _copy_runs("id INTEGER NOT NULL", key=",\n    CONSTRAINT pk_runs PRIMARY KEY (id)\n")
