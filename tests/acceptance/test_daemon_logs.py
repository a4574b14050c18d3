"""What the daemons say: one line per event, as text or JSON (`--log-format json`), nothing
but warnings with `--quiet`."""

from __future__ import annotations

import json
import signal
import time

from acceptance_helpers import Taskplan, finish

FLAKY = """
job: flaky
tasks:
  once:
    retries: 1
    retry_delay: 0.2s
    shell: "if [ -e marker ]; then echo ok; else touch marker; exit 3; fi"
"""


def events(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_agent_logs_claims_starts_ends_and_retries_as_json(tp: Taskplan) -> None:
    tp.write("flaky.yaml", FLAKY)
    tp.ok("apply", "flaky.yaml")
    tp.ok("run", "flaky", "--detach")
    res = tp.ok("agent", "--exit-when-idle", "1s", "--log-format", "json")
    found = events(res.err)
    kinds = [e.get("event") for e in found]
    assert kinds.count("claim") == 2 and kinds.count("task_start") == 2
    assert kinds.count("task_end") == 2 and kinds.count("retry") == 1
    ends = [e for e in found if e.get("event") == "task_end"]
    assert [(e["attempt"], e["state"], e["exit_code"]) for e in ends] == [
        (1, "failed", 3), (2, "succeeded", 0)]
    assert all({"time", "level", "message", "run_id", "task"} <= set(e) for e in ends)


def test_quiet_agent_prints_no_events(tp: Taskplan) -> None:
    tp.write("flaky.yaml", FLAKY)
    tp.ok("apply", "flaky.yaml")
    tp.ok("run", "flaky", "--detach")
    res = tp.ok("agent", "--exit-when-idle", "1s", "--quiet")
    assert "claim" not in res.err and "task end" not in res.err


def test_scheduler_logs_leadership_and_firings(tp: Taskplan) -> None:
    tp.write("tick.yaml", """
        job: tick
        on_overlap: allow
        schedules:
          - every: 1s
        tasks:
          a: {shell: "true"}
    """)
    tp.ok("apply", "tick.yaml")
    proc = tp.popen("scheduler", "--log-format", "json")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(tp.ok("runs", "--json").json()) < 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    found = events(finish(proc).err)
    assert found[0]["event"] == "leader" and found[0]["leader"] is True
    firings = [e for e in found if e.get("event") == "firing"]
    assert len(firings) >= 2 and firings[0]["job"] == "tick" and firings[0]["run_id"]
