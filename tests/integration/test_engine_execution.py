"""Retries and their spacing, timeouts that kill process groups, bounded attempt logs."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from engine_helpers import attempts, log_text, pid_alive, run_job, tasks, wait_for

from taskplan.engine import Engine
from taskplan.store.db import Store


def test_retries_are_spaced_by_delay_and_backoff(engine: Engine, store: Store) -> None:
    run_id, _ = run_job(engine, """
        job: retries
        tasks:
          bad:
            python: "tpjobs:fail"
            retries: 3
            retry_delay: 0.05s
            retry_backoff: 2
        """)
    got = tasks(store, run_id)["bad"]
    assert got["state"] == "failed"
    assert got["attempts"] == 4
    tries = attempts(store, got["id"])
    assert [a["state"] for a in tries] == ["failed"] * 4
    gaps = [b["started_at"] - a["finished_at"] for a, b in pairwise(tries)]
    for gap, wanted in zip(gaps, (0.05, 0.1, 0.2), strict=True):
        assert gap >= wanted - 1e-6, (gaps, wanted)


def test_retry_that_succeeds_ends_succeeded(engine: Engine, store: Store,
                                           tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    run_id, _ = run_job(engine, """
        job: eventually
        tasks:
          fix: {shell: "sleep 0.1; touch {{ params.marker }}"}
          flaky: {python: "tpjobs:flaky", retries: 5, retry_delay: 0.05s, retry_backoff: 1}
        """, params={"marker": str(marker)}, slots=2)
    got = tasks(store, run_id)["flaky"]
    assert got["state"] == "succeeded"
    assert 2 <= got["attempts"] <= 6
    assert got["result"] == {"attempt": got["attempts"]}
    tries = attempts(store, got["id"])
    assert [a["state"] for a in tries] == ["failed"] * (len(tries) - 1) + ["succeeded"]
    assert engine.run_state(run_id) == "succeeded"


def test_timeout_kills_the_whole_process_group(engine: Engine, store: Store,
                                              tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    done = tmp_path / "ran_to_the_end"
    run_id, _ = run_job(engine, """
        job: timeouts
        tasks:
          slow:
            shell: >-
              sleep 30 & echo $! > {{ params.pidfile }}.tmp;
              mv {{ params.pidfile }}.tmp {{ params.pidfile }}; wait; touch {{ params.done }}
            timeout: 0.3s
        """, params={"pidfile": str(pidfile), "done": str(done)})
    got = tasks(store, run_id)["slow"]
    assert got["state"] == "failed"
    assert "timed out" in got["error"]
    pid = int(pidfile.read_text())
    wait_for(lambda: not pid_alive(pid), timeout=10, what="the grandchild sleep to die")
    assert not done.exists()


def test_attempt_log_is_bounded_with_tail_and_note(engine: Engine, store: Store) -> None:
    produced = 3 * 1024 * 1024
    run_id, _ = run_job(engine, """
        job: chatty
        tasks:
          talk: {python: "tpjobs:chatter"}
        """, params={"bytes": produced})
    got = tasks(store, run_id)["talk"]
    assert got["state"] == "succeeded"
    text = log_text(store, got["id"])
    mib = 1024 * 1024
    assert mib < len(text) <= mib + 64 * 1024 + 200
    assert text.startswith("x" * 1000)
    assert text.endswith("END-OF-OUTPUT\n")  # the tail is kept
    assert "characters of output dropped" in text
    head_end = text.index("\n[taskplan:")
    assert head_end == mib
    (attempt,) = attempts(store, got["id"])
    assert attempt["truncated"] is True
    assert attempt["output_bytes"] == produced + len("END-OF-OUTPUT\n")
