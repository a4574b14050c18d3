"""The console in a real browser (Playwright driving the system's Chromium) against
`taskplan serve --port`: every page opens, a run starts from the params form, a running task
changes state on the page without a reload, retry on a failed task makes the run succeed, and
hostile output shows as text without running. Screenshots of each page are kept in the test's
tmp folder (the artefacts)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web_helpers import HOSTILE, TASKPLAN, Server, clean_env, wait_until

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("chromium") is None and not Path(CHROMIUM).exists(),
                                 reason="needs Chromium (.ci/run installs it)")]


def job_text(home: Path) -> str:
    return f"""
job: browser
params: {{label: "first"}}
tasks:
  gate:
    shell: "while [ ! -f {home}/go ]; do sleep 0.05; done; echo gate open for {{{{params.label}}}}"
  flaky:
    shell: "echo '{HOSTILE}'; test -f {home}/fixed"
    depends_on: [gate]
  after:
    shell: echo after
    depends_on: [flaky]
"""


# Params of every JSON kind: the run now form must hand them back as they are.
TYPED = """
job: typed
params: {n: 5, flags: {a: 1}, name: "x", on: true}
tasks:
  t:
    shell: >-
      echo n={{ params.n + 1 }} a={{ params.flags.a }} name={{ params.name }}
      on={{ params.on }}
