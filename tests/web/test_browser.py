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
from web_helpers import HOSTILE, TASKPLAN, Server, clean_env

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


@pytest.fixture
def console(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    db = f"sqlite:///{tmp_path / 'taskplan.db'}"
    (tmp_path / "browser.yaml").write_text(job_text(tmp_path))
    done = subprocess.run([TASKPLAN, "apply", "browser.yaml"], cwd=tmp_path, env=clean_env(db),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
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
