"""taskplan's own tables, declared once with SQLAlchemy Core.

Times are UTC epoch seconds (double precision): cheap to compare and portable across backends.
JSON values are stored as text, never pickled.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

# Named constraints so that migrations and the declared schema compare equal on every backend.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = BigInteger().with_variant(Integer(), "sqlite")

jobs = Table(
    "jobs",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("current_version_id", ID, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # Paused: schedules and cross-job triggers make no runs; manual runs still start.
    Column("paused", Boolean, nullable=False, server_default="0"),
)

job_versions = Table(
    "job_versions",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("job_id", ID, ForeignKey("jobs.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("spec_hash", String(64), nullable=False),
    Column("definition", Text, nullable=False),
    Column("source_path", Text, nullable=False),
    Column("base_dir", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("job_id", "version"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("job_id", ID, ForeignKey("jobs.id"), nullable=False),
    Column("version_id", ID, ForeignKey("job_versions.id"), nullable=False),
    Column("root_run_id", ID, nullable=True),
    Column("parent_task_run_id", ID, nullable=True),
    Column("state", String(20), nullable=False),
    Column("trigger", String(20), nullable=False),
    Column("trigger_ref", Text, nullable=True),
    Column("params", Text, nullable=False),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("max_parallel", Integer, nullable=True),
    Column("on_failure", String(20), nullable=False),
    # Set when the run stops taking new tasks: stop | finish_stage | cancel.
    Column("halt", String(20), nullable=True),
    Column("halt_stage", Integer, nullable=True),
    # Counters kept by the transactions that move task runs, so that dispatch never scans.
    Column("unfinished", Integer, nullable=False, server_default="0"),
    Column("running", Integer, nullable=False, server_default="0"),
    Column("ready", Integer, nullable=False, server_default="0"),
    Column("failed", Integer, nullable=False, server_default="0"),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("error", Text, nullable=True),
    # The schedule instant a scheduled or backfilled run stands for (`run.fire_time`).
    Column("fire_at", Float, nullable=True),
    # The job's deadline for this run, and what the deadline checker found: NULL (none yet),
    # pending (counted from a start still to come), at_risk, missed (docs/forecasts.md).
    Column("deadline_at", Float, nullable=True),
    Column("deadline_state", String(20), nullable=True),
    # Routing: the agent a foreground `taskplan run` pinned this run to (others may claim it
    # once that agent is no longer alive), and the highest label set its task runs need
    # (0: none, so claims skip the label filter).
    Column("pin_agent_id", ID, nullable=True),
    Column("max_label_set", ID, nullable=False, server_default="0"),
    Index(None, "state", "priority"),
    Index(None, "job_id", "id"),
    Index(None, "root_run_id"),
    # A purged run's id is never given again (PostgreSQL's sequences never go back).
    sqlite_autoincrement=True,
)

task_runs = Table(
    "task_runs",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("run_id", ID, ForeignKey("runs.id"), nullable=False),
    Column("task", String(200), nullable=False),
    # task: runs on an agent; barrier: a stage barrier settled inside transactions;
    # foreach: the parent of one task run per item.
    Column("kind", String(10), nullable=False),
    Column("parent_id", ID, nullable=True),
    Column("item_index", Integer, nullable=True),
    Column("item", Text, nullable=True),
    Column("stage", Integer, nullable=True),
    Column("state", String(20), nullable=False),
    Column("trigger_rule", String(20), nullable=False),
    Column("pending_up", Integer, nullable=False, server_default="0"),
    Column("failed_up", Integer, nullable=False, server_default="0"),
    Column("pending_children", Integer, nullable=False, server_default="0"),
    Column("failed_children", Integer, nullable=False, server_default="0"),
    Column("priority", Integer, nullable=False, server_default="0"),
    # -priority, so that one ascending index serves "higher priority first, then FIFO".
    Column("rank", Integer, nullable=False, server_default="0"),
    Column("pool", String(200), nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("max_attempts", Integer, nullable=False, server_default="1"),
    Column("ready_at", Float, nullable=True),
    Column("agent_id", ID, nullable=True),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("result", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("child_run_id", ID, nullable=True),
    Column("label_set", ID, nullable=True),  # labels its agent needs (label_sets.id)
    Index(None, "run_id", "state", "rank", "ready_at"),
    # Partial: only retry timers read it. A full (state, ...) index tempts SQLite's planner
    # to scan every ready row for `id IN (...) AND state = 'ready'` claims.
    Index(None, "state", "ready_at", sqlite_where=text("state = 'retrying'"),
          postgresql_where=text("state = 'retrying'")),
    Index(None, "agent_id", "state"),
    Index(None, "parent_id", "item_index"),
    Index(None, "run_id", "task"),
    # Partial: a claim counts each pool's running task runs (ops.pool_usage, step_v4.sql);
    # without it that count scans every task run of the store's history. Runs without pools
    # never touch it.
    Index(None, "pool", sqlite_where=text("state = 'running' AND pool IS NOT NULL"),
          postgresql_where=text("state = 'running' AND pool IS NOT NULL")),
)

task_edges = Table(
    "task_edges",
    metadata,
    Column("up_id", ID, nullable=False),
    Column("down_id", ID, nullable=False),
    PrimaryKeyConstraint("up_id", "down_id"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("task_run_id", ID, ForeignKey("task_runs.id"), nullable=False),
    Column("run_id", ID, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("agent_id", ID, nullable=True),
    Column("state", String(20), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("output_bytes", BigInteger, nullable=False, server_default="0"),
    Column("truncated", Boolean, nullable=False, server_default="0"),
    PrimaryKeyConstraint("task_run_id", "attempt"),
    Index(None, "run_id"),
)

log_chunks = Table(
    "log_chunks",
    metadata,
    Column("task_run_id", ID, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("data", Text, nullable=False),
    PrimaryKeyConstraint("task_run_id", "attempt", "seq"),
)

events = Table(
    "events",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("run_id", ID, nullable=False),
    Column("task_run_id", ID, nullable=True),
    Column("state", String(20), nullable=False),
    Column("detail", Text, nullable=True),
    Index(None, "run_id", "id"),
)

agents = Table(
    "agents",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("slots", Integer, nullable=False),
    Column("state", String(20), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("lease_until", Float, nullable=False),
    # `<boot id>/<pid namespace>/<start time>` of the owning process (procs.identity).
    Column("process", String(200), nullable=True),
    # Its routing labels, sorted and comma-joined (`host=<hostname>` always among them).
    Column("labels", Text, nullable=False, server_default=text("''")),
    Index(None, "state", "lease_until"),
)

# Each distinct set of labels some task requires, sorted and comma-joined; task runs point at
# it by id. Rows are never changed: agents cache them.
label_sets = Table(
    "label_sets",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("labels", String(2000), nullable=False, unique=True),
)

pools = Table(
    "pools",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("size", Integer, nullable=False),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("until", Float, nullable=False),
)

schedule_state = Table(
    "schedule_state",
    metadata,
    Column("job_id", ID, nullable=False),
    Column("schedule_key", String(200), nullable=False),
    Column("fired_count", Integer, nullable=False, server_default="0"),
    Column("last_fire_at", Float, nullable=True),
    PrimaryKeyConstraint("job_id", "schedule_key"),
)

# A schedule paused on its own (`taskplan pause JOB --schedule KEY`): its firings are recorded
# as skipped, the job's other schedules fire as usual.
paused_schedules = Table(
    "paused_schedules",
    metadata,
    Column("job_id", ID, nullable=False),
    Column("schedule_key", String(200), nullable=False),
    Column("paused_at", Float, nullable=False),
    PrimaryKeyConstraint("job_id", "schedule_key"),
)

schedule_firings = Table(
    "schedule_firings",
    metadata,
    Column("job_id", ID, nullable=False),
    Column("schedule_key", String(200), nullable=False),
    Column("fire_at", Float, nullable=False),
    Column("run_id", ID, nullable=True),
    Column("created_at", Float, nullable=False),
    # Why the firing made no run (run_id NULL): an overlap policy, a run already queued.
    Column("note", Text, nullable=True),
    PrimaryKeyConstraint("job_id", "schedule_key", "fire_at"),
)

trigger_firings = Table(
    "trigger_firings",
    metadata,
    Column("job_id", ID, nullable=False),
    Column("trigger_index", Integer, nullable=False),
    Column("upstream_key", String(500), nullable=False),
    Column("run_id", ID, nullable=True),
    Column("created_at", Float, nullable=False),
    # The set itself when upstream_key is its hash (a set longer than upstream_key holds).
    Column("upstream_runs", Text, nullable=True),
    PrimaryKeyConstraint("job_id", "trigger_index", "upstream_key"),
)

# Shared connections applied from a connections file: the URL as written, with its `${VAR}` /
# `${file:...}` references unresolved, so no secret is stored; agents resolve it at run time.
connections = Table(
    "connections",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("url", Text, nullable=False),
    Column("source_path", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Named business calendars, applied from their own files and versioned like jobs. Schedules
# name them, so a new version takes effect without re-applying the jobs that use it.
calendars = Table(
    "calendars",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("current_version_id", ID, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

calendar_versions = Table(
    "calendar_versions",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("calendar_id", ID, ForeignKey("calendars.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("spec_hash", String(64), nullable=False),
    Column("definition", Text, nullable=False),
    Column("source_path", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("calendar_id", "version"),
)

# The notification outbox (docs/operations.md): one row per (event, channel), written in the
# transaction that records the event; the sender delivers it and logs each try.
notifications = Table(
    "notifications",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("event", String(40), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("job", String(200), nullable=True),
    Column("run_id", ID, nullable=True),
    Column("task_run_id", ID, nullable=True),
    Column("channel", Text, nullable=False),  # JSON (notify.rules.Channel)
    Column("payload", Text, nullable=False),  # JSON, what the channel sends
    Column("state", String(20), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False, server_default="0"),
    # Tries made before the current round (a resend starts a new round of tries).
    Column("round_from", Integer, nullable=False, server_default="0"),
    Column("next_at", Float, nullable=False),
    Column("delivered_at", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    Index(None, "state", "next_at"),
    Index(None, "run_id"),
)

notification_attempts = Table(
    "notification_attempts",
    metadata,
    Column("notification_id", ID, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("sender", String(200), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),  # NULL: in flight, or its sender died
    Column("ok", Boolean, nullable=True),
    Column("status", Integer, nullable=True),  # HTTP status or exit code
    Column("error", Text, nullable=True),
    PrimaryKeyConstraint("notification_id", "attempt"),
)

# One row per `taskplan backfill`; its runs carry trigger 'backfill' and trigger_ref its id, and
# at most `max_active` of them are running at once (the rest wait `queued`).
backfills = Table(
    "backfills",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("job_id", ID, nullable=False),
    Column("from_at", Float, nullable=False),
    Column("to_at", Float, nullable=False),
    Column("max_active", Integer, nullable=True),
    Column("created_at", Float, nullable=False),
)
