"""Backfills: one row per `taskplan backfill` (its range and max_active); its runs point at it
with trigger 'backfill' and trigger_ref the backfill id.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backfills",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  nullable=False),
        sa.Column("from_at", sa.Float(), nullable=False),
        sa.Column("to_at", sa.Float(), nullable=False),
        sa.Column("max_active", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backfills")),
    )


def downgrade() -> None:
    op.drop_table("backfills")
