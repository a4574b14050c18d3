"""Where a claim happens: one agent step records the attempts that ended and claims up to its
free slots, shared fairly across runs, within max_parallel, pools and the agent's labels.

On PostgreSQL a step whose finishes are all plain successes is one call of the server step
(store/claims.py, store/sql/step_v*.sql), which applies these same rules in SQL; the
equivalence is checked by tests/integration/test_step_equivalence.py.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from itertools import groupby

from taskplan.engine import transitions
from taskplan.engine.context import Context
from taskplan.engine.records import Claim, Outcome, StepResult
from taskplan.engine.rules import RunShare, fair_shares, pool_has_room
from taskplan.model import Halt, TaskState
from taskplan.store import claims as claim_ops
from taskplan.store import ops
from taskplan.store.db import Tx
from taskplan.store.ops import ClaimableRun, dumps_value

# Pool sizes (declared pools only) and how many of each pool's tasks run, this claim's included.
_PoolUse = tuple[dict[str, int], dict[str, int]]


def step(ctx: Context, agent_id: int, finished: Sequence[tuple[Claim, Outcome]], free: int,
         root_run_id: int | None = None) -> StepResult:
    """One transaction: record finished attempts, then claim up to `free` task runs."""
    # Asked once per step so that a store without a server step (SQLite) never pays for
    # preparing one.
    if ctx.store.dialect.server_step and not ctx.one_by_one:
        fast = _step_on_server(ctx, agent_id, finished, free, root_run_id)
        if fast is not None:
            return fast
    result = StepResult()
    with ctx.store.tx() as tx:
        now = ctx.clock()
        # Lock order on PostgreSQL: run rows first, by id, then their task runs (see
        # ops.lock_runs). Finishing in run order keeps two agents from deadlocking.
        finished = sorted(finished, key=lambda f: (f[0].run_id, f[0].task_run_id))
        if len({c.run_id for c, _ in finished}) > 1:  # one run: its first read locks it
            ops.lock_runs(tx, [c.run_id for c, _ in finished])
        for _run_id, group in groupby(finished, key=lambda f: f[0].run_id):
            transitions.finish_run(ctx, tx, list(group), now, result)
        if free > 0:
            result.claims = _claim(ctx, tx, agent_id, free, root_run_id, now, result)
        if finished:
            tx.wake = True
    return result


def _step_on_server(ctx: Context, agent_id: int, finished: Sequence[tuple[Claim, Outcome]],
                    free: int, root_run_id: int | None) -> StepResult | None:
    """Only for steps whose finishes are all plain successes; the server function hands back
    whatever needs a policy, a halt or a run's end. None means: take the general path."""
    plain = [(c, o) for c, o in finished if not o.expanded]
    if any(o.state != TaskState.SUCCEEDED or o.retry_now for _, o in plain):
        return None
    if len({c.task_run_id for c, _ in plain}) != len(plain):
        return None
    now = ctx.clock()
    done = [claim_ops.Success(c.task_run_id, c.run_id, c.attempt, o.ended(now), o.exit_code,
                              None if o.result is None else dumps_value(o.result), o.error)
            for c, o in plain]
    step = claim_ops.call_server_step(ctx.store, agent_id, now, free, root_run_id, done)
    if step is None:
        return None
    return StepResult(claims=step.claims, stale=step.stale)


