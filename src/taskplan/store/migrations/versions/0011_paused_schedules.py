"""Schedules paused one at a time (a job's other schedules keep firing): paused_schedules.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "paused_schedules",
        sa.Column("job_id", ID, nullable=False),
        sa.Column("schedule_key", sa.String(200), nullable=False),
        sa.Column("paused_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "schedule_key", name="pk_paused_schedules"),
    )


def downgrade() -> None:
    op.drop_table("paused_schedules")
