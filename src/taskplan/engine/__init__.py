"""What happens on each transition: readying dependants, trigger rules, on_failure policies,
run completion, claims shared fairly across runs, stop/cancel/retry, and lease recovery.

Every public method is one short transaction on the store. Dispatch is incremental: finishing a
task run decrements a counter on each dependant and readies those that reach zero, so the cost
of a transition is O(its edges) whatever the size of the run.

The engine is a stack of small layers, each a class extending the one below:
definitions -> dispatch -> subruns -> commands -> recovery (which defines `Engine`).
"""

from taskplan.engine.records import Claim, Outcome, StepResult
from taskplan.engine.recovery import Engine
from taskplan.engine.rules import (
    RunShare,
    fair_shares,
    plan_upstreams,
    resolve_trigger,
    retry_delay,
)

__all__ = [
    "Claim",
    "Engine",
    "Outcome",
    "RunShare",
    "StepResult",
    "fair_shares",
    "plan_upstreams",
    "resolve_trigger",
    "retry_delay",
]
