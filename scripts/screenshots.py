"""Screenshots of the console for the README, taken from a real run.

    .venv/bin/python scripts/screenshots.py [--out docs/img]

Applies a small nightly job to a fresh SQLite store in a temporary folder, starts
`taskplan serve --port` on a free port, runs the job from the API (one task fails its first
attempt and is retried, a foreach fans out), waits for the run to end, and has Chromium
(Playwright, /usr/bin/chromium) save the run page (graph + Gantt) and the jobs page.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

TASKPLAN = str(Path(sys.executable).parent / "taskplan")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

JOB = """
job: nightly_sales
description: load yesterday's sales, aggregate per region, publish
params: {day: "2026-11-20"}
schedules:
  - cron: "30 2 * * *"
    name: nightly
tasks:
  extract:
    shell: "sleep 0.6; echo extracted {{ params.day }}"
  regions:
    foreach: {values: [north, south, east, west, centre, islands]}
    shell: "sleep 0.$((RANDOM % 5 + 3)); echo region {{ item }}"
    depends_on: [extract]
  currency:
    shell: "sleep 0.4; test -f tried || { touch tried; echo 'rate feed timeout' >&2; exit 1; }"
    retries: 1
    depends_on: [extract]
  aggregate:
    shell: "sleep 0.7; echo aggregated"
    depends_on: [regions, currency]
  publish:
    shell: "sleep 0.3; echo published"
    depends_on: [aggregate]
  audit:
    shell: "sleep 0.5; echo audited"
    depends_on: [extract]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(Path(__file__).parent.parent / "docs" / "img"))
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="taskplan-shots-") as tmp:
        home = Path(tmp)
        (home / "nightly_sales.yaml").write_text(JOB.lstrip())
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKPLAN_")}
        env["TASKPLAN_DB"] = f"sqlite:///{home / 'taskplan.db'}"
        subprocess.run([TASKPLAN, "apply", "nightly_sales.yaml"], cwd=home, env=env,
                       check=True, capture_output=True)
        port = free_port()
        server = subprocess.Popen([TASKPLAN, "serve", "--slots", "3", "--port", str(port)],
                                  cwd=home, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=10) as http:
                for _ in range(200):
                    try:
                        http.get("/api/v1/agents")
                        break
                    except httpx.TransportError:
                        time.sleep(0.1)
                run_id = http.post("/api/v1/jobs/nightly_sales/runs", json={}).json()["run_id"]
                while http.get(f"/api/v1/runs/{run_id}").json()["state"] == "running":
                    time.sleep(0.2)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                page.goto(f"{base}/runs/{run_id}")
                page.screenshot(path=str(out / "run-page.png"), full_page=True)
                page.goto(f"{base}/jobs")
                page.screenshot(path=str(out / "jobs-page.png"))
                browser.close()
        finally:
            server.terminate()
            server.wait(20)
    print(f"wrote {out / 'run-page.png'} and {out / 'jobs-page.png'}")


if __name__ == "__main__":
    main()
