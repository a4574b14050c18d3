"""What a task sees of the tasks it waits for: by edge, by stage barrier, and a foreach's items."""

from __future__ import annotations

from acceptance_helpers import Taskplan, tasks_by_name


def test_results_cross_stage_barriers_and_collect_foreach_items(tp: Taskplan) -> None:
    tp.write("steps.py", """
        def extract(ctx):
            return {"rows": 3}

        def side(ctx):
            return "side-done"

        def transform(ctx):
            try:
                ctx.results["extrakt"]
            except KeyError as exc:
                missing = str(exc)
            return {"rows": ctx.results["extract"]["rows"] * 2, "shown": repr(ctx.results),
                    "missing": missing}

        def square(ctx):
            return ctx.item * ctx.item

        def collect(ctx):
            return ctx.results["each"]

        def report(ctx):
            return sorted(ctx.results)
    """)
    tp.write("stages.yaml", """
        job: stages
        tasks:
          extract: {stage: 1, python: "steps:extract"}
          side: {stage: 1, python: "steps:side"}
          transform: {stage: 2, python: "steps:transform"}
          each:
            stage: 2
            foreach: {values: [3, 1, 2]}
            python: steps:square
          collect: {depends_on: [each], python: "steps:collect"}
          show:
            depends_on: [each]
            shell: "echo items={{ tasks.each.result | join(',') }}"
          report: {stage: 3, depends_on: [collect], python: "steps:report"}
    """)
    res = tp("run", "stages.yaml")
    assert res.code == 0, res
    got = tasks_by_name(tp.status(1))
    transform = got["transform"]["result"]
    assert transform["rows"] == 6
    # every task of a lower stage is visible, printed as a plain mapping
    assert transform["shown"] == "{'extract': {'rows': 3}, 'side': 'side-done'}"
    assert transform["missing"] == ("no result for 'extrakt': not a task this one waits for"
                                    " (results has: extract, side)")
    # a foreach's result downstream: its items' results in item order
    assert got["collect"]["result"] == [9, 1, 4]
    # a staged task with its own depends_on: both, each name once
    assert got["report"]["result"] == ["collect", "each", "extract", "side", "transform"]
    assert tp.ok("logs", "1", "show").out == "items=9,1,4\n"


def test_a_child_runs_tasks_are_not_shown_as_the_parents(tp: Taskplan) -> None:
    tp.write("child.yaml", """
        job: child
        tasks:
          inner: {shell: echo inner}
    """)
    tp.write("parent.yaml", """
        job: parent
        tasks:
          sub: {job: child}
          after: {shell: echo after, depends_on: [sub]}
    """)
    tp.ok("apply", "child.yaml")
    res = tp("run", "parent.yaml")
    assert res.code == 0, res
    # plain progress: "<date> <time>  <what, 28 wide> <state>"
    shown = [(line[21:49].strip(), line[50:].split()[0]) for line in res.out.splitlines()
             if line[:4].isdigit() and len(line) > 50]
    assert ("run 2: inner", "succeeded") in shown, res.out  # named with the child's run ...
    assert not any(what == "inner" for what, _ in shown), res.out  # ... never as the parent's
    assert ("after", "succeeded") in shown, res.out


def test_a_sql_rows_infinity_is_null_in_json_output(tp: Taskplan) -> None:
    """A float no JSON can hold (SQLite's 1e999, PostgreSQL's 'NaN'::float8) was printed as a
    bare Infinity / NaN by --json, which strict parsers (JavaScript's JSON.parse) refuse; the
    web API already gave null."""
    import json

    tp.write("inf.yaml", """
        job: inf
        connections: {lite: "sqlite:///lite.db"}
        tasks:
          q: {connection: lite, sql: "SELECT 1e999 AS up, -1e999 AS down, 1.5 AS fine"}
    """)
    tp.ok("run", "inf.yaml")
    text = tp.ok("status", "1", "--json").out

    def refuse(constant: str) -> float:
        raise AssertionError(f"{constant} in JSON output")

    status = json.loads(text, parse_constant=refuse)
    result = tasks_by_name(status)["q"]["result"]
    assert result["rows"] == [{"up": None, "down": None, "fine": 1.5}], result
