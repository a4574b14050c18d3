"""`taskplan next` through the real CLI: DST changes in three zones, month ends, exceptions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TASKPLAN = str(Path(sys.executable).parent / "taskplan")


def taskplan(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKPLAN_")}
    return subprocess.run([TASKPLAN, "--db", f"sqlite:///{home / 'tp.db'}", *args], cwd=home,
                          env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def job_file(home: Path, name: str, text: str) -> str:
    path = home / f"{name}.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return str(path)


def next_json(home: Path, target: str, n: int, after: str) -> list[tuple[str, object]]:
    res = taskplan(home, "next", target, "-n", str(n), "--after", after, "--json")
    assert res.returncode == 0, res.stderr
    return [(f["at"], f["schedule"]) for f in json.loads(res.stdout)]


PARIS = """
    job: paris
    timezone: Europe/Paris
    schedules:
      - cron: "30 2 * * *"
      - name: evening
        at: ["23:00"]
        monthdays: [last]
    exceptions:
      - dates: [2026-03-30]
    tasks:
      a: {shell: echo a}
"""


def test_paris_spring_forward_shifts_the_gap_time_and_exceptions_suppress(
        tmp_path: Path) -> None:
    path = job_file(tmp_path, "paris", PARIS)
    assert next_json(tmp_path, path, 5, "2026-03-28T00:00") == [
        ("2026-03-28T02:30:00+01:00", 0),
        ("2026-03-29T03:30:00+02:00", 0),  # 02:30 does not exist: shifted by the gap
        # 2026-03-30 is an exception
        ("2026-03-31T02:30:00+02:00", 0),
        ("2026-03-31T23:00:00+02:00", "evening"),
        ("2026-04-01T02:30:00+02:00", 0),
    ]


def test_paris_fall_back_fires_once_at_the_first_occurrence(tmp_path: Path) -> None:
    path = job_file(tmp_path, "paris", PARIS)
    got = next_json(tmp_path, path, 3, "2026-10-24T12:00+02:00")
    assert got == [("2026-10-25T02:30:00+02:00", 0), ("2026-10-26T02:30:00+01:00", 0),
                   ("2026-10-27T02:30:00+01:00", 0)]


def test_new_york_both_changes(tmp_path: Path) -> None:
    path = job_file(tmp_path, "ny", """
        job: ny
        timezone: America/New_York
        schedules:
          - cron: "30 2 * * *"
          - name: early
            cron: "30 1 * * *"
        tasks:
          a: {shell: echo a}
    """)
    spring = next_json(tmp_path, path, 4, "2026-03-07T12:00")
    assert spring == [("2026-03-08T01:30:00-05:00", "early"), ("2026-03-08T03:30:00-04:00", 0),
                      ("2026-03-09T01:30:00-04:00", "early"), ("2026-03-09T02:30:00-04:00", 0)]
    fall = next_json(tmp_path, path, 3, "2026-10-31T12:00")
    assert fall == [("2026-11-01T01:30:00-04:00", "early"), ("2026-11-01T02:30:00-05:00", 0),
                    ("2026-11-02T01:30:00-05:00", "early")]


def test_lord_howe_half_hour_shifts(tmp_path: Path) -> None:
    path = job_file(tmp_path, "lh", """
        job: lh
        timezone: Australia/Lord_Howe
        schedules:
          - cron: "45 1 * * *"
          - name: gap
            cron: "15 2 * * *"
        tasks:
          a: {shell: echo a}
    """)
    # 5 April 2026: 02:00 +11 becomes 01:30 +10:30; 01:45 is repeated and fires once.
    assert next_json(tmp_path, path, 3, "2026-04-04T12:00") == [
        ("2026-04-05T01:45:00+11:00", 0), ("2026-04-05T02:15:00+10:30", "gap"),
        ("2026-04-06T01:45:00+10:30", 0)]
    # 4 October 2026: 02:00 +10:30 becomes 02:30 +11; 02:15 is shifted by the 30-minute gap.
    assert next_json(tmp_path, path, 3, "2026-10-03T12:00") == [
        ("2026-10-04T01:45:00+10:30", 0), ("2026-10-04T02:45:00+11:00", "gap"),
        ("2026-10-05T01:45:00+11:00", 0)]


def test_month_ends_skip_missing_days_and_l_is_the_last_day(tmp_path: Path) -> None:
    path = job_file(tmp_path, "me", """
        job: me
        timezone: America/New_York
        schedules:
          - name: d31
            at: ["12:00"]
            monthdays: [31]
          - name: last
            cron: "0 6 L * *"
        tasks:
          a: {shell: echo a}
    """)
    assert next_json(tmp_path, path, 6, "2028-01-15T00:00-05:00") == [
        ("2028-01-31T06:00:00-05:00", "last"), ("2028-01-31T12:00:00-05:00", "d31"),
        ("2028-02-29T06:00:00-05:00", "last"),  # leap year; no 31 February
        ("2028-03-31T06:00:00-04:00", "last"), ("2028-03-31T12:00:00-04:00", "d31"),
        ("2028-04-30T06:00:00-04:00", "last"),  # April has no 31st
    ]


def test_applied_job_by_name_and_text_output_shows_offsets(tmp_path: Path) -> None:
    path = job_file(tmp_path, "paris", PARIS)
    assert taskplan(tmp_path, "apply", path).returncode == 0
    res = taskplan(tmp_path, "next", "paris", "-n", "2", "--after", "2026-03-29T00:00")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("2026-03-29T03:30:00+02:00") and "UTC+02:00" in lines[0]
    assert "schedule 0" in lines[0]
    assert "schedule evening" not in res.stdout


@pytest.mark.parametrize("after", ["nope", "2026-13-01", "yesterday at noon"])
def test_bad_after_is_exit_2_with_one_line(tmp_path: Path, after: str) -> None:
    path = job_file(tmp_path, "paris", PARIS)
    res = taskplan(tmp_path, "next", path, "--after", after)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "--after" in res.stderr


def test_unknown_job_is_exit_2(tmp_path: Path) -> None:
    res = taskplan(tmp_path, "next", "nosuchjob")
    assert res.returncode == 2 and "nosuchjob" in res.stderr
