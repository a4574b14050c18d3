"""The console's pages in process: each renders, links resolve, hostile text stays text, and a
big foreach run is summarised and paged instead of listed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from web_helpers import HOSTILE, apply_text, run_to_end

from taskplan.engine import Engine
from taskplan.spec import load_definitions


def test_every_page_renders(client: Any, demo: tuple[Engine, int]) -> None:
    _, run_id = demo
    for url in ("/jobs", "/jobs/demo", "/runs", f"/runs/{run_id}", "/agents", "/calendar",
                "/api/docs",
                "/calendar?month=2026-03", f"/runs/{run_id}/tasks/extract",
                f"/runs/{run_id}/tasks/items", f"/runs/{run_id}/tasks/items?item=2",
                f"/runs/{run_id}/tasks/fail?attempt=1", "/runs?state=failed&job=demo",
                f"/runs/{run_id}?state=failed", "/login"):
        r = client.get(url)
        assert r.status_code == 200, url
        assert "<title>" in r.text
    assert client.get("/", follow_redirects=False).headers["location"] == "/jobs"


def test_page_errors(client: Any, demo: tuple[Engine, int]) -> None:
    _, run_id = demo
    for url, status in (("/runs/999", 404), ("/jobs/nope", 404), (f"/runs/{run_id}/tasks/no", 404),
                        (f"/runs/{run_id}/tasks/extract?attempt=5", 404), ("/nowhere", 404),
                        ("/calendar?month=13", 422), ("/calendar?month=0001-01", 422),
                        ("/calendar?month=9999-12", 422), ("/runs?state=nope", 422),
                        ("/runs/abc", 422), (f"/runs/{run_id}/tasks/items?state=bogus", 422),
                        (f"/runs/{run_id}/tasks/extract?item=0", 422),
                        ("/runs?since=0001-01-01", 422), ("/runs?trigger=bogus", 422)):
        r = client.get(url)
        assert r.status_code == status, url
        assert r.headers["content-type"].startswith("text/html")
    # The months whose days the runs page's dates take; past them, said so.
    r = client.get("/calendar?month=9999-12")
    assert "month expects YYYY-MM between 1900-01 and 9998-12, got &#39;9999-12&#39;" in r.text
    for month in ("1900-01", "9998-12"):
        assert client.get(f"/calendar?month={month}").status_code == 200, month


def test_run_page_draws_graph_gantt_and_reasons(client: Any, demo: tuple[Engine, int]) -> None:
    engine, run_id = demo
    html = client.get(f"/runs/{run_id}").text
    assert 'class="graph"' in html and 'class="gantt"' in html
    for task, state in (("extract", "succeeded"), ("fail", "failed"), ("load", "succeeded")):
        assert f'data-task="{task}" data-state="{state}"' in html
    assert "3 succeeded" in html  # the foreach group, counted
    assert "★ extract" in html  # critical path: extract -> items/fail -> load
    assert "exit code 3" in html
    # a run waiting on its upstreams says why
    waiting = engine.create_run(engine.current_version("demo"))
    html = client.get(f"/runs/{waiting}").text
    assert "waiting for upstreams: extract" in html
    engine.cancel_run(waiting)


def test_passwords_are_masked(client: Any, demo: tuple[Engine, int]) -> None:
    _, run_id = demo
    html = client.get(f"/runs/{run_id}/tasks/fail").text
    assert "bob:***@db" in html and "secret" not in html


def test_hostile_text_is_escaped(client: Any, engine: Engine) -> None:
    apply_text(engine, f"""
        job: hostile
        params: {{who: "{HOSTILE}"}}
        tasks:
          say:
            shell: "echo '{HOSTILE}'; exit 1"
        """)
    run_id = engine.create_run(engine.current_version("hostile"), {"who": HOSTILE})
    run_to_end(engine, run_id)
    for url in (f"/runs/{run_id}", f"/runs/{run_id}/tasks/say", "/jobs", "/jobs/hostile",
                "/runs"):
        html = client.get(url).text
        assert "<script>alert" not in html and "<img src=x" not in html, url
        assert "onerror=alert(2)&gt;" in html or url in ("/jobs", "/runs"), url
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get(f"/runs/{run_id}/tasks/say").text


def test_big_foreach_is_summarised_and_paged(client: Any, engine: Engine) -> None:
    values = ", ".join(str(i) for i in range(250))
    apply_text(engine, f"""
        job: wide
        tasks:
          many:
            foreach: {{values: [{values}]}}
            shell: "true"
        """)
    run_id = engine.create_run(engine.current_version("wide"))
    run_to_end(engine, run_id, timeout=120)
    html = client.get(f"/runs/{run_id}").text
    assert "250 succeeded" in html
    assert len(re.findall(r"<tr data-task=", html)) == 100  # one page of the table
    nxt = re.search(r'href="\?after=(\d+)"', html)
    assert nxt
    page2 = client.get(f"/runs/{run_id}?after={nxt[1]}").text
    assert len(re.findall(r"<tr data-task=", page2)) == 100
    items = client.get(f"/runs/{run_id}/tasks/many").text
    assert len(re.findall(r"<tr data-state=", items)) == 100
    # "Next 100" leads through every item once; the first page had no link (its group row,
    # read with its items, was counted as one of them).
    for state in ("", "succeeded"):
        seen: list[int] = []
        url: str | None = f"/runs/{run_id}/tasks/many?state={state}"
        while url:
            html = client.get(url).text
            seen += [int(i) for i in re.findall(r'<a href="\?item=(\d+)">', html)]
            more = re.search(r'href="\?((?:state=\w+&amp;)?after=\d+)">Next 100', html)
            url = f"/runs/{run_id}/tasks/many?{more[1].replace('&amp;', '&')}" if more else None
        assert seen == list(range(250)), state
    assert client.get(f"/runs/{run_id}/tasks/many?state=failed").text.count(
        "<tr data-state=") == 0


def test_two_foreach_tasks_are_counted_apart(client: Any, engine: Engine) -> None:
    apply_text(engine, """
        job: twofans
        tasks:
          odd:
            foreach: {values: [1, 3, 5]}
            shell: "true"
          even:
            foreach: {values: [2, 4]}
            shell: "exit {{ item - 2 }}"
        """)
    run_id = engine.create_run(engine.current_version("twofans"))
    run_to_end(engine, run_id)
    html = client.get(f"/runs/{run_id}").text
    assert "3 succeeded</text>" in html
    assert "1 succeeded · 1 failed</text>" in html
    assert "Task runs</dt><dd>5:" in html


def test_log_out_button_clears_the_session(demo: tuple[Engine, int]) -> None:
    """The top bar's Log out is a plain form: its CSRF token travels in the form's body (a
    form cannot set the header), and a form without it, or from another site, is refused."""
    from fastapi.testclient import TestClient

    from taskplan.web.app import create_app

    with TestClient(create_app(demo[0], token="s3cret-token"), follow_redirects=False) as c:
        assert c.post("/login", data={"token": "s3cret-token"}).status_code == 303
        page = c.get("/jobs")  # with the session cookie the login set
        form = re.search(r'<form method="post" action="/logout".*?</form>', page.text)
        assert form
        fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form[0]))
        origin = {"Origin": "http://testserver"}
        assert c.post("/logout", data={}, headers=origin).status_code == 403
        assert c.post("/logout", data=fields, headers={"Origin": "http://evil.example"}
                      ).status_code == 403
        out = c.post("/logout", data=fields, headers=origin)
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert 'taskplan_session=""' in out.headers["set-cookie"]


def test_a_button_pressed_without_javascript_says_so(client: Any) -> None:
    """With scripts off, a console button posts its plain form, without the CSRF token the
    script sends: the browser showed the raw JSON 'missing or wrong CSRF token (reload the
    page)', and reloading never helped. It now says the button needs JavaScript, as a page."""
    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://testserver",
            "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    for url in ("/api/v1/jobs/demo/pause", "/api/v1/jobs/demo/runs"):
        r = client.post(url, content=b"", headers=form)
        assert r.status_code == 403 and r.headers["content-type"].startswith("text/html"), url
        assert "this button needs JavaScript" in r.text
    assert client.get("/api/v1/jobs/demo").json()["paused"] is False
    # A script's call without its token is still told about the token, in JSON.
    r = client.post("/api/v1/jobs/demo/pause", json={}, headers={"Origin": "http://testserver"})
    assert r.status_code == 403 and "CSRF token" in r.json()["error"]


