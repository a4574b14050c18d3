"""Input built to hurt: job files that would exhaust the reader, output that would drive the
operator's terminal."""

from __future__ import annotations

from acceptance_helpers import Taskplan


def test_billion_laughs_is_refused_quickly_with_one_line(tp: Taskplan) -> None:
    lines = ["job: bomb", "x-a0: &a0 [" + ", ".join(['"lol"'] * 10) + "]"]
    lines += [f"x-a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    tp.write("bomb.yaml", "\n".join(lines) + "\ntasks:\n  t:\n    shell: echo hi\n")
    for command in (("validate", "bomb.yaml"), ("apply", "bomb.yaml"), ("run", "bomb.yaml")):
        # The old reader spun for minutes: the subprocess timeout is what fails there.
        res = tp(*command, timeout=30)
        assert res.code == 2, res
        first = res.err.strip().splitlines()[0]
        assert first.startswith("bomb.yaml:6:") and "too many aliases" in first, res.err
        assert "Traceback" not in res.err
    assert "bomb" not in tp.ok("jobs").out
