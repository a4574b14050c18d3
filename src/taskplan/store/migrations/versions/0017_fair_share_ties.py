"""PostgreSQL: the server step's fair shares give a tie (equal priority, equal load) to the run
with the fewest ready task runs left rather than the lowest id (store/sql/step_v5.sql), so a
small run is not starved by an older big one on a one-slot agent.

Revision ID: 0017
Revises: 0016
"""

from alembic import op

from taskplan.store.pgserver import server_sql

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(server_sql("step_v5.sql"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(server_sql("step_v4.sql"))
