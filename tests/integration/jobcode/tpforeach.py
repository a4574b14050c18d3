"""Python task functions for the foreach and sub-job integration tests."""

from __future__ import annotations

import time
from typing import Any


def item(ctx: Any) -> dict[str, Any]:
    """Echo the item, with times on this process's monotonic clock."""
    start = time.monotonic()
    if isinstance(ctx.item, dict) and "sleep" in ctx.item:
        time.sleep(float(ctx.item["sleep"]))
    return {"item": ctx.item, "attempt": ctx.attempt, "start": start, "end": time.monotonic()}


def fail_on_bad(ctx: Any) -> Any:
    if ctx.item == "bad":
        raise RuntimeError(f"item {ctx.item} fails on purpose")
    return ctx.item


def list_files(ctx: Any) -> list[dict[str, Any]]:
    return [{"path": f"/data/f{i}.csv", "n": i} for i in range(int(ctx.params.get("n", 3)))]


def nothing(ctx: Any) -> list[Any]:
    return []


def noop(ctx: Any) -> None:
    return None


def keys_in_order(ctx: Any) -> dict[str, Any]:
    """The keys of the item and of each upstream result (of its first row, for a sql one), in
    the order the task sees them."""
    def keys(value: Any) -> list[str]:
        if isinstance(value, dict) and "rows" in value:
            value = value["rows"][0]
        return list(value) if isinstance(value, dict) else []
    return {"item": keys(ctx.item), "results": {name: keys(ctx.results[name])
                                                for name in ctx.results}}


def unsorted(ctx: Any) -> dict[str, Any]:
    return {"zeta": 1, "alpha": {"z": 1, "a": 2}}


def gate(ctx: Any) -> dict[str, Any]:
    """Fails until the file named by params.marker exists; slow enough (params.sleep) that
    a task that does not wait for it starts while it runs."""
    import os

    time.sleep(float(ctx.params.get("sleep", 0)))
    if not os.path.exists(ctx.params["marker"]):
        raise RuntimeError("marker missing")
    return {"attempt": ctx.attempt}


def needs_gate(ctx: Any) -> Any:
    """An item that fails unless the task `gate` it waits for has succeeded."""
    if "gate" not in ctx.results:
        raise RuntimeError("gate has not succeeded")
    return {"item": ctx.item, "gate": ctx.results["gate"]}
