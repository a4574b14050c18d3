"""A trigger firing keeps its whole set of upstream runs: trigger_firings.upstream_runs.

Past 500 characters the key of the set is a hash, and the next check of the trigger had no
set to compare with, so after its first firing each run of any one upstream fired it again.
NULL (firings made before, and keys short enough) means the key is the set.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trigger_firings") as batch:
        batch.add_column(sa.Column("upstream_runs", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trigger_firings") as batch:
        batch.drop_column("upstream_runs")
