"""The REST API in process (FastAPI's TestClient) on SQLite and PostgreSQL: every endpoint,
the CLI's JSON shapes, and each error status."""

from __future__ import annotations

from typing import Any

from web_helpers import apply_text, run_to_end

from taskplan import shapes
from taskplan.engine import Engine
from taskplan.store import reports


def test_jobs_and_next(client: Any) -> None:
    jobs = client.get("/api/v1/jobs").json()
    assert [j["name"] for j in jobs] == ["demo"]
    job = jobs[0]
    assert job["version"] == 1 and job["schedules"] == [
        {"schedule": "nightly", "text": "nightly: cron 0 2 * * *", "enabled": True,
         "paused": False}]
    assert job["next"]["schedule"] == "nightly" and job["next"]["at"].endswith(":00")
    assert [r["state"] for r in job["recent_runs"]] == ["failed"]
    detail = client.get("/api/v1/jobs/demo").json()
    assert detail["params"] == {"day": "2026-11-20", "note": "x"}
    assert [t["name"] for t in detail["tasks"]] == ["extract", "items", "fail", "load"]
    nxt = client.get("/api/v1/jobs/demo/next", params={"n": 3}).json()
    assert len(nxt) == 3 and all(f["schedule"] == "nightly" for f in nxt)
    after = client.get("/api/v1/jobs/demo/next",
                       params={"n": 1, "after": "2030-01-01T03:00+00:00"}).json()
    assert after[0]["at"].startswith("2030-01-02T02:00")


def test_unknown_job_and_bad_query(client: Any) -> None:
    for url in ("/api/v1/jobs/nope", "/api/v1/jobs/nope/next"):
        r = client.get(url)
        assert r.status_code == 404 and "nope" in r.json()["error"]
    r = client.get("/api/v1/jobs/demo/next", params={"n": 0})
    assert r.status_code == 422 and r.json()["error"]
    r = client.get("/api/v1/jobs/demo/next", params={"after": "yesterday"})
    assert r.status_code == 422 and "ISO 8601" in r.json()["error"]
    assert client.get("/api/v1/runs", params={"state": "bogus"}).status_code == 422
    assert client.get("/api/v1/runs", params={"limit": 0}).status_code == 422
    assert client.get("/api/v1/runs/abc").status_code == 422


def test_runs_are_the_cli_shapes(client: Any, demo: tuple[Engine, int]) -> None:
    engine, run_id = demo
    with engine.store.read() as tx:
        info = reports.run_info(tx, run_id)
        tasks = reports.task_runs(tx, run_id)
        listed = reports.list_runs(tx)
    assert info is not None
    assert client.get("/api/v1/runs").json() == [shapes.run_summary(r) for r in listed]
    assert client.get(f"/api/v1/runs/{run_id}").json() == shapes.run_status(info, tasks)
    r = client.get("/api/v1/runs/999")
    assert r.status_code == 404 and r.json() == {"error": "no run 999", "status": 404}
    full = client.get(f"/api/v1/runs/{run_id}", params={"attempts": "true"}).json()
    fail = next(t for t in full["tasks"] if t["name"] == "fail")
    assert [a["attempt"] for a in fail["attempt_list"]] == [1]
    assert fail["attempt_list"][0]["exit_code"] == 3
    # a run still waiting says why, as `status --json` does
    waiting = engine.create_run(engine.current_version("demo"))
    rows = client.get(f"/api/v1/runs/{waiting}").json()["tasks"]
    assert {t["name"]: t.get("waiting") for t in rows}["load"].startswith("waiting for")
    engine.cancel_run(waiting)


def test_runs_keyset_pages_and_filters(client: Any, demo: tuple[Engine, int]) -> None:
    engine, first = demo
    version = engine.current_version("demo")
    made = [engine.create_run(version) for _ in range(4)]
    for run_id in made[:2]:
        engine.cancel_run(run_id)
    page = client.get("/api/v1/runs", params={"limit": 2})
    assert [r["run_id"] for r in page.json()] == made[:-3:-1]
    before = page.headers["X-Next-Before"]
    page2 = client.get("/api/v1/runs", params={"limit": 2, "before": before}).json()
    assert [r["run_id"] for r in page2] == [made[1], made[0]]
    cancelled = client.get("/api/v1/runs", params={"state": "cancelled"}).json()
    assert [r["run_id"] for r in cancelled] == [made[1], made[0]]
    assert client.get("/api/v1/runs", params={"job": "other"}).status_code == 404
    assert client.get("/api/v1/runs", params={"trigger": "schedule"}).json() == []
    assert len(client.get("/api/v1/runs", params={"since": "2000-01-01"}).json()) == 5
    assert client.get("/api/v1/runs", params={"until": "2000-01-01"}).json() == []
    assert client.get("/api/v1/runs", params={"since": "nope"}).status_code == 422
    for run_id in made[2:]:
        engine.cancel_run(run_id)
    assert first not in [r["run_id"] for r in cancelled]