def test_log_out_shows_only_to_a_logged_in_browser(demo: tuple[Engine, int]) -> None:
    """The login page (and the 401 after a wrong token) showed Log out to a browser not logged
    in; pressing it answered a JSON 401 'a token is required'."""
    from fastapi.testclient import TestClient

    from taskplan.web.app import create_app

    with TestClient(create_app(demo[0], token="s3cret-token"), follow_redirects=False) as c:
        for page in (c.get("/login?next=/jobs"), c.post("/login", data={"token": "nope"})):
            assert "Log in</h1>" in page.text and 'action="/logout"' not in page.text
        assert c.post("/login", data={"token": "s3cret-token"}).status_code == 303
        assert 'action="/logout"' in c.get("/jobs").text
        c.cookies.clear()
        assert 'action="/logout"' not in c.get(
            "/jobs", headers={"Authorization": "Bearer s3cret-token"}).text


def test_jobs_page_says_what_its_filter_left_out(client: Any) -> None:
    """A filter matching no job said 'No jobs yet: taskplan apply JOB.yaml' on a store full of
    them; a schedule paused on its own looked like one that fires."""
    html = client.get("/jobs", params={"q": "nothing<b>"}).text
    assert "No jobs yet" not in html and "No job whose name contains “nothing&lt;b&gt;”" in html
    assert "No job after “zzz”" in client.get("/jobs", params={"after": "zzz"}).text
    assert client.post("/api/v1/jobs/demo/schedules/nightly/pause").status_code == 200
    row = re.search(r'<tr data-job="demo">.*?</tr>', client.get("/jobs").text, re.S)
    assert row and 'nightly: cron 0 2 * * * <span class="state st-paused">paused</span>' in row[0]


