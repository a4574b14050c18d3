"""What happens on each transition: readying dependants, trigger rules, on_failure policies,
run completion, claims shared fairly across runs, stop/cancel/retry, and lease recovery.

`Engine` (engine/facade.py) is the one entry point; each of its methods is one short
transaction, carried out by a module of functions over the store (see facade.py for which
module owns what). Dispatch is incremental: finishing a task run decrements a counter on each
dependant and readies those that reach zero, so the cost of a transition is O(its edges)
whatever the size of the run.

The names below are imported on first use: importing a submodule (`taskplan.engine.waiting`,
for `status`) runs this file first, and must not load every module of the engine with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskplan.lazy import lazy_names

if TYPE_CHECKING:
    from taskplan.engine.facade import Engine
    from taskplan.engine.records import (
        AttemptEnd,
        Claim,
        Outcome,
        RunEnd,
        StepResult,
        TaskEnd,
        UnnamedEnds,
    )
    from taskplan.engine.rules import (
        RunShare,
        fair_shares,
        plan_upstreams,
        resolve_trigger,
        retry_delay,
    )

_HOMES = {
    "AttemptEnd": "taskplan.engine.records",
    "Claim": "taskplan.engine.records",
    "RunEnd": "taskplan.engine.records",
    "TaskEnd": "taskplan.engine.records",
    "UnnamedEnds": "taskplan.engine.records",
    "Outcome": "taskplan.engine.records",
    "StepResult": "taskplan.engine.records",
    "Engine": "taskplan.engine.facade",
    "RunShare": "taskplan.engine.rules",
    "fair_shares": "taskplan.engine.rules",
    "plan_upstreams": "taskplan.engine.rules",
    "resolve_trigger": "taskplan.engine.rules",
    "retry_delay": "taskplan.engine.rules",
}


__getattr__ = lazy_names(__name__, _HOMES)

__all__ = [
    "AttemptEnd",
    "Claim",
    "Engine",
    "Outcome",
    "RunEnd",
    "RunShare",
    "StepResult",
    "TaskEnd",
    "UnnamedEnds",
    "fair_shares",
    "plan_upstreams",
    "resolve_trigger",
    "retry_delay",
]