def test_logs_by_offset(client: Any, demo: tuple[Engine, int]) -> None:
    _, run_id = demo
    r = client.get(f"/api/v1/runs/{run_id}/tasks/extract/logs").json()
    assert r["attempt"] == 1 and r["done"] and r["state"] == "succeeded"
    assert "extract 2026-11-20" in r["data"] and "<script>" in r["data"]
    again = client.get(f"/api/v1/runs/{run_id}/tasks/extract/logs",
                       params={"offset": r["next_offset"]}).json()
    assert again["data"] == "" and again["next_offset"] == r["next_offset"]
    item = client.get(f"/api/v1/runs/{run_id}/tasks/items/logs", params={"item": 1}).json()
    assert item["data"].strip() == "item 2"
    bad = client.get(f"/api/v1/runs/{run_id}/tasks/items/logs")
    assert bad.status_code == 422 and "item=N" in bad.json()["error"]
    assert client.get(f"/api/v1/runs/{run_id}/tasks/items/logs",
                      params={"item": 9}).status_code == 404
    assert client.get(f"/api/v1/runs/{run_id}/tasks/extract/logs",
                      params={"attempt": 2}).status_code == 404
    assert client.get(f"/api/v1/runs/{run_id}/tasks/nope/logs").status_code == 404
    assert client.get("/api/v1/runs/999/tasks/extract/logs").status_code == 404
    # Ids, never paths: a path-like task name is just a name that does not exist.
    assert client.get(f"/api/v1/runs/{run_id}/tasks/..%2F..%2Fetc%2Fpasswd/logs"
                      ).status_code == 404


def test_logs_mask_passwords_as_the_task_page_does(client: Any, demo: tuple[Engine, int]
                                                  ) -> None:
    # The task page's live tail appends this endpoint's data: a password in clear here was
    # shown in the browser while the task ran, and masked only once the page was reloaded.
    _, run_id = demo
    page = client.get(f"/runs/{run_id}/tasks/fail").text
    assert "bob:***@db" in page and "secret" not in page
    r = client.get(f"/api/v1/runs/{run_id}/tasks/fail/logs").json()
    assert r["data"] == "postgresql://bob:***@db/x failed\n"


def test_agents(client: Any) -> None:
    agents = client.get("/api/v1/agents").json()
    assert len(agents) == 1 and agents[0]["state"] == "stopped"
    assert set(agents[0]) == {"id", "name", "host", "pid", "slots", "running", "state", "labels",
                              "started_at", "heartbeat_at", "lease_until"}


def test_actions(client: Any, demo: tuple[Engine, int]) -> None:
    engine, run_id = demo
    r = client.post("/api/v1/jobs/demo/runs", json={"params": {"day": "2026-12-24"}})
    assert r.status_code == 201
    new = r.json()["run_id"]
    assert r.json()["state"] == "running"
    assert client.get(f"/api/v1/runs/{new}").json()["params"]["day"] == "2026-12-24"
    assert client.post("/api/v1/jobs/demo/runs").status_code == 201  # no body: defaults
    bad = client.post("/api/v1/jobs/demo/runs", json={"params": {"dya": "x"}})
    assert bad.status_code == 422 and "dya" in bad.json()["error"]
    assert client.post("/api/v1/jobs/demo/runs", json={"params": [1]}).status_code == 422
    assert client.post("/api/v1/jobs/demo/runs", json=[1]).status_code == 422
    assert client.post("/api/v1/jobs/nope/runs", json={}).status_code == 404
    # stop, cancel; then both again on the finished run: 409
    assert client.post(f"/api/v1/runs/{new}/stop").json() == {"run_id": new,
                                                               "state": "cancelled"}
    other = client.post("/api/v1/jobs/demo/runs").json()["run_id"]
    assert client.post(f"/api/v1/runs/{other}/cancel").json()["state"] == "cancelled"
    for verb in ("stop", "cancel"):
        r = client.post(f"/api/v1/runs/{other}/{verb}")
        assert r.status_code == 409 and "already cancelled" in r.json()["error"]
        assert client.post(f"/api/v1/runs/999/{verb}").status_code == 404
    # retry one task of the failed run, then the whole run: each resets what failed
    r = client.post(f"/api/v1/runs/{run_id}/tasks/fail/retry")
    assert r.status_code == 200 and r.json()["reset"] == 1  # load (all_done) succeeded
    busy = client.post(f"/api/v1/runs/{run_id}/retry")
    assert busy.status_code == 409 and "running" in busy.json()["error"]
    assert run_to_end(engine, run_id) == "failed"
    assert client.post(f"/api/v1/runs/{run_id}/tasks/nope/retry").status_code == 404
    assert client.post(f"/api/v1/runs/{run_id}/tasks/load/retry").status_code == 409
    assert client.post(f"/api/v1/runs/{run_id}/retry").json()["reset"] == 1
    assert client.post("/api/v1/runs/999/retry").status_code == 404