def test_calendar_covers_the_month_of_a_frequent_schedule(client: Any, engine: Engine) -> None:
    """A job firing every minute showed its first 400 firings (January 1st, counted 400) and
    nothing on the other days of the month; each day now shows its own, counted."""
    apply_text(engine, """
        job: often
        schedules:
          - every: 1m
        tasks:
          a: {shell: "true"}
        """)
    apply_text(engine, """
        job: sixhourly
        schedules:
          - cron: "0 */6 * * *"
        tasks:
          a: {shell: "true"}
        """)
    html = client.get("/calendar", params={"month": "2030-01"}).text
    days = re.findall(r'<td class="[^"]*" data-day="(2030-01-\d\d)">(.*?)</td>', html, re.S)
    assert len(days) == 31
    for day, cell in days:
        assert "often</a> \N{MULTIPLICATION SIGN}100+ from 00:00" in cell, day
        assert "sixhourly</a> \N{MULTIPLICATION SIGN}4 from 00:00" in cell, day


def test_a_deleted_jobs_page_says_it_was_deleted(client: Any, demo: tuple[Engine, int]) -> None:
    """A run of a deleted job links to the job's page, which said "no job named 'demo'
    (taskplan jobs lists them)" beside the run it had made."""
    engine, run_id = demo
    engine.delete_job("demo")
    assert 'href="/jobs/demo"' in client.get(f"/runs/{run_id}").text
    page = client.get("/jobs/demo")
    assert page.status_code == 404
    said = ("job &#39;demo&#39; was deleted (its runs are kept: /runs?job=demo); apply it"
            " again to bring it back")
    assert said in page.text
    r = client.get("/api/v1/jobs/demo")
    assert r.status_code == 404 and r.json()["error"].startswith("job 'demo' was deleted")
    assert client.get("/api/v1/jobs/nope").json()["error"].startswith("no job named 'nope'")


