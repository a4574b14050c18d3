import json
import os
import textwrap
from datetime import date, datetime, time
from pathlib import Path

import pytest
from spec_examples import SPEC_EXAMPLE

from taskplan.errors import DefinitionError, Problem
from taskplan.model import (
    Calendar,
    Foreach,
    OnFailure,
    ScheduleSpec,
    TaskSpec,
    TriggerRule,
    TriggerSpec,
)
from taskplan.spec import (
    definition_hash,
    job_from_definition,
    load_job_file,
    load_job_files,
    load_job_text,
    validate_files,
)
from taskplan.spec.loader import check_definitions


def load(text: str) -> object:
    return load_job_text(textwrap.dedent(text), "job.yaml", "/jobs")


def problems(text: str) -> list[Problem]:
    with pytest.raises(DefinitionError) as info:
        load_job_text(textwrap.dedent(text), "job.yaml", "/jobs")
    return info.value.problems


def test_spec_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "nightly.yaml"
    path.write_text(SPEC_EXAMPLE)
    spec = load_job_file(path)
    assert spec.name == "nightly_sales"
    assert spec.source_path == str(path.resolve())
    assert spec.base_dir == str(tmp_path.resolve())
    assert spec.connections == {"mart": "${MART_URL}"}
    assert spec.params == {"day": "2026-11-20"}
    assert spec.max_parallel == 8 and spec.on_failure is OnFailure.CONTINUE
    assert spec.timezone == "Europe/Paris"
    assert [t.name for t in spec.tasks] == [
        "stage_orders", "stage_customers", "refresh", "report", "alert"]
    common = {"retries": 2, "retry_delay": 30.0, "retry_backoff": 2.0, "timeout": 3600.0}
    assert spec.task("stage_orders") == TaskSpec(
        name="stage_orders", kind="sql", command="CALL stage_orders(:day)", stage=1,
        connection="mart", **common)
    assert spec.task("stage_customers") == TaskSpec(
        name="stage_customers", kind="shell", stage=1,
        command=("python", "stage.py", "--table", "customers", "--day", "{{ params.day }}"),
        **common)
    assert spec.task("refresh") == TaskSpec(
        name="refresh", kind="sql", command="REFRESH MATERIALIZED VIEW {{ item.view | ident }}",
        stage=2, connection="mart", foreach=Foreach(
            sql="SELECT matviewname AS view FROM pg_matviews WHERE schemaname = 'mart'",
            connection="mart"),
        **common)
    assert spec.task("report") == TaskSpec(
        name="report", kind="python", command="reports.daily:build", depends_on=("refresh",),
        **common)
    assert spec.task("alert").trigger is TriggerRule.ONE_FAILED
    assert spec.schedules == (
        ScheduleSpec(index=0, cron="30 2 * * 1-5"),
        ScheduleSpec(index=1, calendar=Calendar(at=(time(6), time(18)), weekdays=(0, 2, 4))),
        ScheduleSpec(index=2, every=900.0, start=datetime(2026, 1, 1),
                     end=datetime(2026, 12, 31, 23, 59, 59, 999999), max_runs=500),
        ScheduleSpec(index=3, once=datetime(2026, 12, 24, 18), params={"mode": "full"}),
    )
    assert spec.exceptions == (
        Calendar(dates=(date(2026, 12, 25), date(2027, 1, 1))), Calendar(weekdays=(4,)))
    assert spec.triggers == (TriggerSpec(
        index=0, after=("extract_a", "extract_b", "extract_c", "extract_d"), within=43200.0),)


def test_definition_is_plain_json_with_secrets_unexpanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MART_URL", "postgresql://user:secret@db/mart")
    spec = load_job_text(SPEC_EXAMPLE, "nightly.yaml", "/jobs")
    text = json.dumps(spec.definition)
    assert "secret" not in text and "${MART_URL}" in text
    assert spec.definition["exceptions"][0] == {"dates": ["2026-12-25", "2027-01-01"]}
    assert spec.definition["defaults"]["retry_delay"] == "30s"


def test_round_trip_from_definition() -> None:
    spec = load_job_text(SPEC_EXAMPLE, "nightly.yaml", "/jobs")
    stored = json.loads(json.dumps(spec.definition))
    again = job_from_definition(stored, spec.source_path, spec.base_dir)
    assert again == spec
    assert again.tasks == spec.tasks and again.schedules == spec.schedules
    assert again.definition == spec.definition


def test_definition_from_a_bad_dict_raises() -> None:
    with pytest.raises(DefinitionError, match=r"tasks\.a\.retries: expected a whole number"):
        job_from_definition({"job": "x", "tasks": {"a": {"shell": "x", "retries": -1}}}, "", "")


