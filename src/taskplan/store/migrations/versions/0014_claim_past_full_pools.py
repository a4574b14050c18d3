"""PostgreSQL: the server step's claim reads past task runs whose pool is full
(store/sql/step_v4.sql), so ready task runs further down a run's queue get the free slots.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

from taskplan.store.pgserver import server_sql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(server_sql("step_v4.sql"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(server_sql("step_v2.sql"))