def test_runs_page_names_a_misspelt_job(client: Any, demo: tuple[Engine, int]) -> None:
    """The API answers a job filter never applied with the CLI's "did you mean"; the page
    said only "No runs."."""
    html = client.get("/runs", params={"job": "dmeo"}).text
    assert "No runs: no job named &#39;dmeo&#39;; did you mean &#39;demo&#39;?<" in html
    assert 'value="dmeo"' in html  # the filter form stays, to correct it
    assert "No runs.<" in client.get("/runs", params={"job": "demo", "state": "queued"}).text


def test_calendar_marks_a_paused_jobs_firings(client: Any) -> None:
    """The jobs page gives a paused job no next firing; the calendar showed its firings as
    any other's, as if they would make runs."""
    assert "demo</a> 02:00</div>" in client.get("/calendar", params={"month": "2030-01"}).text
    assert client.post("/api/v1/jobs/demo/pause").status_code == 200
    html = client.get("/calendar", params={"month": "2030-01"}).text
    assert '<div class="firing muted"><a href="/jobs/demo">demo</a> 02:00 (paused)</div>' in html
    assert "demo</a> 02:00</div>" not in html


def test_gantt_rows_past_the_first_200_ids_have_their_bars(client: Any, engine: Engine) -> None:
    """The Gantt draws the first 200 rows by start, but read the attempts of the first 200
    task runs by id: rows of task runs that started early with later ids had no bar."""
    after = [f", depends_on: [a{i - 1:03d}]" if i else "" for i in range(200)]
    chain = "\n".join(f'  a{i:03d}: {{shell: "true"{after[i]}}}' for i in range(200))
    roots = "\n".join(f'  z{i}: {{shell: "true"}}' for i in range(5))
    apply_text(engine, f"job: tall\ntasks:\n{chain}\n{roots}\n")
    run_id = engine.create_run(engine.current_version("tall"))
    assert run_to_end(engine, run_id, timeout=120) == "succeeded"
    html = client.get(f"/runs/{run_id}").text
    gantt = html.split('class="gantt"')[1].split("</svg>")[0]
    rows = re.findall(r'<g class="row[^"]*" data-task="(\w+)">(.*?)</g>', gantt, re.S)
    assert len(rows) == 200
    bare = [name for name, row in rows if "<rect" not in row]
    assert bare == [], bare
    assert {"z0", "z4"} <= {name for name, _ in rows}


def test_a_retrying_task_shows_its_error_and_its_retry_time(client: Any, engine: Engine) -> None:
    """The task table showed a retrying task's last error and hid why it waits (its retry's
    due time): the reason was shown only for a task without an error."""
    from taskplan.agent import Agent
    from taskplan.store import reports

    apply_text(engine, """
        job: again
        tasks:
          r: {shell: "exit 1", retries: 2, retry_delay: 1h}
        """)
    run_id = engine.create_run(engine.current_version("again"))

    def retrying(_: Agent) -> bool:
        with engine.store.read() as tx:
            return [t.state for t in reports.task_runs(tx, run_id)] == ["retrying"]

    Agent(engine, slots=1, root_run_id=run_id, lease=30.0).run(until=retrying)
    row = re.search(r'<tr data-task="r" data-state="retrying">.*?</tr>',
                    client.get(f"/runs/{run_id}").text, re.S)
    assert row and '<span class="error-text">exit code 1</span>' in row[0]
    assert '<span class="why">retry at ' in row[0]
    engine.cancel_run(run_id)


