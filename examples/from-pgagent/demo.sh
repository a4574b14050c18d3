#!/usr/bin/env bash
# Create pgAgent jobs through pgAgent's own tables, import them with taskplan, run one.
#
#   examples/from-pgagent/demo.sh [POSTGRES_URL]     (default postgresql://postgres@127.0.0.1:5432)
#
# Needs psql, a PostgreSQL server with pgAgent's extension (Debian: apt-get install pgagent)
# and taskplan (the repository's .venv/bin/taskplan is used when present). Everything is made
# in a fresh database `taskplan_pgagent_demo` and a temporary folder, printed at the end.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
server="${1:-postgresql://postgres@127.0.0.1:5432}"
db=taskplan_pgagent_demo
taskplan="${TASKPLAN:-$here/../../.venv/bin/taskplan}"
[ -x "$taskplan" ] || taskplan=taskplan
work="$(mktemp -d)"
store="sqlite:///$work/taskplan.db"

psql -q "$server/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
psql -q "$server/$db" -c "ALTER DATABASE $db SET timezone = 'Europe/Paris'" \
     -c "CREATE EXTENSION pgagent"
psql -q "$server/$db" -v ON_ERROR_STOP=1 -f "$here/pgagent-jobs.sql"

echo "== taskplan import pgagent"
"$taskplan" import pgagent --from "$server/$db" --out "$work/jobs"
echo "== the imported nightly job"
cat "$work/jobs/nightly_sales_load.yaml"
echo "== taskplan validate"
"$taskplan" validate "$work/jobs"/*.yaml
echo "== next firings (Christmas: the 24th at 02:30 and the 25th are exceptions)"
"$taskplan" next "$work/jobs/nightly_sales_load.yaml" -n 4 --after 2026-12-23
echo "== apply, then run the nightly load now"
"$taskplan" --db "$store" apply "$work/jobs"
"$taskplan" --db "$store" run nightly_sales_load
"$taskplan" --db "$store" logs 1 2_notify
"$taskplan" --db "$store" jobs
psql -q "$server/$db" -c "SELECT count(*) AS summarised_days FROM sales_summary"
echo "job files and store in $work"
