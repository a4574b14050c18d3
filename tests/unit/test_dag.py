import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskplan import dag
from taskplan.model import Foreach, TaskSpec


def task(name: str, *deps: str, stage: int | None = None, source: str | None = None) -> TaskSpec:
    foreach = Foreach(from_task=source) if source else None
    return TaskSpec(name=name, kind="shell", command="x", depends_on=deps, stage=stage,
                    foreach=foreach)


def test_upstreams_include_foreach_source() -> None:
    tasks = [task("a"), task("b", "a"), task("c", source="b"), task("d", "ghost")]
    assert dag.upstreams(tasks) == {"a": set(), "b": {"a"}, "c": {"b"}, "d": set()}


def test_no_cycle() -> None:
    assert dag.find_cycle([task("a"), task("b", "a"), task("c", "a", "b")]) is None


def test_cycle_path_starts_at_first_task_in_file() -> None:
    tasks = [task("x"), task("a", "c"), task("b", "a"), task("c", "b")]
    assert dag.find_cycle(tasks) == ["a", "c", "b", "a"]
    assert dag.describe_cycle(tasks, ["a", "c", "b", "a"]) == "a -> c -> b -> a"


def test_self_loop_is_a_cycle() -> None:
    assert dag.find_cycle([task("a", "a")]) == ["a", "a"]


def test_cycle_through_a_stage_barrier() -> None:
    tasks = [task("a", "b", stage=1), task("b", stage=2), task("c", stage=1)]
    cycle = dag.find_cycle(tasks)
    assert cycle == ["a", "b", "a"]
    assert dag.describe_cycle(tasks, cycle) == (
        "a -> b -> a (b is in stage 2 so it waits for every task of stage 1)")


def test_cycle_through_foreach_source() -> None:
    assert dag.find_cycle([task("a", "b"), task("b", source="a")]) == ["a", "b", "a"]


def test_stages_without_edges_between_them_are_fine() -> None:
    tasks = [task("a", stage=2), task("b", stage=1), task("c", "a", stage=3), task("free")]
    assert dag.find_cycle(tasks) is None
    assert dag.topological_order(tasks) == ["b", "free", "a", "c"]


def test_topological_order_keeps_file_order_on_ties() -> None:
    tasks = [task("report", "load"), task("extract"), task("load", "extract"), task("other")]
    assert dag.topological_order(tasks) == ["extract", "load", "report", "other"]


def test_topological_order_raises_on_cycle() -> None:
    with pytest.raises(dag.CycleError, match="a -> b -> a") as info:
        dag.topological_order([task("a", "b"), task("b", "a")])
    assert info.value.cycle == ["a", "b", "a"]


def test_critical_path_with_stages() -> None:
    tasks = [task("a", stage=1), task("e", stage=1), task("b", stage=2), task("c", "b"),
             task("d", stage=3)]
    total, path = dag.critical_path(tasks, {"a": 5, "b": 1, "c": 10, "d": 1, "e": 7})
    assert (total, path) == (18.0, ["e", "b", "c"])


def test_critical_path_missing_durations_are_zero() -> None:
    assert dag.critical_path([task("a"), task("b", "a")], {"b": 2.0}) == (2.0, ["a", "b"])
    assert dag.critical_path([], {}) == (0.0, [])


def test_stage_barrier_is_linear_in_size() -> None:
    # 2 stages x 2,000 tasks: a naive barrier would be 4,000,000 edges.
    tasks = [task(f"s{s}_{i}", stage=s) for s in (1, 2) for i in range(2000)]
    graph = dag.waits_for(tasks)
    assert sum(len(v) for v in graph.values()) < 10_000
    assert len(dag.topological_order(tasks)) == 4000


def test_long_chain_has_no_recursion_limit() -> None:
    tasks = [task("t0")] + [task(f"t{i}", f"t{i - 1}") for i in range(1, 20_000)]
    assert dag.find_cycle(tasks) is None
    total, path = dag.critical_path(tasks, {t.name: 1.0 for t in tasks})
    assert (total, len(path), path[-1]) == (20_000.0, 20_000, "t19999")


@st.composite
def random_dags(draw: st.DrawFn) -> list[TaskSpec]:
    n = draw(st.integers(1, 25))
    tasks = []
    for i in range(n):
        deps = draw(st.sets(st.integers(0, n - 1)))
        stage = draw(st.one_of(st.none(), st.integers(1, 4)))
        tasks.append(task(f"t{i}", *(f"t{d}" for d in sorted(deps)), stage=stage))
    return tasks


@given(random_dags())
def test_order_respects_every_wait_or_a_cycle_is_found(tasks: list[TaskSpec]) -> None:
    cycle = dag.find_cycle(tasks)
    if cycle is not None:
        assert cycle[0] == cycle[-1]
        with pytest.raises(dag.CycleError):
            dag.topological_order(tasks)
        return
    order = dag.topological_order(tasks)
    pos = {n: i for i, n in enumerate(order)}
    assert sorted(order) == sorted(t.name for t in tasks)
    for t in tasks:
        for up in t.depends_on:
            assert pos[up] < pos[t.name]
        for other in tasks:
            if t.stage is not None and other.stage is not None and other.stage < t.stage:
                assert pos[other.name] < pos[t.name]