"""


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([TASKPLAN, *args], cwd=home,
                          env=clean_env(f"sqlite:///{home / 'taskplan.db'}"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def console(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    db = f"sqlite:///{tmp_path / 'taskplan.db'}"
    (tmp_path / "browser.yaml").write_text(job_text(tmp_path))
    (tmp_path / "typed.yaml").write_text(TYPED)
    cli(tmp_path, "apply", "browser.yaml", "typed.yaml")
    server = Server(["serve", "--slots", "2"], db, tmp_path)
    try:
        yield server, tmp_path
    finally:
        server.stop()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        pg = context.new_page()
        pg.set_default_timeout(20_000)
        pg.dialogs = []  # type: ignore[attr-defined]
        pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))  # type: ignore[attr-defined]
        try:
            yield pg
        finally:
            context.close()
            browser.close()


def shot(pg: Any, folder: Path, name: str) -> None:
    pg.screenshot(path=str(folder / "screenshots" / f"{name}.png"), full_page=True)


def test_console_in_a_browser(console: tuple[Server, Path], page: Any, tmp_path: Path) -> None:
    server, home = console
    pg = page
    (tmp_path / "screenshots").mkdir()
    # Jobs -> job page -> run now with a param from the form.
    pg.goto(server.base + "/jobs")
    pg.click("text=browser")
    assert pg.url.endswith("/jobs/browser")
    shot(pg, tmp_path, "job")
    pg.fill("input[name=label]", "from the form")
    pg.click("form.runform button")
    pg.wait_for_url("**/runs/1")
    run = server.http.get("/api/v1/runs/1").json()
    assert run["params"] == {"label": "from the form"}

    # The gate task runs; opening the gate turns it green on this very page (no reload).
    pg.wait_for_selector('g.node[data-task="gate"][data-state="running"]')
    pg.evaluate("window.notReloaded = true")
    (home / "go").write_text("")
    pg.wait_for_selector('g.node[data-task="gate"][data-state="succeeded"]')
    pg.wait_for_selector('#run-state[data-state="failed"]')
    assert pg.evaluate("window.notReloaded") is True
    pg.wait_for_selector('tr[data-task="flaky"][data-state="failed"]')
    shot(pg, tmp_path, "run_failed")

    # Retry the failed task from its row: the run ends succeeded, again without a reload.
    (home / "fixed").write_text("")
    pg.click('tr[data-task="flaky"] form.action button')
    pg.wait_for_selector('#run-state[data-state="succeeded"]')
    assert pg.evaluate("window.notReloaded") is True
    assert pg.locator("#flash").inner_text().startswith("run 1")
    shot(pg, tmp_path, "run")

    # The task page shows the hostile output as text; nothing ran.
    pg.goto(server.base + "/runs/1/tasks/flaky?attempt=1")
    assert HOSTILE in pg.locator("#output").inner_text()
    pg.goto(server.base + "/runs/1/tasks/gate")
    assert "gate open for from the form" in pg.locator("#output").inner_text()
    shot(pg, tmp_path, "task")
    for name in ("runs", "agents", "calendar", "jobs"):
        pg.goto(f"{server.base}/{name}")
        assert pg.locator("main h1").count() == 1
        shot(pg, tmp_path, name)
    assert pg.dialogs == []  # type: ignore[attr-defined]
    assert len(list((tmp_path / "screenshots").glob("*.png"))) == 8


def test_hostile_names_and_params_stay_text(console: tuple[Server, Path], page: Any) -> None:
    server, _ = console
    made = server.http.post("/api/v1/jobs/browser/runs", json={"params": {"label": HOSTILE}})
    run_id = made.json()["run_id"]
    page.goto(f"{server.base}/runs/{run_id}")
    assert HOSTILE in page.locator("dl.header").inner_text()
    page.goto(f"{server.base}/runs?job={HOSTILE}")
    assert page.locator("input[name=job]").input_value() == HOSTILE
    page.goto(f"{server.base}/jobs/{HOSTILE}")
    assert HOSTILE in page.locator(".error-text").inner_text()
    assert page.dialogs == []  # type: ignore[attr-defined]
    server.http.post(f"/api/v1/runs/{run_id}/cancel")


def test_run_now_keeps_param_types(console: tuple[Server, Path], page: Any) -> None:
    """An untouched form starts the run `taskplan run JOB` starts; a number typed into a
    field whose default is a number stays a number; what is not JSON there is refused."""
    server, home = console

    def finished(run_id: int) -> dict[str, Any]:
        def ended() -> bool:
            state = server.http.get(f"/api/v1/runs/{run_id}").json()["state"]
            return state not in ("queued", "running", "stopping")

        wait_until(ended, 60.0, f"run {run_id} to end")
        status: dict[str, Any] = server.http.get(f"/api/v1/runs/{run_id}").json()
        status["output"] = server.http.get(f"/api/v1/runs/{run_id}/tasks/t/logs").json()["data"]
        return status

    by_cli = finished(int(cli(home, "run", "typed", "--detach").stdout))
    assert by_cli["state"] == "succeeded", by_cli
    page.goto(server.base + "/jobs/typed")
    shown = {name: page.locator(f"input[name={name}]").input_value()
             for name in ("n", "flags", "name", "on")}
    assert shown == {"n": "5", "flags": '{"a": 1}', "name": "x", "on": "true"}
    page.click("form.runform button")
    page.wait_for_url("**/runs/2")
    untouched = finished(2)
    assert untouched["state"] == "succeeded"
    assert untouched["params"] == by_cli["params"] and untouched["output"] == by_cli["output"]
    assert untouched["output"].strip() == "n=6 a=1 name=x on=true"

    page.goto(server.base + "/jobs/typed")
    page.fill("input[name=n]", " 41 ")
    page.fill("input[name=name]", "42")  # text stays text, as --param name=42 gives it
    page.fill("input[name=flags]", '{"a": [1, 2]}')
    page.click("form.runform button")
    page.wait_for_url("**/runs/3")
    typed = finished(3)
    assert typed["params"] == {"n": 41, "name": "42", "flags": {"a": [1, 2]}, "on": True}
    assert typed["output"].strip() == "n=42 a=[1,2] name=42 on=true"

    page.goto(server.base + "/jobs/typed")
    page.fill("input[name=flags]", "{a: 2")
    page.click("form.runform button")
    flash = page.locator("#flash .bad")
    flash.wait_for()
    assert flash.inner_text() == ('param flags expects JSON, as its default {"a": 1} is,'
                                  " got {a: 2")
    assert page.url.endswith("/jobs/typed")
    assert [r["run_id"] for r in server.http.get("/api/v1/runs").json()] == [3, 2, 1]
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_long_names_wrap_inside_the_window(console: tuple[Server, Path], page: Any) -> None:
    """A 200-character job or task name (the most the store keeps) and a long description
    wrap: they used to widen every page showing them past the window, pushing the other
    columns (state, versions, buttons) out of sight."""
    server, home = console
    job, task = "j" + "x" * 199, "t" * 200
    # A schedule's name too: the jobs page's schedule column ran 1,600 pixels wide.
    (home / "long.yaml").write_text(f"job: {job}\ndescription: {'d' * 2000}\n"
                                    f"schedules:\n  - cron: '0 3 * * *'\n    name: {'s' * 150}\n"
                                    f"tasks:\n  {task}:\n    shell: echo {'o' * 3000}\n")
    cli(home, "apply", "long.yaml")
    run_id = server.http.post(f"/api/v1/jobs/{job}/runs").json()["run_id"]
    wait_until(lambda: server.http.get(f"/api/v1/runs/{run_id}").json()["state"] == "succeeded",
               60.0, "the long run to end")
    for url in ("/jobs", f"/jobs/{job}", "/calendar", "/runs", f"/runs?job={job}",
                f"/runs/{run_id}", f"/runs/{run_id}/tasks/{task}"):
        page.goto(server.base + url)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1280, (url[:40], width)
    page.goto(server.base + "/jobs")
    assert page.locator("tr", has_text=job).locator("button").is_visible()


def test_run_now_sends_a_param_named_like_an_object_key(console: tuple[Server, Path],
                                                        page: Any) -> None:
    """A param named __proto__ typed in the form was dropped (assigning it to a plain object
    set the prototype): the run started with its default."""
    server, home = console
    (home / "proto.yaml").write_text('job: proto\nparams: {"__proto__": "a", "constructor": "b"}\n'
                                     'tasks:\n  t: {shell: "true"}\n')
    cli(home, "apply", "proto.yaml")
    page.goto(server.base + "/jobs/proto")
    page.fill('input[name="__proto__"]', "typed")
    page.fill('input[name="constructor"]', "typed too")
    page.click("form.runform button")
    page.wait_for_url("**/runs/*")
    run_id = int(page.url.rsplit("/", 1)[1])
    params = server.http.get(f"/api/v1/runs/{run_id}").json()["params"]
    assert params == {"__proto__": "typed", "constructor": "typed too"}


def test_task_page_opened_before_the_task_starts_shows_its_output(
        console: tuple[Server, Path], page: Any) -> None:
    """The output was drawn with the page only: a task page opened while the task waited
    never showed it (nor a retry's) until reloaded. It appears when the attempt starts, and a
    new attempt's replaces it."""
    server, home = console
    run_id = server.http.post("/api/v1/jobs/browser/runs").json()["run_id"]
    page.goto(f"{server.base}/runs/{run_id}/tasks/flaky")
    page.wait_for_selector('#task-state[data-state="pending"]')
    assert page.locator("#output").count() == 0
    page.evaluate("window.notReloaded = true")
    (home / "go").write_text("")
    page.wait_for_selector('#task-state[data-state="failed"]')
    page.wait_for_selector("#output")
    assert page.locator("#output-live h2").inner_text() == "Output of attempt 1"
    assert page.locator("#output").inner_text().count(HOSTILE) == 1
    (home / "fixed").write_text("")
    assert server.http.post(f"/api/v1/runs/{run_id}/tasks/flaky/retry").status_code == 200
    page.wait_for_selector('#task-state[data-state="succeeded"]')
    page.locator("#output-live h2", has_text="Output of attempt 2").wait_for()
    assert page.locator("#output").inner_text().count(HOSTILE) == 1
    assert page.evaluate("window.notReloaded") is True


def test_pause_and_resume_show_on_the_page_they_were_clicked_on(
        console: tuple[Server, Path], page: Any) -> None:
    """Disable schedules (of the job, or of one schedule) said 'paused' in the flash but the
    page kept its Disable button and no paused mark until reloaded; the jobs page's
    Enable/Disable too. The parts an action changes are now fetched again after it."""
    server, home = console
    (home / "sched.yaml").write_text('job: sched\nschedules:\n  - at: "06:00"\n'
                                     '  - at: "18:00"\ntasks:\n  t: {shell: "true"}\n')
    cli(home, "apply", "sched.yaml")
    page.goto(server.base + "/jobs/sched")
    page.evaluate("window.notReloaded = true")
    page.click("button:has-text('Disable schedules')")
    page.locator("h1 .st-paused").wait_for()
    page.click("button:has-text('Enable schedules')")
    page.locator("button:has-text('Disable schedules')").wait_for()
    assert page.locator("h1 .st-paused").count() == 0
    page.locator("li", has_text="06:00").locator("button:has-text('Disable')").click()
    page.locator("li", has_text="06:00").locator(".st-paused").wait_for()
    page.locator("li", has_text="06:00").locator("button:has-text('Enable')").wait_for()
    assert page.locator("li", has_text="18:00").locator(".st-paused").count() == 0
    assert page.evaluate("window.notReloaded") is True
    jobs = server.http.get("/api/v1/jobs/sched").json()
    assert jobs["paused"] is False and [s["paused"] for s in jobs["schedules"]] == [True, False]

    page.goto(server.base + "/jobs")
    page.evaluate("window.notReloaded = true")
    row = page.locator('tr[data-job="sched"]')
    row.locator("button:has-text('Disable')").click()
    row.locator("button:has-text('Enable')").wait_for()
    assert row.locator("td").first.locator(".st-paused").count() == 1
    assert page.evaluate("window.notReloaded") is True
    assert server.http.get("/api/v1/jobs/sched").json()["paused"] is True


def test_a_refused_event_stream_is_opened_again(console: tuple[Server, Path], page: Any) -> None:
    """A stream answered with an error (a 503 while the store is unreachable, as when the
    browser reopens it after a restart of the server) made the browser give up on it for
    good: the page never changed again. The script opens it again."""
    server, home = console
    run_id = server.http.post("/api/v1/jobs/browser/runs").json()["run_id"]
    refused: list[str] = []

    def unreachable(route: Any) -> None:
        refused.append(route.request.url)
        route.fulfill(status=503, content_type="application/json",
                      body='{"error": "cannot reach the store", "status": 503}')

    def gate_running() -> bool:
        tasks = server.http.get(f"/api/v1/runs/{run_id}").json()["tasks"]
        return any(t["name"] == "gate" and t["state"] == "running" for t in tasks)

    wait_until(gate_running, 60.0, "the gate to run")
    page.route("**/api/v1/stream*", unreachable)
    page.goto(f"{server.base}/runs/{run_id}")
    page.wait_for_selector('g.node[data-task="gate"][data-state="running"]')
    for _ in range(200):  # the route's handler runs while Playwright is waiting
        if refused:
            break
        page.wait_for_timeout(100)
    assert refused
    page.unroute("**/api/v1/stream*")
    page.evaluate("window.notReloaded = true")
    (home / "go").write_text("")
    page.wait_for_selector('#run-state[data-state="failed"]')
    assert page.evaluate("window.notReloaded") is True


def test_run_now_takes_text_for_a_null_default_as_the_cli_does(console: tuple[Server, Path],
                                                               page: Any) -> None:
    """A param whose default is null was read as JSON in the form: `abc` was refused in the
    page and `5` sent a number, where `--param z=abc` and `--param z=5` give text."""
    server, home = console
    (home / "nul.yaml").write_text('job: nul\nparams: {z: null}\ntasks:\n  t: {shell: "true"}\n')
    cli(home, "apply", "nul.yaml")
    by_cli = [int(cli(home, "run", "nul", "--param", f"z={v}", "--detach").stdout)
              for v in ("abc", "5")]
    page.goto(server.base + "/jobs/nul")
    assert page.locator("input[name=z]").input_value() == ""
    for value, run_id in zip(("abc", "5"), by_cli, strict=True):
        page.goto(server.base + "/jobs/nul")
        page.fill("input[name=z]", value)
        page.click("form.runform button")
        page.wait_for_url("**/runs/*")
        made = int(page.url.rsplit("/", 1)[1])
        params = server.http.get(f"/api/v1/runs/{made}").json()["params"]
        assert params == server.http.get(f"/api/v1/runs/{run_id}").json()["params"]
        assert params == {"z": value}
    page.goto(server.base + "/jobs/nul")
    page.click("form.runform button")  # untouched: the default, as taskplan run nul
    page.wait_for_url("**/runs/*")
    made = int(page.url.rsplit("/", 1)[1])
    assert server.http.get(f"/api/v1/runs/{made}").json()["params"] == {"z": None}


def test_a_filter_being_chosen_survives_a_live_change(console: tuple[Server, Path],
                                                     page: Any) -> None:
    """The run page's (and a foreach task page's) state filter sat inside the live region:
    each change of a running run replaced it, so a state picked in it was put back before
    Filter was pressed. It stays as the user left it; what it filters still follows."""
    server, home = console
    made = server.http.post("/api/v1/jobs/browser/runs", json={})
    run_id = made.json()["run_id"]
    page.goto(f"{server.base}/runs/{run_id}")
    page.wait_for_selector('g.node[data-task="gate"][data-state="running"]')
    page.evaluate("window.notReloaded = true")
    page.select_option("form.filters select[name=state]", "failed")
    (home / "go").write_text("")  # the run moves on: gate succeeds, flaky fails
    page.wait_for_selector('tr[data-task="flaky"][data-state="failed"]')
    page.wait_for_selector('#run-state[data-state="failed"]')
    assert page.evaluate("window.notReloaded") is True
    assert page.locator("form.filters select[name=state]").input_value() == "failed"
    page.click("form.filters button")
    page.wait_for_url(f"**/runs/{run_id}?state=failed")
    assert page.locator('tr[data-task="flaky"]').count() == 1
    assert page.locator('tr[data-task="gate"]').count() == 0


def test_live_parts_outlast_an_error_answer(console: tuple[Server, Path], page: Any) -> None:
    """One error answer (a proxy's 502 while the console restarts, a 503 while the store is
    away) stopped a task page's live tail for good, and a run page whose refetch after a
    change got one kept the old state until reloaded. Both ask again."""
    import re

    server, home = console
    (home / "chatty.yaml").write_text(
        "job: chatty\ntasks:\n  talk:\n    shell: >-\n"
        f"      i=0; while [ ! -f {home}/hush ]; do i=$((i+1)); echo line $i; sleep 0.2; done\n"
        "  next:\n    shell: exit 1\n    depends_on: [talk]\n")
    cli(home, "apply", "chatty.yaml")
    run_id = server.http.post("/api/v1/jobs/chatty/runs").json()["run_id"]
    refused: list[str] = []

    def bad_gateway(route: Any) -> None:
        if route.request.resource_type != "fetch":
            route.continue_()
            return
        refused.append(route.request.url)
        route.fulfill(status=502, content_type="text/plain", body="bad gateway")

    def refuse_until_some(pattern: re.Pattern[str]) -> None:
        refused.clear()
        page.route(pattern, bad_gateway)
        for _ in range(200):  # the route's handler runs while Playwright is waiting
            if refused:
                break
            page.wait_for_timeout(100)
        assert refused

    page.goto(f"{server.base}/runs/{run_id}/tasks/talk")
    page.locator("#output", has_text="line 2").wait_for()
    logs = re.compile(r".*/logs\?.*")
    refuse_until_some(logs)
    page.unroute(logs)
    seen = int(page.locator("#output").inner_text().split()[-1])
    page.locator("#output", has_text=f"line {seen + 5}\n").wait_for()

    page.goto(f"{server.base}/runs/{run_id}")
    page.wait_for_selector('#run-state[data-state="running"]')
    this_page = re.compile(rf".*/runs/{run_id}$")
    refused.clear()
    page.route(this_page, bad_gateway)
    (home / "hush").write_text("")
    for _ in range(600):
        if refused and server.http.get(f"/api/v1/runs/{run_id}").json()["state"] == "failed":
            break
        page.wait_for_timeout(100)
    page.wait_for_timeout(1000)  # the last change's refetch is refused too
    page.unroute(this_page)
    page.wait_for_selector('#run-state[data-state="failed"]')


def test_keyboard_focus_stays_where_it_was_across_a_live_change(
        console: tuple[Server, Path], page: Any) -> None:
    """A live change (or a button's own refetch) swapped the region holding the focused link
    or button, and the focus fell back to the page's start: a keyboard user on a running
    run's page lost their place at every change, and Disable on the jobs page sent the next
    Tab to the top bar. The focus stays on the same link, or the button in its place."""
    server, home = console
    run_id = server.http.post("/api/v1/jobs/browser/runs").json()["run_id"]
    page.goto(f"{server.base}/runs/{run_id}")
    page.wait_for_selector('tr[data-task="gate"][data-state="running"]')
    page.focus('tr[data-task="gate"] a')
    (home / "go").write_text("")
    page.wait_for_selector('#run-state[data-state="failed"]')
    focused = "document.activeElement.getAttribute('href')"
    assert page.evaluate(focused) == f"/runs/{run_id}/tasks/gate"

    page.goto(server.base + "/jobs")
    row = page.locator('tr[data-job="typed"]')
    row.locator("button").focus()
    page.keyboard.press("Enter")
    row.locator("button:has-text('Enable')").wait_for()
    assert page.evaluate("document.activeElement.textContent") == "Enable"
    page.keyboard.press("Enter")
    row.locator("button:has-text('Disable')").wait_for()
    assert server.http.get("/api/v1/jobs/typed").json()["paused"] is False


def test_buttons_still_work_after_the_console_restarts(tmp_path: Path, page: Any) -> None:
    """Without --token-file the CSRF token is drawn anew by each process: once the console
    restarted (an upgrade), every button of a page left open answered 'missing or wrong CSRF
    token (reload the page)', though the page went on updating live. The script fetches the
    page's new token and sends the button again."""
    db = f"sqlite:///{tmp_path / 'taskplan.db'}"
    (tmp_path / "sched.yaml").write_text('job: sched\nschedules:\n  - at: "06:00"\n'
                                         'tasks:\n  t: {shell: "true"}\n')
    cli(tmp_path, "apply", "sched.yaml")
    server = Server(["web"], db, tmp_path)
    try:
        page.goto(server.base + "/jobs/sched")
        server.stop()
        server = Server(["web"], db, tmp_path, port=server.port)
        page.click("button:has-text('Disable schedules')")
        page.locator("h1 .st-paused").wait_for()
        assert page.locator("#flash .bad").count() == 0
        assert server.http.get("/api/v1/jobs/sched").json()["paused"] is True
    finally:
        server.stop()


def test_the_live_tail_follows_the_end_of_a_long_output(console: tuple[Server, Path],
                                                        page: Any) -> None:
    """The output box holds 70% of the window and scrolls; the tail appended below its
    visible part and the box stayed at the top, so a task page of a long output showed no
    new line at all. A tail opens at the end and follows it, unless scrolled up to read."""
    server, home = console
    (home / "long.yaml").write_text(
        "job: longout\ntasks:\n  talk:\n    shell: >-\n"
        f"      seq 1 400; i=0; while [ ! -f {home}/hush ]; do i=$((i+1)); echo tick $i;"
        " sleep 0.2; done\n")
    cli(home, "apply", "long.yaml")
    run_id = server.http.post("/api/v1/jobs/longout/runs").json()["run_id"]
    page.goto(f"{server.base}/runs/{run_id}/tasks/talk")
    page.locator("#output", has_text="tick 2").wait_for()
    at_end = ("(p => p.scrollHeight > p.clientHeight"
              " && p.scrollHeight - p.scrollTop - p.clientHeight < 4)"
              "(document.getElementById('output'))")
    seen = int(page.locator("#output").inner_text().split()[-1])
    page.locator("#output", has_text=f"tick {seen + 3}\n").wait_for()
    assert page.evaluate(at_end)
    page.evaluate("document.getElementById('output').scrollTop = 0")
    seen = int(page.locator("#output").inner_text().split()[-1])
    page.locator("#output", has_text=f"tick {seen + 3}\n").wait_for()
    assert page.evaluate("document.getElementById('output').scrollTop") == 0
    # Back at the end when the attempt ends: its whole output replaces the tail, at the end.
    page.evaluate("(p => { p.scrollTop = p.scrollHeight; })(document.getElementById('output'))")
    (home / "hush").write_text("")
    page.wait_for_selector('#task-state[data-state="succeeded"]')
    page.locator("#output:not([data-tail])").wait_for()
    assert page.evaluate(at_end)


def test_the_agents_page_follows_agents_coming_and_going(tmp_path: Path, page: Any) -> None:
    """The agents page changed only on a run's event: an agent that started (or died, its
    heartbeat ageing, its lease running out) was not shown until reloaded, a killed agent
    staying 'alive, 5s ago' for good. The page is fetched again every few seconds."""
    import os

    db = f"sqlite:///{tmp_path / 'taskplan.db'}"
    (tmp_path / "one.yaml").write_text('job: one\ntasks:\n  t: {shell: "true"}\n')
    cli(tmp_path, "apply", "one.yaml")
    server = Server(["web"], db, tmp_path)
    agent = None
    try:
        page.goto(server.base + "/agents")
        page.locator("main", has_text="No agent is running").wait_for()
        agent = subprocess.Popen([TASKPLAN, "agent", "--slots", "3"], cwd=tmp_path,
                                 env=clean_env(db), stderr=subprocess.DEVNULL)
        page.locator("td", has_text=f":{agent.pid}").first.wait_for()
        assert page.locator("main", has_text="No agent is running").count() == 0
    finally:
        if agent is not None:
            os.kill(agent.pid, 15)
            agent.wait(15)
        server.stop()


def test_a_running_runs_times_move_on_without_events(console: tuple[Server, Path],
                                                     page: Any) -> None:
    """A run page (and a task page) drew 'Took' and the Gantt's running bars at the last
    event: a task running an hour without a state change showed the run as 'Took 3s' all
    along. While the run goes on, the pages are fetched again every few seconds."""
    server, home = console
    run_id = server.http.post("/api/v1/jobs/browser/runs").json()["run_id"]
    took = {f"/runs/{run_id}": "dl.header dt:has-text('Took') + dd",
            f"/runs/{run_id}/tasks/gate": "tr.selected td:nth-child(5)"}
    for url, where in took.items():
        page.goto(server.base + url)
        page.wait_for_selector('[data-state="running"]')
        first = page.locator(where).inner_text()
        page.wait_for_function("([sel, t]) => document.querySelector(sel).textContent !== t",
                               arg=[where.replace(":has-text('Took')", ":nth-of-type(4)"),
                                    first], timeout=15_000)
    (home / "go").write_text("")


# Headless Chromium shows every tab; a tab put in the background is told so this way.
HIDEABLE = """
window.__hidden = false;
Object.defineProperty(document, "hidden", { get: () => window.__hidden });
Object.defineProperty(document, "visibilityState",
                      { get: () => (window.__hidden ? "hidden" : "visible") });
window.__show = (shown) => {
  window.__hidden = !shown;
  document.dispatchEvent(new Event("visibilitychange"));
};
"""


def test_tabs_in_the_background_leave_connections_free(tmp_path: Path, page: Any) -> None:
    """Each live page held its event stream open, and a browser opens at most 6 connections
    to one server over HTTP/1.1: with six run pages open in tabs, a seventh page of the
    console never loaded. A tab in the background closes its stream and catches up when
    shown again."""
    db = f"sqlite:///{tmp_path / 'taskplan.db'}"
    (tmp_path / "one.yaml").write_text('job: one\ntasks:\n  t: {shell: "true"}\n')
    cli(tmp_path, "apply", "one.yaml")
    server = Server(["web"], db, tmp_path)  # no agent: the runs stay queued
    try:
        context = page.context
        context.add_init_script(HIDEABLE)
        tabs = []
        for _ in range(6):
            run_id = server.http.post("/api/v1/jobs/one/runs").json()["run_id"]
            tab = context.new_page()
            tab.goto(f"{server.base}/runs/{run_id}")
            tab.evaluate("window.__show(false)")
            tabs.append((tab, run_id))
        seventh = context.new_page()
        seventh.goto(server.base + "/jobs", timeout=10_000)
        assert seventh.locator("main h1").inner_text() == "Jobs"
        tab, run_id = tabs[0]
        assert server.http.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200
        tab.evaluate("window.__show(true)")
        tab.wait_for_selector('#run-state[data-state="cancelled"]')
    finally:
        server.stop()


def test_a_page_whose_session_ended_says_so(tmp_path: Path, page: Any) -> None:
    """With --token-file, once the session ended (Log out in another tab, the console
    restarted with another token) a live page stopped changing without a word (its refetch
    landed on the login page) and a button said 'a token is required (Authorization: Bearer
    TOKEN)'. The page says it is logged out and links to the login page."""
    db = f"sqlite:///{tmp_path / 'taskplan.db'}"
    (tmp_path / "one.yaml").write_text('job: one\ntasks:\n  t: {shell: "true"}\n')
    (tmp_path / "token").write_text("s3cret-token\n")
    cli(tmp_path, "apply", "one.yaml")
    server = Server(["web", "--token-file", "token"], db, tmp_path, token="s3cret-token")
    try:
        run_id = server.http.post("/api/v1/jobs/one/runs").json()["run_id"]
        page.goto(f"{server.base}/runs/{run_id}")
        page.fill("input[name=token]", "s3cret-token")
        page.click("form.login button")
        page.wait_for_selector("#run-state")
        page.context.clear_cookies()
        assert server.http.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200
        gone = page.locator("#flash .bad", has_text="logged out")
        gone.wait_for()
        assert gone.locator("a").get_attribute("href") == f"/login?next=%2Fruns%2F{run_id}"
    finally:
        server.stop()


def test_a_long_agent_name_wraps_inside_the_window(tmp_path: Path, page: Any) -> None:
    """`taskplan agent --name` takes any length: a 200-character name widened the agents page
    and the task page's attempts table to 2,100 pixels, the state column out of sight."""
    import os

    db = f"sqlite:///{tmp_path / 'taskplan.db'}"
    (tmp_path / "one.yaml").write_text('job: one\ntasks:\n  t: {shell: "true"}\n')
    cli(tmp_path, "apply", "one.yaml")
    server = Server(["web"], db, tmp_path)
    agent = subprocess.Popen([TASKPLAN, "agent", "--name", "a" * 200], cwd=tmp_path,
                             env=clean_env(db), stderr=subprocess.DEVNULL)
    try:
        run_id = server.http.post("/api/v1/jobs/one/runs").json()["run_id"]
        wait_until(lambda: server.http.get(f"/api/v1/runs/{run_id}").json()["state"]
                   == "succeeded", 60.0, "the run to end")
        for url in ("/agents", f"/runs/{run_id}/tasks/t"):
            page.goto(server.base + url)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 1280, (url, width)
    finally:
        os.kill(agent.pid, 15)
        agent.wait(15)
        server.stop()


def test_the_live_tail_keeps_an_escape_split_between_two_reads(console: tuple[Server, Path],
                                                               page: Any) -> None:
    """A colour code the task printed in two writes (stored as two chunks, read by two polls)
    showed in the live tail as '[31mred': its first half's ESC was dropped as a control
    character and the rest was text. The tail holds an unfinished sequence for the next read."""
    server, home = console
    (home / "split.yaml").write_text(
        "job: split\ntasks:\n  talk:\n    shell: >-\n"
        f"      while [ ! -f {home}/say ]; do sleep 0.05; done; printf 'start\\n\\033[3';"
        f" sleep 1.5; printf '1mred\\033[0m\\n'; while [ ! -f {home}/hush ]; do sleep 0.1; done\n")
    cli(home, "apply", "split.yaml")
    run_id = server.http.post("/api/v1/jobs/split/runs").json()["run_id"]
    page.goto(f"{server.base}/runs/{run_id}/tasks/talk")
    page.wait_for_selector("#output[data-tail]")
    (home / "say").write_text("")
    page.locator("#output", has_text="red").wait_for()
    assert page.locator("#output").inner_text() == "start\nred\n"
    (home / "hush").write_text("")