def test_head_answers_as_get_without_a_body(client: Any, demo: tuple[Engine, int]) -> None:
    """HEAD (a monitor's check, curl -I) was a 405 on every page, the API and /metrics."""
    _, run_id = demo
    for url in ("/jobs", f"/runs/{run_id}", "/api/v1/runs", "/metrics", "/static/console.js"):
        got, head = client.get(url), client.head(url)
        assert head.status_code == got.status_code == 200, url
        assert head.headers["content-type"] == got.headers["content-type"], url
        assert head.content == b"", url
    assert client.head("/runs/999").status_code == 404


def test_a_failed_foreach_task_page_has_its_retry_button(client: Any, engine: Engine) -> None:
    """A foreach task's page listed its items but had no Retry this task (a task of another
    kind had it): a failed item could be retried from the run page only."""
    version_id = apply_text(engine, """
        job: each_fails
        tasks:
          each:
            foreach: {values: [1, 2, 3]}
            shell: test {{ item }} -ne 2
        """)
    run_id = engine.create_run(version_id)
    assert run_to_end(engine, run_id) == "failed"
    action = f'action="/api/v1/runs/{run_id}/tasks/each/retry"'
    assert action in client.get(f"/runs/{run_id}").text
    page = client.get(f"/runs/{run_id}/tasks/each").text
    assert action in page and "Retry this task" in page
    # An item's page shows the item; the retry is the task's, on the task's page.
    assert action not in client.get(f"/runs/{run_id}/tasks/each?item=1").text
    retried = client.post(f"/api/v1/runs/{run_id}/tasks/each/retry").json()
    assert retried["reset"] == 2  # the group and its failed item


def test_a_long_trickle_of_output_is_shown_to_its_end(client: Any, engine: Engine) -> None:
    """The agent stores a chunk at most every 0.25 s: a task printing a line a second for two
    hours leaves ~7,200 chunks. The task page read the first 5,000 and stopped there without
    a word, the end (where the error is) missing; it shows the whole stored output."""
    from taskplan.store import console, ops

    version_id = apply_text(engine, """
        job: trickle
        tasks:
          t: {shell: echo first}
        """)
    run_id = engine.create_run(version_id)
    assert run_to_end(engine, run_id) == "succeeded"
    with engine.store.read() as tx:
        tr = console.task_run_by_name(tx, run_id, "t", None)
    assert tr is not None
    with engine.store.tx() as tx:
        for seq in range(1, 7200):
            ops.append_log(tx, tr.id, 1, seq, f"progress {seq}\n", 0, False)
    page = client.get(f"/runs/{run_id}/tasks/t").text
    assert "first\nprogress 1\n" in page and "progress 7199\n" in page


def test_agents_page_links_every_agents_running_task_runs(client: Any, engine: Engine) -> None:
    """The page read the first 500 running task runs of all agents, in agent order: past
    them, an agent's `14/16` slots used came with no link to what it ran."""
    version_id = apply_text(engine, "job: wide\ntasks:\n" + "".join(
        f"  t{i}: {{shell: 'true'}}\n" for i in range(520)))
    engine.create_run(version_id)
    first = engine.register_agent("first", "h1", 1, 510, 600.0)
    second = engine.register_agent("second", "h2", 2, 16, 600.0)
    claimed = 0
    while claimed < 510:
        claimed += len(engine.step(first, [], 510 - claimed).claims)
    assert len(engine.step(second, [], 10).claims) == 10
    page = client.get("/agents").text
    row = page[page.index('data-agent="second"'):]
    row = row[:row.index("</tr>")]
    assert "10/16" in row and row.count('href="/runs/') == 10
    first_row = page[page.index('data-agent="first"'):]
    first_row = first_row[:first_row.index("</tr>")]
    # A busy agent lists its first 20 and says how many more it runs.
    assert first_row.count('href="/runs/') == 20 and "490 more" in first_row


