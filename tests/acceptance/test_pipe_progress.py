"""`taskplan run` with stdout on a pipe: lines come from the in-process agent, are capped at a
rate with a summary line for the rest, and a child run's tasks are named with their run."""

from __future__ import annotations

import re

from acceptance_helpers import Taskplan, finish


def test_a_wide_run_prints_a_bounded_number_of_lines(tp: Taskplan) -> None:
    tasks = "".join(f"  t{i}:\n    shell: \"true\"\n" for i in range(300))
    tp.write("wide.yaml", "job: wide\ntasks:\n" + tasks)
    res = tp.ok("run", "wide.yaml", "--workers", "8")
    lines = res.out.splitlines()
    # 300 starts and 300 ends: the cap leaves far fewer lines, and says what it held back.
    assert len(lines) < 300, res.out
    assert any(re.search(r"\.\.\. \d+ more lines", ln) for ln in lines), res.out
    assert lines[-1].startswith("run 1 (wide v1) succeeded in ") and "300 succeeded" in lines[-1]


def test_child_run_tasks_are_named_with_their_run(tp: Taskplan) -> None:
    tp.write("child.yaml", "job: child\ntasks:\n  inner:\n    shell: \"true\"\n")
    tp.ok("apply", "child.yaml")
    tp.write("parent.yaml", "job: parent\ntasks:\n  outer:\n    shell: \"true\"\n"
             "  sub:\n    job: child\n    depends_on: [outer]\n")
    res = tp.ok("run", "parent.yaml")
    inner = [ln for ln in res.out.splitlines() if "inner" in ln]
    assert inner and all(re.search(r"run 2: inner\s", ln) for ln in inner), res.out
    assert re.search(r"\bouter\s+succeeded$", res.out, re.M)
    assert re.search(r"\brun 2\s+succeeded$", res.out, re.M)
    assert re.search(r"\brun 1\s+succeeded$", res.out, re.M)


def test_task_runs_ended_without_an_attempt_get_their_line(tp: Taskplan) -> None:
    # on_failure continue (the default): the failure's dependants end upstream_failed.
    tp.write("up.yaml", "job: up\ntasks:\n  a: {shell: \"exit 3\"}\n"
             "  b: {shell: \"true\", depends_on: [a]}\n  c: {shell: \"true\", depends_on: [b]}\n")
    res = tp("run", "up.yaml")
    assert res.code == 1, res
    ends = [re.sub(r"^\S+ \S+\s+", "", ln) for ln in res.out.splitlines()]
    assert [" ".join(e.split()) for e in ends[:5]] == [
        "a running", "a failed (exit code 3)", "b upstream_failed", "c upstream_failed",
        "run 1 failed"], res.out
    # on_failure stop: what never started is skipped when the running task ends.
    tp.write("stop.yaml", "job: stopper\non_failure: stop\ntasks:\n  a: {shell: \"exit 3\"}\n"
             "  b: {shell: \"true\", depends_on: [a]}\n  slow: {shell: \"sleep 0.3\"}\n"
             "  late: {shell: \"true\", depends_on: [slow]}\n")
    res = tp("run", "stop.yaml", "--workers", "2")
    assert res.code == 1, res
    assert re.search(r"\bb\s+skipped$", res.out, re.M), res.out
    assert re.search(r"\blate\s+skipped$", res.out, re.M), res.out
    assert res.out.splitlines()[-2].startswith("run 2 (stopper v1) failed in ")
    assert "2 skipped" in res.out.splitlines()[-2]


def test_a_job_task_ends_with_its_child_run_and_a_cancel_policy_names_what_it_cancels(
        tp: Taskplan) -> None:
    tp.write("kid.yaml", "job: kid\ntasks:\n  k1: {shell: \"exit 4\"}\n")
    tp.ok("apply", "kid.yaml")
    tp.write("par.yaml", "job: par\ntasks:\n  sub: {job: kid}\n"
             "  after: {shell: \"true\", depends_on: [sub]}\n")
    res = tp("run", "par.yaml")
    assert res.code == 1, res
    assert re.search(r"\bsub\s+failed  \(run 2 ended failed\)$", res.out, re.M), res.out
    assert re.search(r"\bafter\s+upstream_failed$", res.out, re.M), res.out
    assert len(re.findall(r"\bsub\s+(failed|succeeded|cancelled)", res.out)) == 1, res.out
    # on_failure cancel: the running sibling is cancelled, once, by the agent that ran it.
    tp.write("canc.yaml", "job: canc\non_failure: cancel\ntasks:\n"
             "  bad: {shell: \"sleep 0.2; exit 1\"}\n  slow: {shell: \"sleep 30\"}\n")
    res = tp("run", "canc.yaml", "--workers", "2")
    assert res.code == 1, res
    assert len(re.findall(r"\bslow\s+cancelled$", res.out, re.M)) == 1, res.out
    # ... reported by the step that ended the run, so before the run's own line.
    lines = res.out.splitlines()
    assert _index(lines, r"\bslow\s+cancelled$") < _index(lines, r"\brun 3\s+failed$"), res.out