def test_definition_hash_is_stable_and_order_free() -> None:
    a = {"job": "x", "tasks": {"a": {"shell": "x"}, "b": {"shell": "y"}}}
    b = {"tasks": {"b": {"shell": "y"}, "a": {"shell": "x"}}, "job": "x"}
    assert definition_hash(a) == definition_hash(b)
    assert len(definition_hash(a)) == 64
    assert definition_hash(a) != definition_hash({**a, "description": "changed"})
    spec1 = load_job_text(SPEC_EXAMPLE, "a.yaml", "/x")
    spec2 = load_job_text("# a comment\n" + SPEC_EXAMPLE, "b.yaml", "/y")
    assert definition_hash(spec1.definition) == definition_hash(spec2.definition)


def test_yaml_12_keeps_clock_times_as_text() -> None:
    spec = load("""\
        job: x
        params: {at: 9:30, octal: 012, flag: yes}
        tasks:
          a: {shell: "true"}
        schedules:
          - at: 9:30
          - at: [06:00, "18:15"]
    """)
    assert spec.params == {"at": "9:30", "octal": 12, "flag": "yes"}
    assert spec.schedules[0].calendar == Calendar(at=(time(9, 30),))
    assert spec.schedules[1].calendar == Calendar(at=(time(6), time(18, 15)))


def test_defaults_apply_and_task_keys_win() -> None:
    spec = load("""\
        job: x
        connections: {db: "sqlite://", other: "sqlite://"}
        defaults:
          connection: db
          retries: 3
          env: {A: "1", B: "2"}
          pool: slow
          trigger: all_done
        tasks:
          a:
            sql: select 1
            connection: other
            retries: 0
            timeout: 90
          b:
            shell: [echo, 1, 2.5]
            pool: null
            env: {B: 3, C: true}
    """)
    a, b = spec.task("a"), spec.task("b")
    assert (a.connection, a.retries, a.pool, a.trigger) == ("other", 0, "slow",
                                                            TriggerRule.ALL_DONE)
    assert a.timeout == 90.0
    assert b.connection is None and b.pool is None and b.retries == 3
    assert b.env == {"A": "1", "B": "3", "C": "true"}
    assert b.command == ("echo", "1", "2.5")


def test_foreach_forms_and_job_tasks() -> None:
    spec = load("""\
        job: parent
        tasks:
          list: {python: "mod:items"}
          each:
            foreach: {from: list}
            shell: "echo {{ item }}"
          lit:
            foreach: {values: [1, {a: 2}]}
            job: child
            params: {n: "{{ item }}"}
    """)
    each, lit = spec.task("each"), spec.task("lit")
    assert each.foreach == Foreach(from_task="list")
    assert each.depends_on == ()
    assert lit.foreach == Foreach(values=(1, {"a": 2}))
    assert (lit.kind, lit.command, lit.params) == ("job", "child", {"n": "{{ item }}"})


def test_cron_aliases_expand_and_depends_on_string() -> None:
    spec = load("""\
        job: x
        tasks:
          a: {shell: x}
          b: {shell: y, depends_on: a}
        schedules:
          - {cron: "@daily", name: nightly}
          - cron: "0 0 L * *"
    """)
    assert spec.task("b").depends_on == ("a",)
    assert spec.schedules[0].cron == "0 0 * * *" and spec.schedules[0].key == "nightly"
    assert spec.schedules[1].cron == "0 0 L * *" and spec.schedules[1].key == "1"


def test_calendar_names_and_last() -> None:
    spec = load("""\
        job: x
        tasks: {a: {shell: x}}
        schedules:
          - monthdays: [1, 15, last]
            months: [jan, 7, Dec]
            hours: 3
            minutes: [0, 30]
        exceptions:
          - weekdays: [sat, sun]
            at: "03:00"
    """)
    assert spec.schedules[0].calendar == Calendar(
        monthdays=(-1, 1, 15), months=(1, 7, 12), hours=(3,), minutes=(0, 30))
    assert spec.exceptions == (Calendar(weekdays=(5, 6), at=(time(3),)),)