def test_job_page_gives_a_business_calendars_skips_their_reason(client: Any, engine: Engine,
                                                                tmp_path: Path) -> None:
    """A schedule on a business calendar: the job page listed its weekend firings among the
    next firings as if they would run (the API and `taskplan next` say they are skipped)."""
    (tmp_path / "cal.yaml").write_text("calendar: office\nholidays: []\n")
    (tmp_path / "job.yaml").write_text(
        "job: weekdays\ntimezone: UTC\nschedules:\n  - at: '02:30'\n    calendar: office\n"
        "tasks:\n  a: {shell: 'true'}\n")
    found = load_definitions([tmp_path / "cal.yaml", tmp_path / "job.yaml"])
    for cal in found.calendars:
        engine.apply_calendar(cal)
    for job in found.jobs:
        engine.apply(job)
    listed = client.get("/api/v1/jobs/weekdays/next").json()
    skipped = [f for f in listed if f.get("skipped")]
    assert skipped and len(listed) - len(skipped) == 10
    section = client.get("/jobs/weekdays").text.split("<h2>Next firings")[1].split("</ul>")[0]
    items = re.findall(r"<li[^>]*>([^<]+?) <span class=\"muted\">(.*?)</span></li>", section)
    assert len(items) == len(listed)
    for (at, text), f in zip(items, listed, strict=True):
        assert at == (f["at"][:16].replace("T", " ") if f.get("skipped") else f["at"])
        if f.get("skipped"):
            assert text == f"skipped: {f['skipped']} (schedule {f['schedule']})", text
        else:
            assert text == f"schedule {f['schedule']}", text


def test_a_runs_deadline_shows_on_its_page_and_in_the_runs_list(engine: Engine,
                                                                client: Any) -> None:
    """`taskplan status RUN` says `deadline: 06:00 at_risk` and `taskplan runs` has a DEADLINE
    column, but the console showed a run's deadline nowhere: an operator watching a late run
    in the browser could not see it would miss, or had missed, its deadline."""
    version_id = apply_text(engine, "job: due\ndeadline: {within: 1s, of: start}\n"
                                    "tasks:\n  t: {shell: 'sleep 1.5'}\n")
    run_id = engine.create_run(version_id)
    assert run_to_end(engine, run_id) == "succeeded"
    status = client.get(f"/api/v1/runs/{run_id}").json()
    assert status["deadline"]["state"] == "missed"
    page = client.get(f"/runs/{run_id}").text
    assert re.search(r"<dt>Deadline</dt><dd[^>]*>[^<]*missed", page), page
    listed = client.get("/runs?job=due").text
    assert "<th>Deadline</th>" in listed
    assert re.search(rf'<tr data-run="{run_id}">.*missed', listed)
    # A run of a job without a deadline has none to show.
    assert "<dt>Deadline</dt>" not in client.get("/runs/1").text


def test_an_agent_whose_clock_is_ahead_is_heard_from_0s_ago(client: Any, engine: Engine) -> None:
    """An agent on a machine whose clock runs ahead of the console's was shown `-5s ago`."""
    import time

    from taskplan.store import ops

    agent = engine.register_agent("ahead", "h2", 1, 2, 600.0)
    with engine.store.tx() as tx:
        ops.heartbeat(tx, agent, time.time() + 5, 600.0, None)
    page = client.get("/agents").text
    row = page[page.index('data-agent="ahead"'):]
    row = row[:row.index("</tr>")]
    assert "<td>0s ago</td>" in row, row


def test_older_runs_link_follows_the_live_list(client: Any, demo: tuple[Engine, int]) -> None:
    """The runs page's 'Older runs' link sat outside the part a live change swaps: runs that
    new ones pushed off the first page were skipped by its stale before=, or (the list having
    had no second page) could not be reached at all until reloaded."""
    engine, run_id = demo
    assert "Older runs" not in client.get("/runs").text  # one run: no second page yet
    ids = [engine.create_run(engine.run_meta(run_id).version_id) for _ in range(55)]
    page = client.get("/runs").text
    live = page[page.index("<div data-live"):]
    live = live[:live.index("</div>")]
    assert f'before={ids[-50]}">Older runs' in live
    # Runs going on: their times grow with no event, the page says to fetch it again.
    assert 'data-every="5"' in page
    assert 'data-every' not in client.get(f"/runs?before={ids[0]}").text


