"""Python task functions used by the engine/agent integration tests.

Each returns JSON so the test can read what happened from the store: start and end times on
this process's monotonic clock (python tasks run in the agent's process), so intervals of
different tasks compare directly.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any


def _sleep(ctx: Any) -> None:
    seconds = ctx.params.get(f"sleep_{ctx.task}", ctx.params.get("sleep", 0))
    if isinstance(ctx.item, dict) and "sleep" in ctx.item:
        seconds = ctx.item["sleep"]
    if seconds:
        time.sleep(float(seconds))


def record(ctx: Any) -> dict[str, Any]:
    start = time.monotonic()
    _sleep(ctx)
    return {"task": ctx.task, "start": start, "end": time.monotonic(), "attempt": ctx.attempt}


def fail(ctx: Any) -> None:
    _sleep(ctx)
    raise RuntimeError(f"{ctx.task} fails on purpose")


def fail_when_file(ctx: Any) -> None:
    """Fails once the file named by params.wait_for exists (another task is then running)."""
    deadline = time.monotonic() + 20
    while not os.path.exists(ctx.params["wait_for"]) and time.monotonic() < deadline:
        time.sleep(0.005)
    raise RuntimeError(f"{ctx.task} fails on purpose")


def flaky(ctx: Any) -> dict[str, Any]:
    """Fails until the file named by params.marker exists."""
    if not os.path.exists(ctx.params["marker"]):
        raise RuntimeError("marker missing")
    return {"attempt": ctx.attempt}


def produce(ctx: Any) -> dict[str, Any]:
    return {"x": 41, "rows": [1, 2, 3]}


def consume(ctx: Any) -> dict[str, Any]:
    up = ctx.results["produce"]
    return {"x": up["x"] + 1, "n": len(up["rows"]), "seen": sorted(ctx.results)}


def chatter(ctx: Any) -> None:
    size = int(ctx.params["bytes"])
    block = "x" * 65536
    left = size
    while left > 0:
        sys.stdout.write(block[: min(left, len(block))])
        left -= len(block)
    sys.stdout.write("END-OF-OUTPUT\n")


def fail_with_nul(ctx: Any) -> None:
    print("out\x00put")
    raise ValueError("bad\x00thing")
