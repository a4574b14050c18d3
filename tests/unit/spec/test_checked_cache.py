"""The cache of checked job files (spec/checked.py): a hit is the same JobSpec the checking
builds, and nothing that changes the checking's answer can be answered from the cache."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from spec_examples import SPEC_EXAMPLE

from taskplan.errors import DefinitionError
from taskplan.spec import analysis, checked, loader
from taskplan.spec.outcome import Outcome
from taskplan.spec.shared import SHARED

DEADLINE_AND_NOTIFY = """\
deadline: {finish_by: "07:00"}
notify:
  - on: [run_failed]
    command: ./page-oncall.sh
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("TASKPLAN_CACHE_DIR", str(folder))
    return folder / "jobs"


def entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.pickle")) if folder.exists() else []


def write(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def in_new_process(code: str, cache: Path) -> list[str]:
    """What `code` prints, as words, run by a fresh interpreter using this cache."""
    env = {**os.environ, "TASKPLAN_CACHE_DIR": str(cache.parent)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True).stdout.split()


def test_a_hit_is_the_job_the_checking_builds(tmp_path: Path, cache: Path) -> None:
    path = write(tmp_path, SPEC_EXAMPLE)
    fresh = loader.load_job_file(path)
    first = checked.load_job_file(path)
    assert len(entries(cache)) == 1
    second = checked.load_job_file(path)
    assert second is not first
    for got in (first, second):
        assert got == fresh
        assert got.definition == fresh.definition
        assert (got.source_path, got.base_dir) == (fresh.source_path, fresh.base_dir)
        assert [s.cron for s in got.schedules] == [s.cron for s in fresh.schedules]


def test_a_hit_loads_neither_the_parser_nor_the_schema(tmp_path: Path, cache: Path) -> None:
    path = write(tmp_path, SPEC_EXAMPLE)
    checked.load_job_file(path)
    probe = ("import sys; from taskplan.spec import load_job_file;"
             f" spec = load_job_file({str(path)!r}); print(spec.name,"
             " sorted(m for m in ('pydantic', 'yaml', 'taskplan.spec.loader')"
             " if m in sys.modules))")
    assert in_new_process(probe, cache) == ["nightly_sales", "[]"]


def test_apply_and_validate_of_a_kept_file_load_neither_parser_nor_schema(
        tmp_path: Path, cache: Path) -> None:
    path = write(tmp_path, SPEC_EXAMPLE)
    loader.load_definitions([path])
    probe = ("import sys; from taskplan.spec import load_definitions, validate_files;"
             f" found = load_definitions([{str(path)!r}]);"
             f" problems = validate_files([{str(path)!r}]);"
             " print(found.jobs[0].name, len(problems),"
             " sorted(m for m in ('pydantic', 'yaml', 'taskplan.spec.analysis')"
             " if m in sys.modules))")
    assert in_new_process(probe, cache) == ["nightly_sales", "0", "[]"]


def test_an_edited_file_is_checked_again(tmp_path: Path, cache: Path) -> None:
    path = write(tmp_path, SPEC_EXAMPLE)
    assert checked.load_job_file(path).max_parallel == 8
    path.write_text(SPEC_EXAMPLE.replace("max_parallel: 8", "max_parallel: 3"))
    assert checked.load_job_file(path).max_parallel == 3
    path.write_text(SPEC_EXAMPLE.replace("max_parallel: 8", "max_parallel: zero"))
    with pytest.raises(DefinitionError) as bad:
        checked.load_job_file(path)
    assert ":15:" in str(bad.value) and "max_parallel" in str(bad.value)
    assert len(entries(cache)) == 2


def test_a_file_with_problems_is_never_kept(tmp_path: Path, cache: Path) -> None:
    path = write(tmp_path, "job: x\ntasks:\n  a:\n    shell: 'true'\n    retries: -1\n")
    for _ in range(2):
        with pytest.raises(DefinitionError) as bad:
            checked.load_job_file(path)
        assert str(bad.value).startswith(f"{path}:5:")
    assert entries(cache) == []


def test_the_same_bytes_elsewhere_share_an_entry_and_keep_their_place(
        tmp_path: Path, cache: Path) -> None:
    a = write(tmp_path, SPEC_EXAMPLE)
    (tmp_path / "b").mkdir()
    b = write(tmp_path / "b", SPEC_EXAMPLE, "other.yml")
    for _ in range(2):
        assert (checked.load_job_file(a).source_path, checked.load_job_file(a).base_dir) == (
            str(a), str(tmp_path))
        got = checked.load_job_file(b)
        assert (got.source_path, got.base_dir) == (str(b), str(tmp_path / "b"))
        assert got == loader.load_job_file(b)
    assert len(entries(cache)) == 1


def test_shared_connection_names_are_part_of_the_key(tmp_path: Path, cache: Path) -> None:
    path = write(tmp_path, "job: x\ntasks:\n  a:\n    sql: SELECT 1\n    connection: wh\n")
    token = SHARED.set(frozenset({"wh"}))
    try:
        assert checked.load_job_file(path).tasks[0].connection == "wh"
    finally:
        SHARED.reset(token)
    with pytest.raises(DefinitionError, match="wh"):
        checked.load_job_file(path)  # without the shared name the file is wrong again


def test_other_taskplan_code_misses(tmp_path: Path, cache: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, SPEC_EXAMPLE + DEADLINE_AND_NOTIFY)
    checked.load_job_file(path)
    monkeypatch.setattr(checked, "_code_stamp", b"another build of taskplan")
    checked.load_job_file(path)
    assert len(entries(cache)) == 2


def test_a_torn_entry_is_a_miss_and_is_rewritten(tmp_path: Path, cache: Path) -> None:
    path = write(tmp_path, SPEC_EXAMPLE)
    expected = checked.load_job_file(path)
    (entry,) = entries(cache)
    entry.write_bytes(entry.read_bytes()[:40])
    assert checked.load_job_file(path) == expected
    assert checked.load_job_file(path) == expected  # from the rewritten entry
    assert entry.stat().st_size > 40


def test_off_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKPLAN_CACHE_DIR", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert checked.cache_dir() is None
    path = write(tmp_path, SPEC_EXAMPLE)
    assert checked.load_job_file(path).name == "nightly_sales"
    assert not (tmp_path / "xdg").exists()


def test_the_folder_defaults_to_the_xdg_cache(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKPLAN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert checked.cache_dir() == tmp_path / "xdg" / "taskplan" / "jobs"


def test_an_unwritable_cache_only_costs_the_checking(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TASKPLAN_CACHE_DIR", str(blocker))
    path = write(tmp_path, SPEC_EXAMPLE)
    assert checked.load_job_file(path).name == "nightly_sales"


def test_pruning_keeps_the_most_recently_used(tmp_path: Path, cache: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checked, "KEEP", 2)
    paths = [write(tmp_path, f"job: j{i}\ntasks:\n  a:\n    shell: 'true'\n", f"j{i}.yaml")
             for i in range(3)]
    checked.load_job_file(paths[0])
    checked.load_job_file(paths[1])
    first, second = (cache / (checked.key_of(p.read_bytes()).hex() + ".pickle")
                     for p in paths[:2])
    os.utime(first, ns=(1, 1))
    os.utime(second, ns=(2, 2))
    checked.load_job_file(paths[0])  # a hit: now the most recently used
    checked.load_job_file(paths[2])
    assert first.exists() and not second.exists()
    assert len(entries(cache)) == 2


def test_a_folder_others_can_write_to_is_not_used(tmp_path: Path, cache: Path) -> None:
    path = write(tmp_path, SPEC_EXAMPLE)
    cache.mkdir(parents=True)
    cache.chmod(0o777)
    assert checked.load_job_file(path).name == "nightly_sales"
    assert entries(cache) == []


def test_an_entry_that_is_a_symbolic_link_is_not_followed(tmp_path: Path, cache: Path) -> None:
    other = write(tmp_path, "job: other\ntasks:\n  a:\n    shell: 'true'\n", "other.yaml")
    checked.load_job_file(other)
    (planted,) = entries(cache)
    path = write(tmp_path, SPEC_EXAMPLE)
    entry = cache / (checked.key_of(path.read_bytes()).hex() + ".pickle")
    entry.symlink_to(planted)  # someone else's job where this file's entry would be
    assert checked.load_job_file(path).name == "nightly_sales"


def test_a_time_zone_the_system_lost_makes_a_hit_a_miss(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, SPEC_EXAMPLE)
    checked.load_job_file(path)
    checks: list[str] = []
    real = loader.load_job_file_text

    def counted(p: str | Path, text: str) -> object:
        checks.append(str(p))
        return real(p, text)

    def gone(name: str) -> str:
        return f"no time zone {name}"

    monkeypatch.setattr(loader, "load_job_file_text", counted)
    assert checked.load_job_file(path).timezone == "Europe/Paris"
    assert checks == []  # a hit
    monkeypatch.setattr(checked, "check_timezone", gone)
    checked.load_job_file(path)
    assert checks == [str(path)]  # checked again, as a file never seen


def test_an_upgraded_library_changes_the_stamp(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    lib = tmp_path / "lib" / "fakelib"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("VERSION = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    monkeypatch.setattr(checked, "LIBRARIES", ("fakelib",))
    monkeypatch.setattr(checked, "_code_stamp", None)
    before = checked.code_stamp()
    (lib / "__init__.py").write_text("VERSION = 2  # an upgrade\n")
    monkeypatch.setattr(checked, "_code_stamp", None)
    assert checked.code_stamp() != before


def test_validate_and_apply_answer_an_unchanged_job_file_from_the_cache(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, SPEC_EXAMPLE)
    first = loader.load_definitions([path])
    assert len(entries(cache)) == 1
    checks: list[str] = []
    real = analysis.analyse_text

    def counted(text: str, shown: str, *rest: str) -> Outcome:
        checks.append(shown)
        return real(text, shown, *rest)

    monkeypatch.setattr(analysis, "analyse_text", counted)
    assert loader.validate_files([path]) == []
    again = loader.load_definitions([path])
    assert checks == []  # neither looked at the file's text again
    assert again.jobs == first.jobs
    assert again.jobs[0].definition == first.jobs[0].definition
    assert again.jobs[0].source_path == str(path.resolve())
    # The run's cache and apply's are one: run finds what apply checked.
    assert checked.load_job_file(path) == first.jobs[0]


def test_a_job_name_defined_twice_points_at_the_line_also_from_the_cache(
        tmp_path: Path, cache: Path) -> None:
    one = write(tmp_path, "job: twice\ntasks:\n  a: {shell: echo a}\n", "one.yaml")
    two = write(tmp_path, "# the same job name\njob: twice\ntasks:\n  b: {shell: echo b}\n",
                "two.yaml")
    for path in (one, two):  # each checks cleanly on its own, and is kept
        loader.load_definitions([path])
    assert len(entries(cache)) == 2
    problems = [str(p) for p in loader.validate_files([one, two])]
    assert problems == [f"{two}:2:6: job: 'twice' is already defined in {one}"]


def test_a_calendar_file_beside_jobs_is_checked_every_time(tmp_path: Path, cache: Path) -> None:
    calendar = write(tmp_path, "calendar: plant\nholidays: [{country: FR}]\n", "plant.yaml")
    job = write(tmp_path, "job: j\ntasks:\n  a: {shell: echo a}\n", "j.yaml")
    found = loader.load_definitions([calendar, job])
    assert [c.name for c in found.calendars] == ["plant"]
    assert len(entries(cache)) == 1  # the job only
    calendar.write_text("calendar: plant\nholidays: [{country: XX}]\n")
    with pytest.raises(DefinitionError):
        loader.load_definitions([calendar, job])


def test_a_stored_definition_is_rebuilt_once(tmp_path: Path, cache: Path) -> None:
    import json

    from taskplan.spec.analysis import job_from_definition
    from taskplan.store.ops import dumps

    spec = loader.load_job_file(write(tmp_path, SPEC_EXAMPLE))
    text = dumps(spec.definition)
    fresh = job_from_definition(json.loads(text), "/jobs/a.yaml", "/jobs")
    first = checked.job_from_stored(text, "/jobs/a.yaml", "/jobs")
    assert first == fresh and len(entries(cache)) == 1
    moved = checked.job_from_stored(text, "/elsewhere/b.yaml", "/elsewhere")
    assert moved == dataclasses.replace(fresh, source_path="/elsewhere/b.yaml",
                                        base_dir="/elsewhere")
    # A file of the same job keeps an entry of its own: the two are never mistaken.
    checked.load_job_file(tmp_path / "job.yaml")
    assert len(entries(cache)) == 2
    probe = ("import sys; from taskplan.spec.checked import job_from_stored;"
             f" spec = job_from_stored({text!r}, '/jobs/a.yaml', '/jobs');"
             " print(spec.name, sorted(m for m in ('pydantic', 'taskplan.spec.analysis')"
             " if m in sys.modules))")
    assert in_new_process(probe, cache) == ["nightly_sales", "[]"]
