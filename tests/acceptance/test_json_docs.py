"""Every key the `--json` forms print is in docs/json-output.md: a field added to a command's
JSON without a word there leaves scripts guessing what it means."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from acceptance_helpers import Taskplan

DOC = (Path(__file__).resolve().parents[2] / "docs" / "json-output.md").read_text()


def section(title: str) -> set[str]:
    """The names, quoted or in backticks, of the section whose heading starts with `title`."""
    found = re.search(r"^#{2,3} `" + re.escape(title) + r"[^\n]*\n(.*?)(?=^#{2,3} |\Z)", DOC,
                      re.S | re.M)
    assert found is not None, title
    return {a or b for a, b in re.findall(r'"(\w+)"|`(\w+)`', found.group(1))}


def keys(value: Any) -> set[str]:
    """The keys of an object, or of every object of a list."""
    items = value if isinstance(value, list) else [value]
    return {k for item in items for k in item}


def test_every_key_of_the_json_forms_is_documented(tp: Taskplan) -> None:
    tp.write("fe.yaml", """
        job: fe
        params: {n: 3}
        schedules:
          - {name: daily, cron: "0 2 * * *"}
          - every: 1h
        deadline: {within: 1h, of: start}
        notify: [{on: run_failed, command: ["true"]}]
        tasks:
          extract: {shell: "echo hi; exit 3", retries: 1}
          each:
            foreach: {values: [1, 2]}
            shell: "echo {{ item }}"
          sub: {job: child}
        """)
    tp.write("child.yaml", """
        job: child
        triggers: [{after: [fe], status: finished}]
        tasks: {c: {shell: "true"}}
        """)
    tp.write("cal.yaml", "calendar: bank\ndates: ['2026-12-24']\n")
    tp.write("conns.yaml", "connections: {mart: 'sqlite:///mart.db'}\n")
    tp.write("cron.tab", "0 2 * * * /usr/bin/backup.sh\n")
    tp.ok("apply", "child.yaml", "cal.yaml", "conns.yaml")
    assert tp("run", "fe.yaml").code == 1  # extract fails: its attempts are listed
    tp.ok("backfill", "fe", "--from", "2026-01-01T00:00", "--to", "2026-01-01T02:00")
    status = tp.ok("status", "1", "--attempts", "--json").json()
    outputs: dict[str, set[str]] = {
        "runs --json": keys(tp.ok("runs", "--json").json()),
        "status RUN --json": keys(status) | keys(status["tasks"]) - {"attempt_list"},
        "status RUN --attempts --json": keys([a for t in status["tasks"]
                                              for a in t["attempt_list"]]),
        "status --json": keys(tp.ok("status", "--json").json()),
        "forecast JOB --json": keys(tp.ok("forecast", "fe", "--json").json()),
        "next --json": keys(tp.ok("next", "fe", "--json").json()),
        "jobs --json": keys(jobs := tp.ok("jobs", "--json").json())
        | keys([t for j in jobs for t in j["triggers"]]),
        "backfill JOB --json": (lambda b: keys(b) | keys(b["firings"]))(tp.ok(
            "backfill", "fe", "--from", "2026-01-01T00:00", "--to", "2026-01-01T02:00",
            "--json").json()),
        "firings JOB --json": keys(tp.ok("firings", "fe", "--json").json()),
        "agents --json": keys(tp.ok("agents", "--all", "--json").json()),
        "calendars --json": keys(tp.ok("calendars", "--json").json())
        | keys(tp.ok("calendars", "bank", "--from", "2026-12-01", "--to", "2026-12-31",
                     "--json").json()),
        "notifications --json": keys(notes := tp.ok("notifications", "--json").json())
        | keys([n["channel"] for n in notes]) | keys([t for n in notes for t in n["tries"]]),
        "connections --json": keys(tp.ok("connections", "--json").json()),
        "import crontab --json": keys(tp.ok("import", "crontab", "cron.tab", "--out", "out",
                                            "--json").json()),
    }
    missing = {title: sorted(found - section(title)) for title, found in outputs.items()
               if found - section(title)}
    assert all(found for found in outputs.values())
    assert missing == {}
