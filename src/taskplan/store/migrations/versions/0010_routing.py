"""Routing: agent labels, label sets required by task runs, runs pinned to a foreground agent;
and the PostgreSQL claim function replaced by store/sql/step_v2.sql (claims honour both).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from taskplan.store.pgserver import server_sql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "label_sets",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("labels", sa.String(length=2000), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_sets")),
        sa.UniqueConstraint("labels", name=op.f("uq_label_sets_labels")),
    )
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("labels", sa.Text(), nullable=False,
                                   server_default=sa.text("''")))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("pin_agent_id", ID, nullable=True))
        batch.add_column(sa.Column("max_label_set", ID, nullable=False, server_default="0"))
    with op.batch_alter_table("task_runs") as batch:
        batch.add_column(sa.Column("label_set", ID, nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(server_sql("step_v2.sql"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(server_sql("step_v1.sql"))
    with op.batch_alter_table("task_runs") as batch:
        batch.drop_column("label_set")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("max_label_set")
        batch.drop_column("pin_agent_id")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("labels")
    op.drop_table("label_sets")
