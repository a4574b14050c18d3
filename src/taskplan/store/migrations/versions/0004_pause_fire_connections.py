"""Paused jobs (jobs.paused), the firing instant of scheduled and backfilled runs
(runs.fire_at), and shared connections stored as references (connections).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN on every backend (SQLite's batch mode does it in place for additions).
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("paused", sa.Boolean(), server_default="0", nullable=False))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("fire_at", sa.Float(), nullable=True))
    op.create_table(
        "connections",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_connections")),
    )


def downgrade() -> None:
    op.drop_table("connections")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("fire_at")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("paused")
