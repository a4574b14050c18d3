"""The owning process of an agent (agents.process: boot id, pid namespace, start time), so an
agent on the same machine can tell at once that another one's process is gone.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column: ADD COLUMN in place, no table rewrite on any backend.
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("process", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("process")
