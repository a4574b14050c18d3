"""PostgreSQL: the agent's common step as one server-side function, `taskplan_step`.

An agent step that only records successes and claims free slots is a dozen statements; on
PostgreSQL each is a round trip (about 0.2 ms here) and the step holds its run's row lock for
all of them. The function does the same writes in one call, in the same order of locks, so
the engine sends one statement per step in a transaction of its own.

It covers successes of runs that are not halted: fenced ends, attempts, events, foreach
parents and stage barriers that finish with them, dependants made ready, counters, then
claims by fair share, pools, max_parallel and finish_stage. Anything else (a failure, a
halted run, a run that ends, a dependant that would not simply become ready) rolls the
function's work back and answers `fallback`: the engine then takes the general path in
Python, which owns every policy. SQLite has no such function; its statements are in-process.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from taskplan.store.pgserver import server_sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The row type the claim functions return (unchanged since).
CLAIM_ROW = """
CREATE TYPE taskplan_claim_row AS (
    id bigint, run_id bigint, version_id bigint, task text, kind text, item text,
    attempt integer, max_attempts integer, stage integer, pool text, parent_id bigint
)
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(CLAIM_ROW)
    # The functions as this revision made them: store/sql/step_v1.sql, frozen (a later change
    # is a new file and a new migration, as 0010 and step_v2.sql).
    op.execute(server_sql("step_v1.sql"))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION IF EXISTS taskplan_step(bigint, double precision, integer, bigint,"
               " boolean, jsonb)")
    op.execute("DROP FUNCTION IF EXISTS taskplan_claim(bigint, double precision, integer,"
               " bigint, bigint[], integer[], integer[])")
    op.execute("DROP FUNCTION IF EXISTS taskplan_finish_successes(double precision, jsonb)")
    op.execute("DROP TYPE IF EXISTS taskplan_claim_row")
