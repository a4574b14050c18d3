"""Routing on both backends and both claim paths: labels, pinned runs, the claim's share
offered to other runs, and why a task run waits (engine.waiting)."""

from __future__ import annotations

import time

import pytest
from engine_helpers import apply_job, run_agent

from taskplan.engine import Engine, waiting
from taskplan.engine.records import Claim, Outcome
from taskplan.model import TaskState
from taskplan.store.db import Store

ROUTED = """
    job: routed
    tasks:
      plain1: {shell: "true"}
      plain2: {shell: "true"}
      etl1: {shell: "true", agent_labels: [etl]}
      etl2: {shell: "true", agent_labels: etl}
      both: {shell: "true", agent_labels: [etl, gpu]}
      after: {shell: "true", depends_on: [etl1]}
    """


def agent(engine: Engine, name: str, *labels: str) -> int:
    return engine.register_agent(name, "h", 1, 8, 60.0, (*labels, "host=h"))


def claimed(engine: Engine, agent_id: int, free: int = 8) -> list[Claim]:
    return engine.step(agent_id, [], free).claims


def succeed(engine: Engine, agent_id: int, claims: list[Claim], free: int = 0) -> list[Claim]:
    """Finish claims as successes (the server step's path on PostgreSQL)."""
    return engine.step(agent_id, [(c, Outcome(TaskState.SUCCEEDED)) for c in claims],
                       free).claims


def test_an_agent_claims_only_task_runs_whose_labels_it_has(engine: Engine) -> None:
    run_id = engine.create_run(apply_job(engine, ROUTED))
    plain = agent(engine, "plain")
    etl = agent(engine, "etl", "etl")
    gpu = agent(engine, "both", "etl", "gpu")
    assert sorted(c.task for c in claimed(engine, plain)) == ["plain1", "plain2"]
    got = {c.task: c for c in claimed(engine, etl)}
    assert sorted(got) == ["etl1", "etl2"]
    # The dependant made ready by a success is claimed in the same step (the server step's
    # path on PostgreSQL), by an agent with no labels since it needs none.
    assert [c.task for c in succeed(engine, etl, [got["etl1"]])] == []
    assert [c.task for c in claimed(engine, plain)] == ["after"]
    assert [c.task for c in claimed(engine, gpu)] == ["both"]
    assert waiting.explain(engine.store, run_id) == {}  # all running or done


def test_a_run_the_agent_cannot_serve_gives_its_share_to_the_others(engine: Engine) -> None:
    gpu_run = engine.create_run(apply_job(engine, """
        job: gpu_only
        priority: 5
        tasks:
          """ + "\n          ".join(f"g{i}: {{shell: 'true', agent_labels: [gpu]}}"
                                    for i in range(4))))
    plain_run = engine.create_run(apply_job(engine, """
        job: plain_only
        tasks:
          """ + "\n          ".join(f"p{i}: {{shell: 'true'}}" for i in range(6))))
    plain = agent(engine, "plain")
    got = claimed(engine, plain, free=4)
    assert [c.run_id for c in got] == [plain_run] * 4  # not 0: every free slot got work
    why = waiting.explain(engine.store, gpu_run)
    assert set(why.values()) == {"waiting for an agent with labels gpu"}


def test_a_pinned_run_is_its_agents_until_that_agent_is_gone(engine: Engine) -> None:
    owner = agent(engine, "owner")
    other = agent(engine, "other")
    run_id = engine.create_run(apply_job(engine, ROUTED), pin_agent_id=owner)
    assert claimed(engine, other) == []
    assert set(waiting.explain(engine.store, run_id).values()) >= {
        "waiting for a free slot of owner (the run's foreground process)"}
    engine.agent_stopped(owner)  # or declared lost by a reaper: the pin no longer holds
    assert sorted(c.task for c in claimed(engine, other)) == ["plain1", "plain2"]


def test_a_lost_owner_releases_its_pinned_run(engine: Engine, store: Store) -> None:
    owner = engine.register_agent("owner", "h", 1, 2, 0.01, ("host=h",))
    other = agent(engine, "other")
    run_id = engine.create_run(apply_job(engine, """
        job: pinned
        tasks:
          a: {shell: "true", retries: 1}
        """), pin_agent_id=owner)
    assert [c.task for c in claimed(engine, owner)] == ["a"]
    time.sleep(0.05)
    assert engine.reap() == 1  # its lease expired: lost, its attempt given back
    assert [c.task for c in claimed(engine, other)] == ["a"]
    assert engine.run_state(run_id) == "running"


def test_why_each_task_run_waits(engine: Engine, store: Store) -> None:
    now = time.time()
    run_id = engine.create_run(apply_job(engine, """
        job: waits
        max_parallel: 3
        pools: {mart: 1}
        tasks:
          up1: {shell: "true"}
          up2: {shell: "true"}
          down: {shell: "true", depends_on: [up1, up2]}
          s1: {shell: "true", stage: 1}
          s2: {shell: "true", stage: 2}
          m1: {shell: "true", pool: mart}
          m2: {shell: "true", pool: mart}
          gpu: {shell: "true", agent_labels: [gpu]}
        """))
    with store.read() as tx:
        ids = {str(t): int(i) for i, t in tx.all(
            "SELECT id, task FROM task_runs WHERE run_id = :r", {"r": run_id})}

    def why(task: str) -> str:
        return waiting.explain(store, run_id, now)[ids[task]]

    def write(sql: str, **params: object) -> None:
        with store.tx() as tx:
            tx.run(sql, {"r": run_id, **params})

    assert why("down") == "waiting for upstreams: up1, up2"
    assert why("s2") == "stage 1 not finished"
    assert why("up1") == why("gpu") == "no agent alive"
    agent(engine, "me", "etl")
    assert why("gpu") == "waiting for an agent with labels gpu"
    assert why("up1") == "waiting for a free slot (every capable agent is busy)"
    write("UPDATE task_runs SET state = 'running' WHERE id = :i", i=ids["m1"])
    write("UPDATE runs SET running = 1 WHERE id = :r")
    assert why("m2") == "pool mart full (1/1)"
    write("UPDATE runs SET running = 3 WHERE id = :r")
    assert why("up1") == why("m2") == "max_parallel 3 reached"
    write("UPDATE task_runs SET state = 'retrying', ready_at = :t WHERE id = :i",
          t=now + 60, i=ids["up2"])
    assert why("up2") == f"retry at {waiting.clock(now + 60, now)}"
    assert waiting.clock(now + 60, now).count(":") == 2
    assert ids["m1"] not in waiting.explain(store, run_id, now)  # running: not waiting


