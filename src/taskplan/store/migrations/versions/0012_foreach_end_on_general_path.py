"""PostgreSQL: the server step hands a foreach's end to the general path (store/sql/step_v3.sql),
so that every foreach's end is reported to the agent that recorded its last item.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

from taskplan.store.pgserver import server_sql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(server_sql("step_v3.sql"))


def downgrade() -> None:
    # step_v1.sql also holds the claim function of before 0010: put 0010's back after it.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(server_sql("step_v1.sql"))
        op.execute(server_sql("step_v2.sql"))