def _index(lines: list[str], pattern: str) -> int:
    return next(i for i, ln in enumerate(lines) if re.search(pattern, ln))


def test_a_job_task_ends_after_its_child_run(tp: Taskplan) -> None:
    tp.write("kid.yaml", "job: kid\ntasks:\n  k1: {shell: \"exit 4\"}\n"
             "  k2: {shell: \"true\", depends_on: [k1]}\n")
    tp.ok("apply", "kid.yaml")
    tp.write("par.yaml", "job: par\ntasks:\n  sub: {job: kid}\n"
             "  after: {shell: \"true\", depends_on: [sub]}\n")
    res = tp("run", "par.yaml")
    assert res.code == 1, res
    ends = [" ".join(re.sub(r"^\S+ \S+\s+", "", ln).split()) for ln in res.out.splitlines()]
    assert ends[ends.index("run 2: k1 failed (exit code 4)"):][:6] == [
        "run 2: k1 failed (exit code 4)", "run 2: k2 upstream_failed", "run 2 failed",
        "sub failed (run 2 ended failed)", "after upstream_failed", "run 1 failed"], res.out


def test_the_counts_of_the_summary_lines_are_the_end_summarys(tp: Taskplan) -> None:
    # 50 tasks failing once then succeeding, and a foreach of 40 items: past the cap of lines,
    # the last summary line counts what the end summary counts (a retried failure is not an
    # end; a foreach ends with its items; a child run's tasks are not the run's).
    tasks = "".join(
        f"  t{i:02d}: {{shell: \"test -e m{i} || {{ touch m{i}; exit 1; }}\", retries: 1,"
        f" retry_delay: 0}}\n" for i in range(50))
    tp.write("kid.yaml", "job: kid\ntasks:\n  k1: {shell: \"true\"}\n  k2: {shell: \"true\"}\n")
    tp.ok("apply", "kid.yaml")
    tp.write("mix.yaml", "job: mix\ntasks:\n" + tasks
             + "  each: {foreach: {values: [" + ", ".join(map(str, range(40))) + "]},"
             " shell: \"true\"}\n  sub: {job: kid}\n  off: {shell: \"true\", enabled: false}\n")
    res = tp.ok("run", "mix.yaml", "--workers", "8")
    lines = res.out.splitlines()
    assert lines[-1].startswith("run 1 (mix v1) succeeded in ")
    # 50 + 40 items + each + sub; `off` was skipped when the run was made
    assert lines[-1].endswith(": 1 skipped, 92 succeeded"), res.out
    assert lines[-2].endswith("(ended: 1 skipped, 92 succeeded)"), res.out
    stamps = [ln[:19] for ln in lines[:-1]]
    assert stamps == sorted(stamps), res.out  # a summary line is stamped as what it stands for
    for summary in (ln for ln in lines if "more lines (ended so far: " in ln):
        assert "failed" not in summary, res.out


def test_a_failure_is_called_a_retry_only_when_the_step_retried_it(tp: Taskplan) -> None:
    # No halt: a failed attempt with attempts left is retried, and said so.
    tp.write("again.yaml", "job: again\ntasks:\n"
             "  flaky: {shell: \"exit 2\", retries: 1, retry_delay: 0}\n")
    res = tp("run", "again.yaml")
    assert res.code == 1, res
    assert re.search(r"\bflaky\s+failed, retrying \(attempt 1 of 2\)", res.out), res.out
    assert re.search(r"\bflaky\s+failed  \(exit code 2\)$", res.out, re.M), res.out
    # on_failure stop halts the run when `bad` fails: `slow`, failing later with attempts
    # left, is not retried, and its line must not promise a retry.
    tp.write("halted.yaml", "job: halted\non_failure: stop\ntasks:\n"
             "  bad: {shell: \"exit 1\"}\n"
             "  slow: {shell: \"sleep 0.5; exit 2\", retries: 3, retry_delay: 0}\n")
    res = tp("run", "halted.yaml", "--workers", "2")
    assert res.code == 1, res
    assert "retrying" not in res.out, res.out
    assert re.search(r"\bslow\s+failed  \(exit code 2\)$", res.out, re.M), res.out
    assert tp.ok("status", "2", "--json").json()["state"] == "failed"