def test_no_retry_button_that_can_only_be_refused(engine: Engine, client: Any) -> None:
    """The run page offered Retry on a task skipped (its trigger rule unmet) in a run that
    succeeded, where retry is always refused ('run 2 already succeeded, nothing to retry',
    as `taskplan retry` says); the task page rightly offered none."""
    version_id = apply_text(engine, "job: sk\ntasks:\n  a: {shell: 'true'}\n"
                                    "  b: {shell: 'true', depends_on: [a], trigger: one_failed}\n")
    run_id = engine.create_run(version_id)
    assert run_to_end(engine, run_id) == "succeeded"
    assert client.post(f"/api/v1/runs/{run_id}/tasks/b/retry").status_code == 409
    page = client.get(f"/runs/{run_id}").text
    row = re.search(r'<tr data-task="b" data-state="skipped">.*?</tr>', page, re.S)
    assert row is not None and "/retry" not in row.group(0)


def test_a_sub_job_task_is_of_kind_job_as_status_says(engine: Engine, client: Any) -> None:
    """`taskplan status RUN` (and the API) call a task that runs another job `job`; the run
    page's table and the task page said `task`."""
    apply_text(engine, "job: leaf\ntasks:\n  x: {shell: 'true'}\n")
    version_id = apply_text(engine, "job: tree\ntasks:\n  sub: {job: leaf}\n")
    run_id = engine.create_run(version_id)
    kinds = {t["name"]: t["kind"] for t in client.get(f"/api/v1/runs/{run_id}").json()["tasks"]}
    assert kinds == {"sub": "job"}
    row = re.search(r'<tr data-task="sub".*?</tr>', client.get(f"/runs/{run_id}").text, re.S)
    assert row is not None and "<td>job</td>" in row.group(0)
    assert "<dt>Kind</dt><dd>job" in client.get(f"/runs/{run_id}/tasks/sub").text


def test_schedules_on_a_business_calendar_say_so_in_words(client: Any, engine: Engine,
                                                          tmp_path: Path) -> None:
    """The jobs and job pages described `business_day: 3` at 07:00 as `calendar at 07:00`
    (every day at 07:00), and never named the business calendar or the shift."""
    (tmp_path / "cal.yaml").write_text("calendar: office\nholidays: []\n")
    (tmp_path / "job.yaml").write_text(
        "job: books\ntimezone: UTC\nschedules:\n"
        "  - {name: daily, at: '06:00', calendar: office}\n"
        "  - {name: mid, monthdays: [15], at: '09:00', calendar: office, shift: next}\n"
        "  - {name: close, business_day: 3, at: '07:00', calendar: office}\n"
        "  - {name: month_end, business_day: -1, at: '18:00', calendar: office}\n"
        "  - {name: plain, at: '05:00'}\n"
        "  - {name: cron, cron: '0 4 * * *', calendar: office, shift: previous}\n"
        "  - {name: hourly, every: 1h, calendar: office}\n"
        "tasks:\n  a: {shell: 'true'}\n")
    found = load_definitions([tmp_path / "cal.yaml", tmp_path / "job.yaml"])
    for cal in found.calendars:
        engine.apply_calendar(cal)
    for job in found.jobs:
        engine.apply(job)
    texts = [s["text"] for s in client.get("/api/v1/jobs/books").json()["schedules"]]
    assert texts == [
        "daily: calendar at 06:00, on office's business days",
        "mid: calendar at 09:00 days 15, on office's business days (a closed day's firing"
        " moves to the next business day)",
        "close: business day 3 of each month at 07:00 (calendar office)",
        "month_end: last business day of each month at 18:00 (calendar office)",
        "plain: calendar at 05:00",
        "cron: cron 0 4 * * *, on office's business days (a closed day's firing moves to the"
        " previous business day)",
        "hourly: every 1h, on office's business days",
    ], texts
    assert "close: business day 3 of each month at 07:00" in client.get("/jobs").text