def test_succeeded_run_has_nothing_to_retry(client: Any, engine: Engine) -> None:
    from web_helpers import apply_text

    version = apply_text(engine, "job: ok\ntasks:\n  a: {shell: 'true'}\n")
    run_id = engine.create_run(version)
    assert run_to_end(engine, run_id) == "succeeded"
    r = client.post(f"/api/v1/runs/{run_id}/retry")
    assert r.status_code == 409 and "already succeeded" in r.json()["error"]


def test_a_fixed_job_is_retried_on_its_current_version_from_the_console(
        client: Any, engine: Engine) -> None:
    """Fix the job file, apply, press Retry: the console reran the broken version the run had
    pinned, failed again, and never said a newer one was current (`retry --latest` had no
    button). The run page now says so and offers Retry on the current version."""
    from web_helpers import apply_text

    broken = "job: fixme\ntasks:\n  a: {shell: 'true'}\n  b: {shell: 'exit 3', depends_on: [a]}\n"
    run_id = engine.create_run(apply_text(engine, broken))
    assert run_to_end(engine, run_id) == "failed"
    assert "Retry on v" not in client.get(f"/runs/{run_id}").text
    apply_text(engine, broken.replace("exit 3", "true"))
    page = client.get(f"/runs/{run_id}").text
    assert "This run pinned v1; v2 is current." in page
    assert f'action="/api/v1/runs/{run_id}/tasks/b/retry?latest=true"' in page
    assert ">Retry on v1</button>" in page and ">Retry on v2</button>" in page
    assert ">Retry run on v2</button>" in page
    task_page = client.get(f"/runs/{run_id}/tasks/b").text
    assert ">Retry this task on v1</button>" in task_page
    assert ">Retry this task on v2</button>" in task_page
    r = client.post(f"/api/v1/runs/{run_id}/tasks/b/retry", params={"latest": "true"})
    assert r.status_code == 200 and r.json()["reset"] == 1, r.text
    assert run_to_end(engine, run_id) == "succeeded"
    run = client.get(f"/api/v1/runs/{run_id}").json()
    assert run["version"] == 2, run
    assert "This run pinned" not in client.get(f"/runs/{run_id}").text
    # A run that succeeded has nothing to rerun: no word about versions.
    done = engine.create_run(apply_text(engine, "job: done\ntasks:\n  a: {shell: 'true'}\n"))
    assert run_to_end(engine, done) == "succeeded"
    apply_text(engine, "job: done\ntasks:\n  a: {shell: 'exit 0'}\n")
    assert "This run pinned" not in client.get(f"/runs/{done}").text


def test_a_paused_jobs_next_firings_are_none(client: Any) -> None:
    """`taskplan next JOB --json` of a paused job is [] (its schedules make no runs); the API
    that docs/web.md calls exactly that listed its firings, and the job page showed them as
    the next firings."""
    assert client.get("/api/v1/jobs/demo/next").json()
    assert client.post("/api/v1/jobs/demo/pause").status_code == 200
    assert client.get("/api/v1/jobs/demo/next").json() == []
    assert client.get("/api/v1/jobs/demo/next", params={"after": "nope"}).status_code == 422
    section = client.get("/jobs/demo").text.split("<h2>Next firings")[1].split("</ul>")[0]
    assert "schedule nightly" not in section
    assert "none: the job is paused" in section
    assert client.post("/api/v1/jobs/demo/resume").status_code == 200
    assert client.get("/api/v1/jobs/demo/next").json()


def test_pause_and_resume(client: Any, engine: Engine) -> None:
    assert client.post("/api/v1/jobs/demo/pause").json() == {"job": "demo", "paused": True,
                                                             "changed": True}
    paused = client.get("/api/v1/jobs/demo").json()
    assert paused["paused"] is True and paused["next"] is None
    assert client.post("/api/v1/jobs/demo/pause").json()["changed"] is False
    assert "paused" in client.get("/jobs").text
    assert client.post("/api/v1/jobs/demo/resume").json() == {"job": "demo", "paused": False,
                                                              "changed": True}
    assert client.post("/api/v1/jobs/nope/pause").status_code == 404
    assert client.post("/api/v1/jobs/nope/resume").status_code == 404