def test_a_run_cancelled_from_another_process_gets_its_line_and_ends_the_command(
        tp: Taskplan) -> None:
    # A lease of 300 s puts the agent's next beat 100 s away: the command must not wait for it
    # to notice that another process ended its run (the bound below is only the wait's).
    tp.env["TASKPLAN_LEASE_SECONDS"] = "300"
    tp.write("slow.yaml", "job: slow\ntasks:\n  s1: {shell: \"touch started; sleep 60\"}\n"
             "  s2: {shell: \"true\", depends_on: [s1]}\n")
    proc = tp.popen("run", "slow.yaml")
    tp.wait_file("started", proc)
    tp.ok("cancel", "1")
    res = finish(proc, timeout=30)
    assert res.code == 1, res
    lines = res.out.splitlines()
    assert re.search(r"\bs1\s+cancelled$", res.out, re.M), res.out  # not "(cancelled)" again
    assert re.search(r"\brun 1\s+cancelled$", lines[-2]), res.out
    assert lines[-1].startswith("run 1 (slow v1) cancelled in "), res.out


def test_items_a_halt_skips_are_counted_though_not_listed(tp: Taskplan) -> None:
    values = ", ".join(map(str, range(30)))
    tp.write("festop.yaml", "job: festop\non_failure: stop\ntasks:\n  each:\n"
             f"    foreach: {{values: [{values}]}}\n    shell: \"test {{{{ item }}}} -ne 12\"\n")
    res = tp("run", "festop.yaml", "--workers", "1")
    assert res.code == 1, res
    lines = res.out.splitlines()
    summary = next(ln for ln in lines if ln.startswith("run 1 (festop v1) failed in "))
    assert summary.endswith(": 2 failed, 17 skipped, 12 succeeded"), res.out
    assert lines[lines.index(summary) - 1].endswith(
        "(ended: 2 failed, 17 skipped, 12 succeeded)"), res.out
    assert not any(re.search(r"each\[\d+\]\s+skipped", ln) for ln in lines), res.out


def _ended_counts(out: str) -> tuple[str, str]:
    """The last summary line's counts and the end summary's, as printed."""
    lines = out.splitlines()
    end = next(i for i, ln in enumerate(lines) if re.match(r"run \d+ \(", ln))
    held = re.search(r"\(ended: (.*)\)$", lines[end - 1])
    assert held is not None, out
    return held.group(1), lines[end].split(": ", 1)[1]


def test_a_halt_with_stages_open_or_items_waiting_to_retry_counts_and_lists_them(
        tp: Taskplan) -> None:
    fast = "".join(f"  q{i}: {{shell: \"true\"}}\n" for i in range(30))
    tp.write("staged.yaml", "job: staged\non_failure: stop\ntasks:\n  bad: {shell: \"exit 1\"}\n"
             + fast + "  s1: {stage: 1, shell: \"sleep 0.5\"}\n  s2: {stage: 2, shell: \"true\"}\n")
    res = tp("run", "staged.yaml", "--workers", "8")
    assert res.code == 1, res
    held, summary = _ended_counts(res.out)
    assert held == summary, res.out  # the stages' barriers are no tasks of the user's
    # Items waiting for their retry when the run stops end failed, each with its line.
    tp.write("fr.yaml", "job: fr\non_failure: stop\ntasks:\n"
             "  each: {foreach: {values: [1, 2]}, shell: \"exit 1\", retries: 2,"
             " retry_delay: 30s}\n  bad: {shell: \"sleep 0.5; exit 3\"}\n")
    res = tp("run", "fr.yaml", "--workers", "4")
    assert res.code == 1, res
    for index in (0, 1):
        assert re.search(rf"\beach\[{index}\]\s+failed$", res.out, re.M), res.out
