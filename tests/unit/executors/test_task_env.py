"""The TASKPLAN_* environment, without processes."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from taskplan.executors import AttemptContext
from taskplan.executors.env import env_name, env_text, process_env, taskplan_vars


def context(**overrides: object) -> AttemptContext:
    fields: dict[str, object] = {
        "run_id": 1, "task": "t", "attempt": 1, "params": {}, "item": None, "results": {}
    }
    fields.update(overrides)
    return AttemptContext(**fields)  # type: ignore[arg-type]


def test_names() -> None:
    assert env_name("day") == "DAY"
    assert env_name("max-rows.v2") == "MAX_ROWS_V2"
    assert env_name("café") == "CAF_"


def test_values() -> None:
    assert env_text("x y") == "x y"
    assert env_text(None) == ""
    assert env_text(False) == "false"
    assert env_text(7) == "7"
    assert env_text(1.5) == "1.5"
    assert env_text(Decimal("2.50")) == "2.50"
    assert env_text(date(2026, 11, 20)) == "2026-11-20"
    assert env_text({"a": [1, None]}) == '{"a":[1,null]}'
    assert env_text(["é"]) == '["é"]'


def test_sql_row_item_with_dates_and_decimals() -> None:
    row = {"when": datetime(2026, 1, 2, 3, 4), "amount": Decimal("9.90"), "raw": b"\x01"}
    env = taskplan_vars(context(item=row))
    assert env["TASKPLAN_ITEM"] == '{"when":"2026-01-02T03:04:00","amount":"9.90","raw":"01"}'
    assert env["TASKPLAN_ITEM_WHEN"] == "2026-01-02T03:04:00"
    assert env["TASKPLAN_ITEM_AMOUNT"] == "9.90"


def test_scalar_item_has_no_columns() -> None:
    env = taskplan_vars(context(item="orders"))
    assert env["TASKPLAN_ITEM"] == '"orders"'
    assert not [k for k in env if k.startswith("TASKPLAN_ITEM_")]


def test_precedence_and_stale_attempt_variables() -> None:
    inherited = {
        "PATH": "/bin",
        "A": "os",
        "TASKPLAN_DB": "sqlite://",
        "TASKPLAN_PARAM_OLD": "stale",
        "TASKPLAN_ITEM": "stale",
    }
    env = process_env(
        context(params={"new": 1}),
        task_env={"A": "spec", "B": "spec", "TASKPLAN_RUN_ID": "spoof"},
        extra_env={"B": "extra"},
        base=inherited,
    )
    assert env == {
        "PATH": "/bin",
        "A": "spec",
        "B": "extra",
        "TASKPLAN_DB": "sqlite://",
        "TASKPLAN_RUN_ID": "1",
        "TASKPLAN_TASK": "t",
        "TASKPLAN_ATTEMPT": "1",
        "TASKPLAN_PARAM_NEW": "1",
    }
