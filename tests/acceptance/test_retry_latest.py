"""retry reruns the version a run pinned and says when a newer one is current; --latest
reruns on the current version when its tasks are wired the same."""

from __future__ import annotations

from acceptance_helpers import Taskplan, states

V1 = """
    job: flaky
    tasks:
      a: {shell: "echo v1; exit 1"}
      b: {shell: "echo b", depends_on: [a]}
"""
V2 = V1.replace("echo v1; exit 1", "echo v2")


def test_retry_latest_reruns_on_the_current_version(tp: Taskplan) -> None:
    tp.write("flaky.yaml", V1)
    assert tp("run", "flaky.yaml").code == 1
    tp.write("flaky.yaml", V2)
    tp.ok("apply", "flaky.yaml")

    res = tp("retry", "1")
    assert res.code == 1, res  # v1 again, which fails again
    assert res.err == ("note: run 1 reruns flaky v1, as it pinned; v2 is current"
                       " (retry --latest reruns on v2)\n"), res
    res = tp("retry", "1", "--latest")
    assert res.code == 0, res
    assert res.err == "run 1: retried on flaky v2 (was v1)\n", res
    final = tp.status(1)
    assert final["version"] == 2 and final["state"] == "succeeded"
    assert states(final) == {"a": "succeeded", "b": "succeeded"}
    assert tp.ok("logs", "1", "a", "--attempt", "3").out == "v2\n"


def test_retry_latest_refuses_a_rewired_job(tp: Taskplan) -> None:
    tp.write("flaky.yaml", V1)
    assert tp("run", "flaky.yaml").code == 1
    tp.write("flaky.yaml", V2 + "      c: {shell: echo c}\n")
    tp.ok("apply", "flaky.yaml")
    before = tp.status(1)
    res = tp("retry", "1", "--latest")
    assert res.code == 2, res
    assert res.err == ("taskplan: run 1 cannot be retried on flaky v2: its tasks differ from v1"
                       " (added: c); start a new run with `taskplan run flaky`\n"), res
    assert tp.status(1) == before
