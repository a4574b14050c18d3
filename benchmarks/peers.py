"""The peer harness: the same workloads as whole processes, taskplan against Luigi.

`python -m benchmarks.peers [--repeat N] [--rows chain200,wide1000,stages10x100]`, run by hand
(Luigi is not a dependency of taskplan: `pip install luigi` into the same environment first;
without it only taskplan's walls are printed).

What a user times: one process from start to exit, its output on a pipe.

- taskplan: `taskplan --db sqlite:///FILE run JOB.yaml --workers N` on a fresh store (the file
  is removed before every repetition), the benchmark jobs of benchmarks/workloads.py (no-op
  python tasks, `in_process: true`).
- Luigi: `luigi --module MODULE Top --local-scheduler --workers N` on the same graph of no-op
  tasks, each writing an empty marker file as its output (Luigi decides that a task is
  complete, before running it and before running its dependants, from its outputs; a task
  without any would run again). Luigi runs a task in its worker process with one worker and
  forks a process per task with several, as it does for its users. Its log level is WARNING
  (`--log-level WARNING`): at its default, DEBUG, its per-task lines on the pipe cost it up to
  half of its chain200 wall here, and the comparison should not lean on that.

Workers: 1 for chain200, 8 for the others, on both. Graphs: chain200 is 200 tasks each
depending on the previous one; wide1000 is 1,000 independent tasks (Luigi: one `Top` wrapper
task requires them all); stages10x100 is 10 stages of 100 tasks where every task of a stage
waits for every task of the stage before. taskplan does that with one barrier per stage, so
the Luigi graph gets one no-op barrier task per stage too (the kindest equivalent for Luigi:
100 x 100 direct requirements would make every task check 100 outputs).

taskplan is timed twice per repetition, each on a fresh store with an empty cache of checked
job files: the file's first run (parsed and checked) and the same file again (found in the
cache, as every later run of an unchanged file is). Luigi's module is compiled to bytecode
after its first repetition, as Python does for it.

Targets (issue #15): taskplan's wall at most half of Luigi's on chain200, at most a tenth on
wide1000 and stages10x100 (the verdict is on the run of a file already checked; both ratios
are printed). The figure is the median of the repetitions; compare within one
run only (this machine is shared).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.commands import TASKPLAN, _bytecode, _env
from benchmarks.workloads import chain_text, stages_text, wide_text, write_noop_module

# row -> (workers, taskplan job text, the largest share of Luigi's wall allowed)
ROWS = {
    "chain200": (1, chain_text(200), 0.5),
    "wide1000": (8, wide_text(1000), 0.1),
    "stages10x100": (8, stages_text(10, 100), 0.1),
}

LUIGI_MODULE = '''"""No-op Luigi tasks shaped like taskplan's benchmark jobs."""
import os

import luigi

OUT = os.environ["PEERS_OUT"]


class Noop(luigi.Task):
    def output(self):
        return luigi.LocalTarget(os.path.join(OUT, self.task_id))

    def run(self):
        with self.output().open("w"):
            pass


class Link(Noop):  # chain200: each task requires the previous one
    i = luigi.IntParameter()

    def requires(self):
        return [Link(i=self.i - 1)] if self.i else []


class Leaf(Noop):  # wide1000: independent tasks
    i = luigi.IntParameter()


class StageTask(Noop):  # stages10x100: a task of stage s waits for stage s - 1's barrier
    s = luigi.IntParameter()
    i = luigi.IntParameter()

    def requires(self):
        return [Barrier(s=self.s - 1)] if self.s > 1 else []


class Barrier(Noop):  # done when every task of its stage is
    s = luigi.IntParameter()

    def requires(self):
        return [StageTask(s=self.s, i=i) for i in range(100)]


class Top(luigi.WrapperTask):
    row = luigi.Parameter()

    def requires(self):
        if self.row == "chain200":
            return [Link(i=199)]
        if self.row == "wide1000":
            return [Leaf(i=i) for i in range(1000)]
        return [Barrier(s=10)]
