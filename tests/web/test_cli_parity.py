"""The API against the CLI on the same store (SQLite and PostgreSQL): where both answer, the
API's JSON is the CLI's `--json` and its error line is the CLI's message; the pages show the
same firings."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web_helpers import TASKPLAN, apply_text, clean_env, run_to_end

from taskplan.engine import Engine

# Tokyo, never the test machine's zone in CI (UTC): a time without an offset read in the
# wrong zone moves by nine hours.
TWICE = """
job: twice
timezone: Asia/Tokyo
schedules:
  - cron: "0 2 * * *"
  - cron: "30 3 * * *"
    name: late
tasks:
  boom: {shell: "exit 1"}
  after: {shell: "echo after", depends_on: [boom]}
  sleeper: {shell: "echo zzz"}
  each: {foreach: {values: [1, 2]}, shell: "echo {{ item }}"}
  gated: {foreach: {values: [1]}, shell: "echo {{ item }}", depends_on: [boom]}
"""


class Cli:
    def __init__(self, url: str, home: Path) -> None:
        self.url, self.home = url, home

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([TASKPLAN, *args], cwd=self.home, env=clean_env(self.url),
                              capture_output=True, text=True, timeout=60)

    def json(self, *args: str) -> Any:
        done = self.run(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def error(self, *args: str) -> str:
        """The one line a refused command prints (exit 2), without the `taskplan: ` prefix."""
        done = self.run(*args)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done
        return done.stderr.strip().removeprefix("taskplan: ")


@pytest.fixture
def both(engine: Engine, store_url: str, tmp_path: Path) -> Iterator[tuple[Any, Cli, int]]:
    """A client of the app, the CLI on the same store, and a failed run of `twice`."""
    from fastapi.testclient import TestClient

    from taskplan.web.app import create_app

    version = apply_text(engine, TWICE)
    run_id = engine.create_run(version)
    assert run_to_end(engine, run_id) == "failed"
    with TestClient(create_app(engine)) as client:
        yield client, Cli(store_url, tmp_path), run_id


def test_paused_schedules_have_no_firings_anywhere(both: tuple[Any, Cli, int]) -> None:
    client, cli, _ = both
    r = client.post("/api/v1/jobs/twice/schedules/0/pause")
    # The key the path takes, as `firings --json` and `backfill --json` name it: a string.
    assert r.json() == {"job": "twice", "schedule": "0", "paused": True, "changed": True}
    [job] = client.get("/api/v1/jobs").json()
    assert [(s["schedule"], s["paused"]) for s in job["schedules"]] == [("0", True),
                                                                        ("late", False)]
    assert job["next"]["schedule"] == "late"
    assert client.get("/api/v1/jobs/twice").json()["next"]["schedule"] == "late"
    after = "2027-01-10T00:00+09:00"
    api = client.get("/api/v1/jobs/twice/next", params={"n": 4, "after": after}).json()
    assert api == cli.json("next", "twice", "-n", "4", "--after", after)
    assert {f["schedule"] for f in api} == {"late"}
    listed = client.get("/api/v1/jobs/twice/next", params={"n": 4}).json()
    assert {f["schedule"] for f in listed} == {"late"}

    jobs_row = client.get("/jobs").text.split('data-job="twice"')[1].split("</tr>")[0]
    assert "03:30:00+09:00" in jobs_row and "02:00:00+09:00" not in jobs_row
    upcoming = client.get("/jobs/twice").text.split("Next firings")[1].split("</ul>")[0]
    assert "schedule late" in upcoming and "schedule 0" not in upcoming
    month = client.get("/calendar", params={"month": "2030-01"}).text
    assert "twice</a> 03:30" in month and "02:00" not in month

    # Every schedule paused: nothing fires, as `next` and `jobs` say.
    client.post("/api/v1/jobs/twice/schedules/late/pause")
    assert client.get("/api/v1/jobs/twice/next", params={"after": after}).json() == [] == (
        cli.json("next", "twice", "--after", after))
    assert client.get("/api/v1/jobs/twice").json()["next"] is None
    assert cli.json("jobs")[0]["next"] is None
    assert "twice</a>" not in client.get("/calendar", params={"month": "2030-01"}).text
    client.post("/api/v1/jobs/twice/schedules/0/resume")
    assert client.get("/api/v1/jobs/twice").json()["next"]["schedule"] == 0


@pytest.mark.parametrize("after", ["2026-12-05T01:00", "2027-03-01", "0001-01-01",
                                   "0001-01-01T00:00+00:00", "9999-12-31T23:59:59-14:00"])
def test_next_after_reads_as_the_cli_does(both: tuple[Any, Cli, int], after: str) -> None:
    """Without an offset `after` is a wall time in the job's zone (Tokyo here)."""
    client, cli, _ = both
    r = client.get("/api/v1/jobs/twice/next", params={"n": 3, "after": after})
    assert r.status_code == 200, r.text
    assert r.json() == cli.json("next", "twice", "-n", "3", "--after", after)
    if after == "2026-12-05T01:00":
        assert r.json()[0]["at"] == "2026-12-05T02:00:00+09:00"


def test_errors_are_the_clis_lines(both: tuple[Any, Cli, int]) -> None:
    client, cli, _ = both
    r = client.get("/api/v1/runs", params={"job": "twise"})
    assert r.status_code == 404
    assert r.json()["error"] == cli.error("runs", "--job", "twise")
    assert "did you mean 'twice'" in r.json()["error"]


def _logs(client: Any, run_id: int, task: str, **params: Any) -> tuple[int, str]:
    r = client.get(f"/api/v1/runs/{run_id}/tasks/{task}/logs", params=params)
    return r.status_code, r.json()["error"]


def test_log_refusals_are_the_clis(both: tuple[Any, Cli, int], engine: Engine) -> None:
    client, cli, run_id = both
    waiting = engine.create_run(engine.current_version("twice"))  # nothing has run yet
    # (task, run, API parameters, CLI options, status)
    cases: list[tuple[str, int, dict[str, Any], list[str], int]] = [
        ("after", run_id, {}, [], 404),
        ("sleeper", run_id, {"item": 0}, ["--item", "0"], 422),
        ("sleeper", run_id, {"attempt": 3}, ["--attempt", "3"], 404),
        ("each", run_id, {}, [], 422),
        ("each", run_id, {"item": 5}, ["--item", "5"], 404),
        ("gated", run_id, {"item": 0}, ["--item", "0"], 404),
        ("gated", run_id, {}, [], 404),
        ("nope", run_id, {}, [], 404),
        ("sleeper", 999, {}, [], 404),
        ("sleeper", waiting, {}, [], 404),
        ("each", waiting, {"item": 0}, ["--item", "0"], 404),
    ]
    for task, run, params, options, status in cases:
        got = _logs(client, run, task, **params)
        said = cli.error("logs", str(run), task, *options)
        # The one word that differs: the CLI's option is the API's parameter.
        assert got == (status, said.replace("--item N", "item=N").replace("--item", "item=")
                       ), (task, params)
    assert _logs(client, run_id, "after")[1] == "after never ran (upstream_failed): no attempts"
    assert _logs(client, run_id, "sleeper", item=0)[1].startswith(
        "sleeper is not a foreach task")
    engine.cancel_run(waiting)
