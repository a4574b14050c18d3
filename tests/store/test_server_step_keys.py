"""The keys of the successes the server step is sent are the record columns its SQL reads:
one is written in store/claims.py, the other in the step's SQL (taskplan_finish_successes of
store/sql/step_v3.sql, the newest file defining it), so a test ties them."""

from __future__ import annotations

import json
import re

from taskplan.store.claims import Success, success_payload
from taskplan.store.pgserver import server_sql


def test_success_keys_are_the_columns_the_server_step_reads() -> None:
    sql = server_sql("step_v3.sql")
    assert "FUNCTION taskplan_finish_successes(" in sql, "v3 defines it"
    record = re.search(r"jsonb_to_recordset\(p_done\)\s+AS d\(([^)]*)\)", sql)
    assert record is not None, "the step no longer reads p_done as a record set"
    columns = {part.split()[0] for part in record.group(1).split(",")}
    # The run id is read on its own (`e ->> 'r'`), to lock and check the runs first.
    columns |= set(re.findall(r"e ->> '(\w+)'", sql))
    sent = json.loads(success_payload([Success(1, 2, 3, 4.0, 0, None, None)]))[0]
    assert set(sent) == columns
    assert sent == {"i": 1, "r": 2, "a": 3, "t": 4.0, "x": 0, "res": None, "e": None}


def test_claim_fields_are_the_server_steps_claim_row() -> None:
    from dataclasses import fields
    from importlib import import_module

    from taskplan.store.claims import CLAIM_COLUMNS, Claim

    migration = import_module("taskplan.store.migrations.versions.0003_pg_step_function")
    row_type = re.search(r"taskplan_claim_row AS \(([^)]*)\)", migration.CLAIM_ROW)
    assert row_type is not None
    names = [part.split()[0] for part in row_type.group(1).split(",")]
    # The row type says `id` where a Claim says `task_run_id`; otherwise the same, in order.
    assert ["task_run_id" if n == "id" else n for n in names] == [f for f, _ in CLAIM_COLUMNS]
    assert [f.name for f in fields(Claim)] == [f for f, _ in CLAIM_COLUMNS]
