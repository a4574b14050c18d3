"""A hostile value read from each database arrives literally in a SQL bind, an argv element and
environment variables (TASKPLAN_ITEM_<COL> and a templated `env:` value)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from engine_helpers import run_job, tasks
from sql_targets import Target

from taskplan.engine import Engine
from taskplan.store.db import Store

HOSTILE = "x'; DROP TABLE t; --"
DUMP = ("import json, os, sys; open(sys.argv[1], 'w').write(json.dumps({'argv': sys.argv[2],"
        " 'item_env': os.environ['TASKPLAN_ITEM_V'], 'env': os.environ['V'],"
        " 'param_env': os.environ['TASKPLAN_PARAM_P']}))")


def test_hostile_value_everywhere(engine: Engine, store: Store, target: Target,
                                  tmp_path: Path) -> None:
    src, dst = target.name("src"), target.name("dst")
    target.run(f"CREATE TABLE {src} (v VARCHAR(100))")
    target.run(f"CREATE TABLE {dst} (v VARCHAR(100), p VARCHAR(100))")
    target.run(f"INSERT INTO {src} VALUES (:v)", {"v": HOSTILE})
    out = tmp_path / "seen.json"
    run_id, _ = run_job(engine, json.dumps({
        "job": "hostile",
        "params": {"p": HOSTILE, "out": str(out)},
        "connections": {"db": "${TP_TARGET_URL}"},
        "defaults": {"connection": "db"},
        "tasks": {
            "to_sql": {"foreach": {"sql": f"SELECT v FROM {src}"},
                       "sql": f"INSERT INTO {dst} (v, p) VALUES (:item_v, :p)"},
            "to_shell": {"foreach": {"sql": f"SELECT v FROM {src}"},
                         "shell": [sys.executable, "-c", DUMP, "{{ params.out }}",
                                   "{{ item.v }}"],
                         "env": {"V": "{{ item.v }}"}},
        },
    }))
    top = tasks(store, run_id)
    assert top["to_sql"]["state"] == "succeeded"
    assert top["to_shell"]["state"] == "succeeded"
    assert target.run(f"SELECT v, p FROM {dst}") == [(HOSTILE, HOSTILE)]
    assert json.loads(out.read_text()) == {"argv": HOSTILE, "item_env": HOSTILE,
                                           "env": HOSTILE, "param_env": HOSTILE}
    # The table the value names is untouched wherever it exists.
    assert target.run(f"SELECT COUNT(*) FROM {src}") == [(1,)]


def test_env_and_cwd_are_templates(engine: Engine, store: Store, tmp_path: Path) -> None:
    work = tmp_path / "day 2026-01-02"
    work.mkdir()
    run_id, _ = run_job(engine, json.dumps({
        "job": "templated",
        "params": {"dir": str(work), "day": "2026-01-02"},
        "tasks": {"t": {"shell": "pwd > out.txt; echo \"$DAY\" >> out.txt",
                        "cwd": "{{ params.dir }}", "env": {"DAY": "d={{ params.day }}"}}},
    }))
    assert tasks(store, run_id)["t"]["state"] == "succeeded"
    assert (work / "out.txt").read_text().splitlines() == [str(work), "d=2026-01-02"]
