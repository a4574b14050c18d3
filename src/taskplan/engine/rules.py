"""The engine's pure decisions live in `taskplan.rules`, outside the engine package, so that
the forecast simulator (a pure layer) applies exactly the same rules; re-exported here."""

from taskplan.rules import (
    RunShare,
    fair_shares,
    initial_states,
    plan_upstreams,
    pool_has_room,
    resolve_trigger,
    retry_delay,
)

__all__ = ["RunShare", "fair_shares", "initial_states", "plan_upstreams", "pool_has_room",
           "resolve_trigger",
           "retry_delay"]