def test_validate_files_dir_and_duplicate_job_names(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("job: same\ntasks: {a: {shell: x}}\n")
    (tmp_path / "b.yml").write_text("job: same\ntasks: {a: {shell: x}}\n")
    (tmp_path / "c.yaml").write_text("job: other\ntasks: {a: {shell: x, retries: -1}}\n")
    (tmp_path / "notes.txt").write_text("not a job")
    found = validate_files([tmp_path])
    assert [str(p) for p in found] == [
        f"{tmp_path / 'b.yml'}:1:6: job: 'same' is already defined in {tmp_path / 'a.yaml'}",
        f"{tmp_path / 'c.yaml'}:2:32: tasks.a.retries: expected a whole number >= 0, got -1",
    ]
    with pytest.raises(DefinitionError):
        load_job_files([tmp_path])


def test_a_folder_leaves_out_its_hidden_files(tmp_path: Path) -> None:
    # As a shell's `jobs/*.yaml` does. Emacs keeps `.#nightly.yaml` (a link to nowhere) while
    # nightly.yaml has unsaved changes, and a Mac copies `._nightly.yaml` (binary) beside it
    # onto other disks: `apply jobs/` was refused for either.
    (tmp_path / "nightly.yaml").write_text("job: nightly\ntasks: {a: {shell: x}}\n")
    (tmp_path / ".#nightly.yaml").symlink_to("root@host.4242:1700000000")
    (tmp_path / "._nightly.yaml").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    assert validate_files([tmp_path]) == []
    assert [s.name for s in load_job_files([tmp_path])] == ["nightly"]
    # Named on its own, a hidden file is read as any file is.
    assert "control characters" in validate_files([tmp_path / "._nightly.yaml"])[0].message


def test_validate_files_missing_and_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "blank.yaml").write_text("")
    found = validate_files([tmp_path / "nope.yaml", empty, tmp_path / "blank.yaml"])
    messages = [p.message for p in found]
    assert "cannot read the file" in messages[0]
    assert "no job files" in messages[1]
    assert "got an empty file" in messages[2]


def test_a_symbolic_link_loop_is_a_problem_of_its_own(tmp_path: Path) -> None:
    # Path.resolve raises RuntimeError on such a link (Python 3.11): it ended the whole check.
    (tmp_path / "l1.yaml").symlink_to("l2.yaml")
    (tmp_path / "l2.yaml").symlink_to("l1.yaml")
    (tmp_path / "bad.yaml").write_text("job: bad\ntasks: {a: {shell: x, retries: -1}}\n")
    (tmp_path / "good.yaml").write_text("job: good\ntasks: {a: {shell: x}}\n")
    loop = "cannot read the file: a symbolic link loop"
    found, problems = check_definitions([tmp_path])
    assert [s.name for s in found.jobs] == ["good"]
    assert [(Path(p.file).name, p.line, p.col) for p in problems] == [
        ("bad.yaml", 2, 32), ("l1.yaml", 1, 1), ("l2.yaml", 1, 1)]
    assert problems[1].message.startswith(loop) and problems[2].message.startswith(loop)
    # Named twice, it is one file.
    link = tmp_path / "l1.yaml"
    assert [(p.file, p.message[:len(loop)]) for p in validate_files([link, link])] == [
        (str(link), loop)]
    # A missing path is no existing file, whatever its `..` would name.
    assert len(validate_files([tmp_path / "gone" / ".." / "good.yaml",
                               tmp_path / "good.yaml"])) == 1


def test_load_job_files_returns_specs(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("job: a\ntasks: {t: {shell: x}}\n")
    (tmp_path / "b.yaml").write_text("job: b\ntasks: {t: {shell: x}}\n")
    assert [s.name for s in load_job_files([tmp_path])] == ["a", "b"]
    assert os.path.isabs(load_job_files([tmp_path / "a.yaml"])[0].source_path)


def test_anchors_under_x_keys_and_merges() -> None:
    spec = load("""\
        job: x
        x-retrying: &retrying
          retries: 4
          retry_delay: 1m
        tasks:
          a:
            <<: *retrying
            shell: x
          b:
            <<: *retrying
            retries: 1
            shell: y
    """)
    assert (spec.task("a").retries, spec.task("a").retry_delay) == (4, 60.0)
    assert spec.task("b").retries == 1


def test_agent_labels_job_and_task_levels_add_up() -> None:
    spec = load_job_text(textwrap.dedent("""\
        job: routed
        agent_labels: [etl, "host=db1"]
        tasks:
          a: {shell: x}
          b: {shell: x, agent_labels: gpu}
          c: {shell: x, agent_labels: [etl]}
        """), "job.yaml", "/jobs")
    assert {t.name: t.agent_labels for t in spec.tasks} == {
        "a": ("etl", "host=db1"), "b": ("etl", "gpu", "host=db1"), "c": ("etl", "host=db1")}
    assert spec.agent_labels == ("etl", "host=db1")
    assert load_job_text("job: y\ntasks: {a: {shell: x}}\n", "j.yaml", "/").tasks[0] \
        .agent_labels == ()


def test_a_file_whose_path_is_not_utf8_is_refused_in_one_line(tmp_path: Path) -> None:
    # Its path is stored as text: apply and run failed with a UnicodeEncodeError.
    folder = tmp_path / os.fsdecode(b"caf\xe9")
    folder.mkdir()
    path = folder / "job.yaml"
    path.write_text("job: x\ntasks:\n  a: {shell: x}\n")
    words = ("its path is not UTF-8 text, which a job's folder must be (it is kept as text):"
             " rename the file, or the folders above it")
    assert [(p.line, p.col, p.message) for p in validate_files([path])] == [(1, 1, words)]
    assert [p.message for p in validate_files([folder])] == [words]
    with pytest.raises(DefinitionError, match="its path is not UTF-8 text"):
        load_job_file(path)
