"""The initial schema: jobs, versions, runs, task runs, attempts, logs, events, agents,
pools, leases and schedule/trigger firings.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("heartbeat_at", sa.Float(), nullable=False),
        sa.Column("lease_until", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
    )
    op.create_index(
        op.f("ix_agents_state_lease_until"), "agents", ["state", "lease_until"], unique=False
    )
    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "task_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index(op.f("ix_events_run_id_id"), "events", ["run_id", "id"], unique=False)
    op.create_table(
        "jobs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "current_version_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("name", name=op.f("uq_jobs_name")),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("until", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "log_chunks",
        sa.Column(
            "task_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("task_run_id", "attempt", "seq", name=op.f("pk_log_chunks")),
    )
    op.create_table(
        "pools",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_pools")),
    )
    op.create_table(
        "schedule_firings",
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("schedule_key", sa.String(length=200), nullable=False),
        sa.Column("fire_at", sa.Float(), nullable=False),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "job_id", "schedule_key", "fire_at", name=op.f("pk_schedule_firings")
        ),
    )
    op.create_table(
        "schedule_state",
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("schedule_key", sa.String(length=200), nullable=False),
        sa.Column("fired_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_fire_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("job_id", "schedule_key", name=op.f("pk_schedule_state")),
    )
    op.create_table(
        "task_edges",
        sa.Column("up_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("down_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.PrimaryKeyConstraint("up_id", "down_id", name=op.f("pk_task_edges")),
    )
    op.create_table(
        "trigger_firings",
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("trigger_index", sa.Integer(), nullable=False),
        sa.Column("upstream_key", sa.String(length=500), nullable=False),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "job_id", "trigger_index", "upstream_key", name=op.f("pk_trigger_firings")
        ),
    )
    op.create_table(
        "job_versions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("spec_hash", sa.String(length=64), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("base_dir", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_versions_job_id_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_versions")),
        sa.UniqueConstraint("job_id", "version", name=op.f("uq_job_versions_job_id_version")),
    )
    op.create_table(
        "runs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "version_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "root_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "parent_task_run_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("trigger_ref", sa.Text(), nullable=True),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_parallel", sa.Integer(), nullable=True),
        sa.Column("on_failure", sa.String(length=20), nullable=False),
        sa.Column("halt", sa.String(length=20), nullable=True),
        sa.Column("halt_stage", sa.Integer(), nullable=True),
        sa.Column("unfinished", sa.Integer(), server_default="0", nullable=False),
        sa.Column("running", sa.Integer(), server_default="0", nullable=False),
        sa.Column("ready", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_runs_job_id_jobs")),
        sa.ForeignKeyConstraint(
            ["version_id"], ["job_versions.id"], name=op.f("fk_runs_version_id_job_versions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index(op.f("ix_runs_job_id_id"), "runs", ["job_id", "id"], unique=False)
    op.create_index(op.f("ix_runs_root_run_id"), "runs", ["root_run_id"], unique=False)
    op.create_index(op.f("ix_runs_state_priority"), "runs", ["state", "priority"], unique=False)
    op.create_table(
        "task_runs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("task", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("parent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("item_index", sa.Integer(), nullable=True),
        sa.Column("item", sa.Text(), nullable=True),
        sa.Column("stage", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("trigger_rule", sa.String(length=20), nullable=False),
        sa.Column("pending_up", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failed_up", sa.Integer(), server_default="0", nullable=False),
        sa.Column("pending_children", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failed_children", sa.Integer(), server_default="0", nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("rank", sa.Integer(), server_default="0", nullable=False),
        sa.Column("pool", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column("ready_at", sa.Float(), nullable=True),
        sa.Column("agent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "child_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_task_runs_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_runs")),
    )
    op.create_index(
        op.f("ix_task_runs_agent_id_state"), "task_runs", ["agent_id", "state"], unique=False
    )
    op.create_index(
        op.f("ix_task_runs_parent_id_item_index"),
        "task_runs",
        ["parent_id", "item_index"],
        unique=False,
    )
    op.create_index(
        op.f("ix_task_runs_run_id_state_rank_ready_at"),
        "task_runs",
        ["run_id", "state", "rank", "ready_at"],
        unique=False,
    )
    op.create_index(op.f("ix_task_runs_run_id_task"), "task_runs", ["run_id", "task"], unique=False)
    op.create_index(
        op.f("ix_task_runs_state_ready_at"),
        "task_runs",
        ["state", "ready_at"],
        unique=False,
        sqlite_where=sa.text("state = 'retrying'"),
        postgresql_where=sa.text("state = 'retrying'"),
    )
    op.create_table(
        "attempts",
        sa.Column(
            "task_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("output_bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("truncated", sa.Boolean(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["task_run_id"], ["task_runs.id"], name=op.f("fk_attempts_task_run_id_task_runs")
        ),
        sa.PrimaryKeyConstraint("task_run_id", "attempt", name=op.f("pk_attempts")),
    )
    op.create_index(op.f("ix_attempts_run_id"), "attempts", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_attempts_run_id"), table_name="attempts")
    op.drop_table("attempts")
    op.drop_index(op.f("ix_task_runs_state_ready_at"), table_name="task_runs")
    op.drop_index(op.f("ix_task_runs_run_id_task"), table_name="task_runs")
    op.drop_index(op.f("ix_task_runs_run_id_state_rank_ready_at"), table_name="task_runs")
    op.drop_index(op.f("ix_task_runs_parent_id_item_index"), table_name="task_runs")
    op.drop_index(op.f("ix_task_runs_agent_id_state"), table_name="task_runs")
    op.drop_table("task_runs")
    op.drop_index(op.f("ix_runs_state_priority"), table_name="runs")
    op.drop_index(op.f("ix_runs_root_run_id"), table_name="runs")
    op.drop_index(op.f("ix_runs_job_id_id"), table_name="runs")
    op.drop_table("runs")
    op.drop_table("job_versions")
    op.drop_table("trigger_firings")
    op.drop_table("task_edges")
    op.drop_table("schedule_state")
    op.drop_table("schedule_firings")
    op.drop_table("pools")
    op.drop_table("log_chunks")
    op.drop_table("leases")
    op.drop_table("jobs")
    op.drop_index(op.f("ix_events_run_id_id"), table_name="events")
    op.drop_table("events")
    op.drop_index(op.f("ix_agents_state_lease_until"), table_name="agents")
    op.drop_table("agents")
