"""Counting a pool's running task runs reads an index of only those: it had scanned every task
run the store ever kept, so a claim of a pooled task slowed with the store's history.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

RUNNING_POOLED = "state = 'running' AND pool IS NOT NULL"


def upgrade() -> None:
    op.create_index("ix_task_runs_pool", "task_runs", ["pool"],
                    sqlite_where=sa.text(RUNNING_POOLED),
                    postgresql_where=sa.text(RUNNING_POOLED))


def downgrade() -> None:
    op.drop_index("ix_task_runs_pool", table_name="task_runs")
