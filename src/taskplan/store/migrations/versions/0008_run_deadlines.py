"""A run's deadline and what the deadline checker found (runs.deadline_at, runs.deadline_state).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns without defaults: a plain ADD COLUMN, no rewrite of the runs table.
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("deadline_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("deadline_state", sa.String(20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("deadline_state")
        batch.drop_column("deadline_at")
