"""The TASKPLAN_* environment (docs/job-file.md), for tasks that run as processes."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from taskplan.executors.base import AttemptContext

# Per-attempt variables. Inherited copies are dropped so that a taskplan started from inside a
# task (or an agent launched from a shell that ran one) never leaks its item or params into an
# attempt that has none of its own. Settings such as TASKPLAN_DB are kept.
_PER_ATTEMPT_PREFIXES = ("TASKPLAN_PARAM_", "TASKPLAN_ITEM")
_NOT_NAME = re.compile(r"[^A-Z0-9_]")


def env_name(name: str) -> str:
    """`day-of.week` -> `DAY_OF_WEEK`: upper-case, then anything a shell cannot name becomes _."""
    return _NOT_NAME.sub("_", name.upper())


def _json_default(value: Any) -> Any:
    # SQL rows bring these; anything else falls back to its text so that one odd column
    # cannot make a whole attempt fail to start.
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"))


def env_text(value: Any) -> str:
    """Scalars as a shell user would write them; containers as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return to_json(value)


def taskplan_vars(context: AttemptContext) -> dict[str, str]:
    env = {
        "TASKPLAN_RUN_ID": str(context.run_id),
        "TASKPLAN_TASK": context.task,
        "TASKPLAN_ATTEMPT": str(context.attempt),
    }
    if context.fire_time is not None:
        env["TASKPLAN_FIRE_TIME"] = context.fire_time
    for name, value in context.params.items():
        env["TASKPLAN_PARAM_" + env_name(name)] = env_text(value)
    item = context.item
    if item is not None:
        env["TASKPLAN_ITEM"] = to_json(item)
        if isinstance(item, Mapping):
            for col, value in item.items():
                env["TASKPLAN_ITEM_" + env_name(str(col))] = env_text(value)
    return env


def process_env(
    context: AttemptContext,
    task_env: Mapping[str, str],
    extra_env: Mapping[str, str],
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """os.environ, then the task's `env:`, then the caller's extras, then TASKPLAN_* (which win:
    they describe this attempt and must not be spoofed by a stale setting)."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not k.startswith(_PER_ATTEMPT_PREFIXES)}
    env.update(task_env)
    env.update(extra_env)
    env.update(taskplan_vars(context))
    return env


# Linux's MAX_ARG_STRLEN: the most one argument or one NAME=value string may hold, with its NUL.
MAX_ARG_STRLEN = 32 * 4096


def drop_oversized(env: dict[str, str]) -> list[str]:
    """Remove the per-attempt variables (TASKPLAN_ITEM, TASKPLAN_ITEM_<COL>,
    TASKPLAN_PARAM_<NAME>) that exec cannot pass on, too big or holding a NUL byte: one would
    fail every start of the attempt's program, whether or not it reads the variable. Returns a
    log line for each."""
    said = []
    for name in [n for n in env if n.startswith(_PER_ATTEMPT_PREFIXES)]:
        value = env[name]
        size = len(name) + 1 + len(os.fsencode(value))
        if size >= MAX_ARG_STRLEN:
            why = f"{size:,} bytes, over the 128 KiB one variable may hold"
        elif "\0" in value:
            why = "it holds a NUL byte, which no environment variable can"
        else:
            continue
        del env[name]
        said.append(f"taskplan: {name} left out of the environment: {why} (templates still"
                    " read it: {{ item.col }}, {{ params.name }})\n")
    return said
