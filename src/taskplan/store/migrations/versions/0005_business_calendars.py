"""Named business calendars and their versions: calendars, calendar_versions.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "calendars",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("current_version_id", ID, nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_calendars"),
        sa.UniqueConstraint("name", name="uq_calendars_name"),
    )
    op.create_table(
        "calendar_versions",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("calendar_id", ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_calendar_versions"),
        sa.ForeignKeyConstraint(["calendar_id"], ["calendars.id"],
                                name="fk_calendar_versions_calendar_id_calendars"),
        sa.UniqueConstraint("calendar_id", "version",
                            name="uq_calendar_versions_calendar_id_version"),
    )


def downgrade() -> None:
    op.drop_table("calendar_versions")
    op.drop_table("calendars")