def test_openapi_lists_the_api(client: Any) -> None:
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    for p in ("/api/v1/jobs", "/api/v1/jobs/{job}", "/api/v1/jobs/{job}/next",
              "/api/v1/runs", "/api/v1/runs/{run_id}", "/api/v1/agents",
              "/api/v1/runs/{run_id}/tasks/{task}/logs", "/api/v1/jobs/{job}/runs",
              "/api/v1/runs/{run_id}/stop", "/api/v1/runs/{run_id}/cancel",
              "/api/v1/runs/{run_id}/retry", "/api/v1/runs/{run_id}/tasks/{task}/retry",
              "/api/v1/jobs/{job}/pause", "/api/v1/jobs/{job}/resume"):
        assert p in paths, p

    def answer(path: str, method: str = "get") -> Any:
        ok = next(v for k, v in paths[path][method]["responses"].items() if k.startswith("2"))
        return ok["content"]["application/json"]["schema"]["type"]

    assert answer("/api/v1/runs/{run_id}") == answer("/api/v1/jobs/{job}/runs", "post") == (
        "object")
    assert answer("/api/v1/runs") == answer("/api/v1/agents") == "array"
    page = client.get("/api/docs")  # served here: FastAPI's own docs would load a CDN
    assert page.status_code == 200 and "<code>/api/v1/runs/{run_id}/tasks/{task}/logs</code>" in (
        page.text)


def test_metrics(client: Any) -> None:
    text = client.get("/metrics").text
    assert 'taskplan_runs{job="demo",state="failed"} 1.0' in text
    assert 'taskplan_task_runs{job="demo",state="succeeded"} 6.0' in text
    assert 'taskplan_task_runs{job="demo",state="failed"} 1.0' in text
    assert "taskplan_task_runs_ready_unclaimed 0.0" in text
    assert 'taskplan_agents{state="stopped"} 1.0' in text
    assert 'taskplan_task_duration_seconds_count{job="demo"} 7.0' in text
    assert 'taskplan_task_duration_seconds_bucket{job="demo",le="+Inf"} 7.0' in text
    assert "taskplan_dispatch_latency_seconds_count 7.0" in text
    assert "taskplan_schedule_lag_seconds_count 0.0" in text
    assert "taskplan_agent_slots_busy 0.0" in text


def test_backfilled_runs_are_no_schedule_lag(client: Any, engine: Engine) -> None:
    """A backfill of last month's firings made taskplan_schedule_lag_seconds count each run's
    weeks between its past firing and its start, so an alert on schedule lag fired on every
    backfill; the metric is about schedule firings made by the scheduler."""
    from datetime import UTC, datetime, timedelta

    from taskplan.backfill import backfill

    now = datetime.now(UTC)
    made = backfill(engine, "demo", now - timedelta(days=3), now - timedelta(days=1))
    assert len(made.created) >= 2
    for run_id in made.created:
        assert run_to_end(engine, run_id) == "failed"
    text = client.get("/metrics").text
    assert "taskplan_schedule_lag_seconds_count 0.0" in text, text


def test_a_ready_foreach_counts_as_unclaimed_work(client: Any, engine: Engine) -> None:
    """A foreach task waits for an agent to make its items, as any task does: ready with none
    to claim it (none alive, none with its labels), it was left out of the gauge, which said
    0 while the run waited."""
    version_id = apply_text(engine, """
        job: fan
        tasks:
          each:
            foreach: {values: [1, 2]}
            shell: echo {{ item }}
          plain:
            shell: echo plain
        """)
    engine.create_run(version_id)
    text = client.get("/metrics").text
    assert "taskplan_task_runs_ready_unclaimed 2.0" in text
    assert 'taskplan_task_runs{job="fan",state="ready"} 2.0' in text


def test_jobs_by_keyset_and_name(client: Any, engine: Engine) -> None:
    from web_helpers import apply_text

    for name in ("alpha", "beta_1", "beta-2"):
        apply_text(engine, f"job: {name}\ntasks:\n  a: {{shell: 'true'}}\n")
    page = client.get("/api/v1/jobs", params={"limit": 2})
    assert [j["name"] for j in page.json()] == ["alpha", "beta-2"]
    rest = client.get("/api/v1/jobs", params={"after": page.headers["X-Next-After"]}).json()
    assert [j["name"] for j in rest] == ["beta_1", "demo"]
    assert client.get("/api/v1/jobs", params={"q": "%"}).json() == []
    assert [j["name"] for j in client.get("/api/v1/jobs", params={"q": "a_"}).json()] == [
        "beta_1"]
    html = client.get("/jobs", params={"q": "beta"}).text
    assert 'data-job="beta_1"' in html and 'data-job="alpha"' not in html
    # A search box takes no case: "Beta" found both on SQLite (LIKE ignores ASCII case) and
    # none on PostgreSQL; names are lowercase, so both find them.
    assert [j["name"] for j in client.get("/api/v1/jobs", params={"q": "BeTa"}).json()] == [
        "beta-2", "beta_1"]


