"""Python tasks of the example: each receives the attempt context and returns a JSON result."""

import time
from typing import Any


def load_facts(ctx: Any) -> dict[str, Any]:
    print(f"loading facts for {ctx.params['day']} (attempt {ctx.attempt})")
    time.sleep(0.3)
    return {"rows": 125_000}


def load_dimensions(ctx: Any) -> dict[str, Any]:
    time.sleep(0.2)
    return {"rows": 3_400}


def check_totals(ctx: Any) -> dict[str, Any]:
    time.sleep(0.1)
    return {"ok": True}


def build_report(ctx: Any) -> str:
    checked = ctx.results["check_totals"]
    print(f"totals checked: {checked}")
    return f"report for {ctx.params['day']}: all loads done"