def test_a_task_waiting_for_a_pool_its_own_job_task_holds_says_so(engine: Engine,
                                                                   store: Store) -> None:
    """A job task in a pool holds its room until its child run ends; a task of that child in
    the same pool waited with a bare 'pool one full (1/1)', forever."""
    apply_job(engine, """
        job: pooled_child
        tasks:
          c: {shell: "true", pool: one}
        """)
    run_id = engine.create_run(apply_job(engine, """
        job: pooled_parent
        pools: {one: 1}
        tasks:
          sub: {job: pooled_child, pool: one}
        """))

    def child_run() -> int | None:
        with store.read() as tx:
            found = tx.scalar("SELECT child_run_id FROM task_runs WHERE run_id = :r",
                              {"r": run_id})
        return None if found is None else int(found)

    run_agent(engine, run_id, slots=2, until=lambda _: child_run() is not None)
    child = child_run()
    assert child is not None
    assert list(waiting.explain(store, child).values()) == [
        f"pool one full (1/1), held by job task sub of run {run_id}, which waits for this"
        " run: it never frees"]
    engine.cancel_run(run_id)


def test_detach_warnings_name_the_labels_no_live_agent_has(engine: Engine) -> None:
    version_id = apply_job(engine, ROUTED)
    spec = engine.job_spec(version_id)
    assert waiting.unserved(engine.store, spec) == ["no agent alive"]
    agent(engine, "etl", "etl")
    assert waiting.unserved(engine.store, spec) == [
        "no live agent has labels etl, gpu (needed by both)"]
    agent(engine, "both", "etl", "gpu")
    assert waiting.unserved(engine.store, spec) == []


@pytest.mark.parametrize("labelled", [False, True])
def test_foreach_items_and_child_runs_keep_routing(engine: Engine, labelled: bool) -> None:
    labels = "[etl]" if labelled else "[]"
    run_id = engine.create_run(apply_job(engine, f"""
        job: fan
        tasks:
          each: {{shell: "true", foreach: {{values: [1, 2, 3]}}, agent_labels: {labels}}}
        """))
    plain = agent(engine, "plain")
    etl = agent(engine, "etl", "etl")
    worker = etl if labelled else plain
    assert claimed(engine, plain if labelled else etl, free=0) == []
    parent = claimed(engine, worker)
    assert [c.kind for c in parent] == ["foreach"]
    assert engine.expand_foreach(parent[0], [[1, 2, 3]]) == 3
    if labelled:
        assert claimed(engine, plain) == []
    assert sorted(c.item for c in claimed(engine, worker)) == [1, 2, 3]
    assert engine.run_state(run_id) == "running"


def test_status_reads_why_a_task_waits_with_the_task_runs_it_shows(
        engine: Engine, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`status RUN --json` read the task runs, then the forecast, then the waiting reasons: a
    task claimed meanwhile (here: while the forecast is worked out) showed as `ready` with no
    `waiting`, and a reason could name a state the rows did not show."""
    import json

    from click.testing import CliRunner

    from taskplan.cli.main import cli
    from taskplan.engine import forecasts

    run_id = engine.create_run(apply_job(engine, """
        job: two
        tasks:
          a: {shell: "true"}
          b: {shell: "true"}
        """))
    busy = agent(engine, "busy")
    real = forecasts.forecast_for_run

    def claim_meanwhile(*args: object, **kw: object) -> object:
        claimed(engine, busy, free=1)  # another process claims one of them now
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(forecasts, "forecast_for_run", claim_meanwhile)
    out = CliRunner().invoke(cli, ["status", str(run_id), "--json", "--db", store_url])
    assert out.exit_code == 0, out.output
    tasks = json.loads(out.output)["tasks"]
    assert [t["state"] for t in tasks] == ["ready", "ready"]
    assert [t.get("waiting") for t in tasks] == [
        "waiting for a free slot (every capable agent is busy)"] * 2


def test_status_counts_come_by_state_name_on_every_backend(engine: Engine,
                                                           store_url: str) -> None:
    """`status --json` (no run) listed PostgreSQL's states in its hash order (running, failed,
    succeeded) and SQLite's by name; both list them by name, as the text form does."""
    import json

    from click.testing import CliRunner
    from engine_helpers import run_agent, start_run

    from taskplan.cli.main import cli

    for job, command in (("ok", "true"), ("bad", "exit 1"), ("ok2", "true"), ("bad2", "exit 1")):
        run_agent(engine, start_run(engine, f"job: {job}\ntasks: {{a: {{shell: '{command}'}}}}"))
    start_run(engine, "job: waits\ntasks: {a: {shell: 'true'}, b: {shell: 'true'}}")
    out = CliRunner().invoke(cli, ["status", "--json", "--db", store_url])
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)
    assert list(got["runs"].items()) == [("failed", 2), ("running", 1), ("succeeded", 2)]
    assert list(got["active_task_runs"]) == ["ready"]