def test_out_of_range_input_is_a_client_error(client: Any, demo: tuple[Engine, int]) -> None:
    """Numbers past what a store column holds get the same 422 on SQLite and PostgreSQL
    (neither the driver's overflow nor a 404 from a query that could never match)."""
    _, run_id = demo
    for huge in ("9" * 25, str(2**63)):
        for method, url in (("GET", f"/api/v1/runs/{huge}"), ("GET", f"/runs/{huge}"),
                            ("POST", f"/api/v1/runs/{huge}/cancel"),
                            ("GET", f"/api/v1/runs/{huge}/tasks/extract/logs"),
                            ("GET", f"/runs/{huge}/tasks/extract"),
                            ("GET", f"/api/v1/runs?before={huge}"), ("GET", f"/runs?before={huge}"),
                            ("GET", f"/api/v1/stream?run={huge}"),
                            ("GET", f"/api/v1/stream?since={huge}"),
                            ("GET", f"/api/v1/runs/{run_id}/tasks/extract/logs?offset={huge}"),
                            ("GET", f"/api/v1/runs/{run_id}/tasks/items/logs?item={huge}"),
                            ("GET", f"/api/v1/runs/{run_id}/tasks/extract/logs?attempt={huge}"),
                            ("GET", f"/runs/{run_id}?after={huge}"),
                            ("GET", f"/runs/{run_id}/tasks/items?after={huge}"),
                            ("GET", f"/runs/{run_id}/tasks/items?item={huge}")):
            r = client.request(method, url)
            assert r.status_code == 422, (url, r.text)
            if url.startswith("/api/"):
                assert "less than or equal to 9223372036854775807" in r.json()["error"], url
    biggest = str(2**63 - 1)
    assert client.get(f"/api/v1/runs/{biggest}").json() == {"error": f"no run {biggest}",
                                                            "status": 404}
    assert client.get("/api/v1/runs", params={"before": biggest}).status_code == 200
    for after in ("9999-12-31T23:59+00:00", "0001-01-01T00:00+00:00", "0001-01-01"):
        r = client.get("/api/v1/jobs/demo/next", params={"after": after})
        assert r.status_code == 200, (after, r.text)


def test_dates_outside_the_calendar_are_refused(client: Any) -> None:
    for url in ("/api/v1/runs", "/runs"):
        for key in ("since", "until"):
            for value in ("0001-01-01", "9999-12-31T23:00", "0001-01-01T00:00+01:00"):
                r = client.get(url, params={key: value})
                assert r.status_code == 422, (url, key, value)
                if url.startswith("/api/"):
                    assert r.json()["error"] == (f"{key} expects a date between 1900-01-01 and"
                                                 f" 9998-12-31, got {value!r}")


def test_filters_are_checked(client: Any) -> None:
    r = client.get("/api/v1/runs", params={"trigger": "bogus"})
    assert r.status_code == 422 and r.json()["error"] == (
        "trigger must be one of manual, schedule, trigger, backfill, job, got 'bogus'")
    assert client.get("/runs", params={"trigger": "bogus"}).status_code == 422
    for trigger in ("manual", "backfill"):
        assert client.get("/api/v1/runs", params={"trigger": trigger}).status_code == 200
    r = client.get("/api/v1/runs", params={"job": "demp"})
    assert r.status_code == 404 and r.json()["error"] == (
        "no job named 'demp'; did you mean 'demo'?")


def test_unknown_body_keys_are_refused(client: Any, demo: tuple[Engine, int]) -> None:
    engine, run_id = demo
    before = len(client.get("/api/v1/runs").json())
    r = client.post("/api/v1/jobs/demo/runs", json={"parms": {"day": "2026-12-24"}})
    assert r.status_code == 422 and r.json()["error"] == (
        "unknown key 'parms' in the body (it takes: params); did you mean 'params'?")
    r = client.post("/api/v1/jobs/demo/runs", json={"params": {}, "detach": True, "x": 1})
    assert r.status_code == 422 and "'detach', 'x'" in r.json()["error"]
    assert len(client.get("/api/v1/runs").json()) == before  # nothing was started
    # The actions that take no body refuse one with keys, before they act.
    waiting = engine.create_run(engine.current_version("demo"))
    for url in (f"/api/v1/runs/{waiting}/cancel", f"/api/v1/runs/{waiting}/stop",
                f"/api/v1/runs/{run_id}/retry", f"/api/v1/runs/{run_id}/tasks/fail/retry",
                "/api/v1/jobs/demo/pause", "/api/v1/jobs/demo/schedules/nightly/pause"):
        r = client.post(url, json={"force": True})
        assert r.status_code == 422, url
        assert r.json()["error"] == "unknown key 'force' in the body (it takes none)", url
        assert client.post(url, content=b"[1]").status_code == 422
    assert engine.run_state(waiting) == "running"
    assert client.get("/api/v1/jobs/demo").json()["paused"] is False
    # No body, an empty one, {} and null are the same request.
    assert client.post(f"/api/v1/runs/{waiting}/stop", json={}).status_code == 200
    assert client.post("/api/v1/jobs/demo/pause", content=b"null").status_code == 200
    assert client.post("/api/v1/jobs/demo/resume").status_code == 200