'''


def _fresh(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)


def _timed(argv: list[str], cwd: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, check=False)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise SystemExit(f"{argv[0]} failed (exit {proc.returncode}): {' | '.join(tail)}")
    return took


def taskplan_walls(work: str, row: str) -> tuple[float, float]:
    """The first run of the file (it is parsed and checked), then the same file again (found
    in the cache of checked job files), each on a fresh store."""
    workers, text, _ = ROWS[row]
    job = os.path.join(work, f"{row}.yaml")
    with open(job, "w", encoding="utf-8") as fh:
        fh.write(text)
    store = os.path.join(work, f"{row}.db")
    cache = tempfile.mkdtemp(dir=work, prefix="checked-")
    argv = [TASKPLAN, "--db", f"sqlite:///{store}", "run", job, "--workers", str(workers)]
    took = []
    for _ in range(2):
        _fresh(store)
        took.append(_timed(argv, work, _env(cache)))
    shutil.rmtree(cache)
    return took[0], took[1]


def luigi_wall(work: str, row: str) -> float:
    workers = ROWS[row][0]
    out = os.path.join(work, f"luigi-{row}")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    env = _env()
    env.update(PYTHONPATH=work, PEERS_OUT=out)
    # No luigi.cfg of the user's: the defaults, as a fresh install has them.
    env["LUIGI_CONFIG_PATH"] = os.path.join(work, "luigi.cfg")
    luigi = os.path.join(os.path.dirname(sys.executable), "luigi")
    took = _timed([luigi, "--module", "peer_tasks", "Top", "--row", row, "--local-scheduler",
                   "--workers", str(workers), "--log-level", "WARNING"], work, env)
    expected = {"chain200": 200, "wide1000": 1000, "stages10x100": 1010}[row]
    if len(os.listdir(out)) != expected:
        raise SystemExit(f"luigi {row}: {len(os.listdir(out))} tasks ran, not {expected}")
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rows", default=",".join(ROWS))
    args = parser.parse_args(argv)
    rows = [r for r in args.rows.split(",") if r]
    unknown = [r for r in rows if r not in ROWS]
    if unknown or args.repeat < 1:
        parser.error(f"unknown rows {unknown}; known: {','.join(ROWS)}" if unknown
                     else "--repeat must be at least 1")
    have_luigi = importlib.util.find_spec("luigi") is not None
    if not have_luigi:
        print("luigi is not installed here (pip install luigi): taskplan only",
              file=sys.stderr)
    _bytecode()
    results: dict[str, tuple[float, float, float | None]] = {}
    with tempfile.TemporaryDirectory(prefix="taskplan-peers-") as work:
        write_noop_module(work)
        with open(os.path.join(work, "peer_tasks.py"), "w", encoding="utf-8") as fh:
            fh.write(LUIGI_MODULE)
        open(os.path.join(work, "luigi.cfg"), "w", encoding="utf-8").close()
        for row in rows:
            firsts, ours, theirs = [], [], []
            for i in range(args.repeat):
                # Alternated, so a change in the machine's load falls on both.
                first, again = taskplan_walls(work, row)
                firsts.append(first)
                ours.append(again)
                if have_luigi:
                    theirs.append(luigi_wall(work, row))
                shown = f"taskplan {first:.3f} s first, {again:.3f} s again" + (
                    f", luigi {theirs[-1]:.3f} s" if theirs else "")
                print(f"  {row} #{i + 1}: {shown}", file=sys.stderr, flush=True)
            results[row] = (statistics.median(firsts), statistics.median(ours),
                            statistics.median(theirs) if theirs else None)
    print(f"\npeer harness, median of {args.repeat}, whole processes, SQLite store for"
          f" taskplan (nproc={os.cpu_count()}); 'first': the file's first run (parsed and"
          " checked), 'again': the same file run again (found checked)")
    print(f"{'row':<14} {'first s':>8} {'again s':>8} {'luigi s':>8} {'first/luigi':>11}"
          f" {'again/luigi':>11} {'target':>7}  met")
    for row, (first_s, ours_s, theirs_s) in results.items():
        limit = ROWS[row][2]
        if theirs_s is None:
            print(f"{row:<14} {first_s:>8.3f} {ours_s:>8.3f} {'-':>8} {'-':>11} {'-':>11}"
                  f" {'≤ ' + str(limit):>7}")
            continue
        print(f"{row:<14} {first_s:>8.3f} {ours_s:>8.3f} {theirs_s:>8.3f}"
              f" {first_s / theirs_s:>11.3f} {ours_s / theirs_s:>11.3f}"
              f" {'≤ ' + str(limit):>7}  {'yes' if ours_s / theirs_s <= limit else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