def _claim(ctx: Context, tx: Tx, agent_id: int, free: int, root_run_id: int | None,
           now: float, result: StepResult) -> list[Claim]:
    """Claim up to `free` ready task runs, in rounds of fair shares across runs.

    A run whose ready task runs need labels this agent lacks (or whose pool is full) gives
    fewer than its share; the next round offers the rest to the other runs. So does a run
    another transaction holds (PostgreSQL: ops.lock_for_claim does not wait for it); then
    `result.contended` tells the agent to look again soon.
    """
    runs = ops.claimable_runs(tx, root_run_id, agent_id)
    if not runs:
        return []
    meta = {r.id: r for r in runs}
    mine = label_sets_of(ctx, tx, agent_id, max(r.max_label_set for r in runs))
    taken: dict[int, int] = {}
    dry: set[int] = set()  # runs that gave fewer than asked: nothing more for us there

    def shares_of(left: int, among: Collection[int] | None = None) -> dict[int, int]:
        return fair_shares([
            RunShare(i, r.priority, r.running + taken.get(i, 0), r.ready - taken.get(i, 0),
                     r.max_parallel)
            for i, r in meta.items() if i not in dry and (among is None or i in among)
        ], left)

    claims: list[Claim] = []
    pools: _PoolUse | None = None
    left = free
    while left > 0:
        shares = shares_of(left)
        relocked = ops.lock_for_claim(tx, shares, root_run_id, agent_id)
        if relocked is not None:  # the runs are locked: share by their counters as re-read
            for run_id, row in relocked.items():
                if row is None:
                    dry.add(run_id)
                    # Held by another transaction, which may leave work in it: its commit
                    # wakes the agents only if it was on the general path.
                    result.contended = result.contended or run_id not in tx.locked_runs
                else:
                    meta[run_id] = row
            shares = shares_of(left, tx.locked_runs)
        if not shares:
            break
        for run_id, n in sorted(shares.items()):
            got, pools = _claim_run(tx, meta[run_id], n, agent_id, now, mine, pools)
            claims.extend(got)
            taken[run_id] = taken.get(run_id, 0) + len(got)
            left -= len(got)
            if len(got) < n:
                dry.add(run_id)
    if claims:
        ops.insert_attempts(tx, [(c.task_run_id, c.run_id, c.attempt, agent_id, now)
                                 for c in claims])
        ops.add_events(tx, [(now, c.run_id, c.task_run_id, "running", None) for c in claims])
    return claims


def _claim_run(tx: Tx, run: ClaimableRun, n: int, agent_id: int, now: float,
               mine: frozenset[int], pools: _PoolUse | None
               ) -> tuple[list[Claim], _PoolUse | None]:
    """Claim up to n ready task runs of one run; also the pools' sizes and use, once a
    pooled candidate made the claim count them (and counting what it took).

    Fewer than n means the run has no more for this agent: a candidate passed over because
    its pool is full sends the query further down the run, without that pool's task runs.
    """
    max_stage = (run.halt_stage if run.halt == Halt.FINISH_STAGE and run.halt_stage is not None
                 else None)
    labels = mine if run.max_label_set else None
    claims: list[Claim] = []
    while True:
        limit = n - len(claims)
        cands = ops.claim_candidates(tx, run.id, limit, max_stage, labels, _full(pools))
        ids: list[int] = []  # best first, as the server step takes them
        passed = False
        for tr_id, pool in cands:
            if pool is not None:
                if pools is None:
                    sizes = ops.pool_sizes(tx)
                    pools = (sizes, dict(ops.pool_usage(tx, sizes)))
                sizes, used = pools
                if not pool_has_room(pool, sizes, used):
                    passed = True
                    continue
                used[pool] = used.get(pool, 0) + 1
            ids.append(tr_id)
        if ids:
            # Marked running before reading on, so that the next read does not see them.
            claims += claim_ops.claim_ready(tx, ids, agent_id, now, run.version_id)
        # Read on only past a pool this read found full, and only if the run may hold more
        # (the read was not short). A pool only fills up within a claim, so each read on
        # leaves out at least one more full pool.
        if not passed or len(claims) >= n or len(cands) < limit:
            break
    if claims:
        ops.add_to_counters(tx, run.id, running=len(claims), ready=-len(claims))
    return claims, pools


def _full(pools: _PoolUse | None) -> tuple[str, ...]:
    """The declared pools with no room left, by the use this claim counted."""
    if pools is None:
        return ()
    sizes, used = pools
    return tuple(name for name, size in sizes.items() if used.get(name, 0) >= size)


def label_sets_of(ctx: Context, tx: Tx, agent_id: int, upto: int) -> frozenset[int]:
    """The label sets (ids) this agent has every label of, among those up to `upto`.

    Sets get ids in commit order (ops.label_set_id), so a run whose task runs need sets up to
    `upto` is fully known once every set up to it has been read.
    """
    if upto == 0:
        return frozenset()
    cache = ctx.labels
    labels = cache.agents.get(agent_id)
    if labels is None:
        labels = frozenset(x for x in ops.agent_labels(tx, agent_id).split(",") if x)
        cache.agents[agent_id] = labels
    if upto > cache.upto:
        for set_id, text in ops.label_sets_after(tx, cache.upto):
            cache.sets[set_id] = frozenset(text.split(","))
            cache.upto = max(cache.upto, set_id)
    return frozenset(i for i, need in cache.sets.items() if need <= labels)