def test_host_names_compare_without_case(engine: Engine) -> None:
    from fastapi.testclient import TestClient

    from taskplan.web.app import create_app

    with TestClient(create_app(engine, loopback_hosts_only=True)) as client:
        for host in ("LOCALHOST", "LocalHost:8440", "localhost", "127.0.0.1:80", "[::1]:80"):
            assert client.get("/api/v1/agents", headers={"Host": host}).status_code == 200, host
        for host in ("evil.example", "localhost.evil.example:80"):
            assert client.get("/api/v1/agents", headers={"Host": host}).status_code == 403, host


def test_trigger_waits_are_the_schedulers_rule(engine: Engine) -> None:
    from fastapi.testclient import TestClient

    from taskplan.spec import load_job_text
    from taskplan.web.app import create_app

    for text in ('job: up\ntasks:\n  t: {shell: "true"}\n',
                 'job: down\ntriggers:\n  - after: [up]\ntasks:\n  t: {shell: "true"}\n'):
        engine.apply(load_job_text(text, "job.yaml", "."))
    with TestClient(create_app(engine)) as client:
        [trig] = client.get("/api/v1/jobs/down").json()["triggers"]
        assert trig["waiting"] == ["up (no ended run)"] and trig["index"] == 0
        # The jobs page said "up (no ended run) (succeeded)": the status is what it waits for.
        row = client.get("/jobs").text.split('data-job="down"')[1].split("</tr>")[0]
        assert ("up (no ended run) <span class=\"muted\">(fires on a new succeeded run of"
                " each)</span>") in row


def test_one_schedule_is_disabled_and_enabled(client: Any) -> None:
    r = client.post("/api/v1/jobs/demo/schedules/nightly/pause")
    assert r.status_code == 200 and r.json() == {"job": "demo", "schedule": "nightly",
                                                 "paused": True, "changed": True}
    [sched] = client.get("/api/v1/jobs/demo").json()["schedules"]
    assert sched["paused"] is True
    assert client.post("/api/v1/jobs/demo/schedules/nope/pause").status_code == 404
    assert client.post("/api/v1/jobs/nope/schedules/nightly/pause").status_code == 404
    assert "Enable" in client.get("/jobs/demo").text
    r = client.post("/api/v1/jobs/demo/schedules/nightly/resume")
    assert r.json()["changed"] is True
    assert client.get("/api/v1/jobs/demo").json()["schedules"][0]["paused"] is False


def test_a_wrong_method_says_which_are_allowed(client: Any, demo: tuple[Engine, int]) -> None:
    """A 405 must name the methods the URL takes (RFC 9110); the error handler dropped the
    Allow header the router had set."""
    _, run_id = demo
    r = client.delete(f"/api/v1/runs/{run_id}")
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    assert r.json() == {"error": "Method Not Allowed", "status": 405}
    assert client.get(f"/api/v1/runs/{run_id}/cancel").headers["allow"] == "POST"


def test_a_schedule_named_with_a_slash_is_disabled_from_its_button(client: Any,
                                                                   engine: Engine) -> None:
    """A schedule's name is free text: the job page's Disable for `night/ly` posted
    .../schedules/night%2Fly/pause, which was a 404 'no such page' (the CLI takes it)."""
    import re
    from urllib.parse import unquote

    apply_text(engine, """
        job: slashed
        schedules:
          - cron: "0 3 * * *"
            name: "night/ly run?#1"
        tasks:
          t: {shell: "true"}
        """)
    [url] = re.findall(r'action="(/api/v1/jobs/slashed/schedules/[^"]*/pause)"',
                       client.get("/jobs/slashed").text)
    assert unquote(url) == "/api/v1/jobs/slashed/schedules/night/ly run?#1/pause"
    r = client.post(url)
    assert r.status_code == 200 and r.json() == {"job": "slashed", "schedule": "night/ly run?#1",
                                                 "paused": True, "changed": True}
    assert client.post(url.replace("/pause", "/resume")).json()["changed"] is True
    assert client.post("/api/v1/jobs/slashed/schedules/night%2Fly/pause").status_code == 404


def test_a_nul_character_in_a_name_or_value_is_refused(client: Any) -> None:
    """PostgreSQL's text holds no NUL: a name or filter with one was a 500 (plain text) there,
    'no job named' or every job on SQLite; on both it is a 422 naming it."""
    for url in ("/api/v1/jobs?q=%00", "/api/v1/jobs?after=a%00", "/api/v1/jobs/%00",
                "/api/v1/jobs/demo%00/next", "/api/v1/runs?job=demo%00",
                "/api/v1/runs/1/tasks/%00/logs"):
        r = client.get(url)
        assert r.status_code == 422, url
        assert "NUL" in r.json()["error"] and r.json()["status"] == 422
    for url in ("/api/v1/jobs/%00/pause", "/api/v1/jobs/%00/runs"):
        assert client.post(url).status_code == 422, url
    page = client.get("/jobs/%00")
    assert page.status_code == 422 and page.headers["content-type"].startswith("text/html")
    assert "NUL" in page.text
    assert client.get("/jobs?q=%00").status_code == 422
    assert client.get("/api/v1/jobs?q=%2500").status_code == 200  # the text "%00" is fine


def test_run_now_reads_its_body_as_json_whatever_its_content_type(client: Any) -> None:
    """`curl -d '{"params": ...}'` sends a form's Content-Type: the object was refused as
    'the body must be a JSON object'; text that is not JSON said 'body.1: JSON decode error'."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    made = client.post("/api/v1/jobs/demo/runs", content=b'{"params": {"note": "y"}}',
                       headers=form)
    assert made.status_code == 201
    run = client.get(f"/api/v1/runs/{made.json()['run_id']}").json()
    assert run["params"] == {"day": "2026-11-20", "note": "y"}
    for headers in (form, {"Content-Type": "application/json"}):
        r = client.post("/api/v1/jobs/demo/runs", content=b"{bad", headers=headers)
        assert r.status_code == 422
        assert r.json()["error"] == ("the body is not JSON: Expecting property name enclosed in"
                                     " double quotes: line 1 column 2 (char 1)")
    # NaN and Infinity are no JSON (Python's reader takes them): such a param was stored as
    # null without a word, where --param refuses it.
    for bad in (b'{"params": {"note": NaN}}', b'{"params": {"note": [-Infinity]}}'):
        r = client.post("/api/v1/jobs/demo/runs", content=bad)
        assert r.status_code == 422, bad
        assert r.json()["error"].startswith("the body is not JSON: ")
        assert "is not a JSON number" in r.json()["error"]
    r = client.post("/api/v1/jobs/demo/runs", content=b"\xff\xfe{", headers=form)
    assert r.status_code == 422 and r.json()["error"].startswith("the body is not JSON")
    body = client.get("/api/v1/openapi.json").json()["paths"]["/api/v1/jobs/{job}/runs"]["post"]
    assert "params" in body["requestBody"]["content"]["application/json"]["schema"]["properties"]


def test_an_unexpected_error_keeps_the_error_shape(engine: Engine) -> None:
    """A bug in a handler answered a bare text 'Internal Server Error'; it is the API's
    `{"error", "status"}` (a page for a browser) naming the error."""
    from fastapi.testclient import TestClient

    from taskplan.web.app import create_app

    app = create_app(engine)

    def boom() -> None:
        raise RuntimeError("something broke at postgresql://bob:secret@db/x")

    app.add_api_route("/api/v1/boom", boom)
    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/api/v1/boom")
        assert r.status_code == 500 and r.json() == {
            "error": "internal error: RuntimeError: something broke at"
                     " postgresql://bob:***@db/x (the server's log has the traceback)",
            "status": 500}
        page = c.get("/boom")
        assert page.status_code == 500 and page.headers["content-type"].startswith("text/html")
        assert "internal error: RuntimeError" in page.text and "secret" not in page.text


def test_a_name_filter_longer_than_any_name_finds_none(client: Any) -> None:
    """`q` past 50,000 bytes was a 500 on SQLite ("LIKE or GLOB pattern too complex"); no job
    name (at most 200 characters) contains a text longer than itself."""
    for q in ("d" * 201, "d" * 60_000):
        r = client.get("/api/v1/jobs", params={"q": q})
        assert r.status_code == 200 and r.json() == []
        assert client.get("/jobs", params={"q": q}).status_code == 200
    assert [j["name"] for j in client.get("/api/v1/jobs", params={"q": "dem"}).json()] == ["demo"]


def test_text_that_is_not_unicode_is_shown_escaped(engine: Engine, tmp_path: Any) -> None:
    """A lone surrogate (a file name os.listdir decoded from bytes that are not UTF-8, a JSON
    `\\ud800` in a param) made the run's API read, its page and the task page a 500 for good:
    the API escapes it as `status --json` does, the pages show it as `\\udce9`."""
    from fastapi.testclient import TestClient

    from taskplan.web.app import create_app

    (tmp_path / "names.py").write_text(
        "def listing(ctx):\n    return {'files': ['caf\\udce9.csv']}\n")
    version_id = apply_text(engine, """
        job: names
        params: {tag: "x"}
        tasks:
          ls:
            python: names:listing
        """, tmp_path)
    run_id = engine.create_run(version_id)
    assert run_to_end(engine, run_id) == "succeeded"
    with TestClient(create_app(engine)) as client:
        made = client.post("/api/v1/jobs/names/runs", content=b'{"params": {"tag": "\\ud800"}}')
        assert made.status_code == 201
        with engine.store.read() as tx:
            info = reports.run_info(tx, run_id)
            tasks = reports.task_runs(tx, run_id)
        assert info is not None
        r = client.get(f"/api/v1/runs/{run_id}")
        assert r.status_code == 200 and "\\udce9" in r.text
        assert r.json() == shapes.run_status(info, tasks)
        assert r.json()["tasks"][0]["result"]["files"] == ["caf\udce9.csv"]
        other = client.get(f"/api/v1/runs/{made.json()['run_id']}")
        assert other.status_code == 200 and other.json()["params"] == {"tag": "\ud800"}
        for url in (f"/runs/{run_id}/tasks/ls", f"/runs/{made.json()['run_id']}"):
            page = client.get(url)
            assert page.status_code == 200, url
        assert "caf\\udce9.csv" in client.get(f"/runs/{run_id}/tasks/ls").text
        assert "\\ud800" in client.get(f"/runs/{made.json()['run_id']}").text


def test_a_task_error_quoting_a_password_is_masked(engine: Engine, tmp_path: Any) -> None:
    """A Python task's exception naming a URL with its password was stored as it was: the run
    page masked it, but `GET /api/v1/runs/ID` (and `status --json`) showed it in clear."""
    from fastapi.testclient import TestClient

    from taskplan.web.app import create_app

    (tmp_path / "reach.py").write_text(
        "def connect(ctx):\n"
        "    raise RuntimeError('cannot reach postgresql://etl:hunter2@db/mart')\n")
    version_id = apply_text(engine, """
        job: reach
        tasks:
          c:
            python: reach:connect
        """, tmp_path)
    run_id = engine.create_run(version_id)
    assert run_to_end(engine, run_id) == "failed"
    with TestClient(create_app(engine)) as client:
        r = client.get(f"/api/v1/runs/{run_id}", params={"attempts": "true"})
        assert r.status_code == 200 and "hunter2" not in r.text
        task = r.json()["tasks"][0]
        assert task["error"] == "RuntimeError: cannot reach postgresql://etl:***@db/mart"
        assert task["attempt_list"][0]["error"] == task["error"]
        assert "hunter2" not in client.get(f"/runs/{run_id}").text


def test_a_param_holding_a_password_is_masked_as_the_run_page_does(engine: Engine,
                                                                   tmp_path: Any) -> None:
    """A run given a connection URL as a param: the run page masked its password, while
    `GET /api/v1/runs/ID` and `status` (text and --json) showed it in clear."""
    from click.testing import CliRunner
    from fastapi.testclient import TestClient

    from taskplan.cli.main import cli
    from taskplan.web.app import create_app

    version_id = apply_text(engine, """
        job: copy
        params: {src: "", hops: []}
        tasks:
          c: {shell: "true"}
        """, tmp_path)
    run_id = engine.create_run(version_id, {
        "src": "postgresql://etl:hunter2@db/mart",
        "hops": ["mysql://a:b3cret@h/x", {"via": "postgresql://u:p4ss@g/y"}]})
    with TestClient(create_app(engine)) as client:
        r = client.get(f"/api/v1/runs/{run_id}")
    assert r.status_code == 200
    assert r.json()["params"] == {"src": "postgresql://etl:***@db/mart",
                                  "hops": ["mysql://a:***@h/x", {"via": "postgresql://u:***@g/y"}]}
    for args in (["status", str(run_id)], ["status", str(run_id), "--json"]):
        out = CliRunner().invoke(cli, ["--db", engine.store.url, *args]).output
        assert "etl:***@db/mart" in out, out
        assert all(secret not in out for secret in ("hunter2", "b3cret", "p4ss")), out
