"""The peer harness: the same workloads as whole processes, taskplan against Luigi and Prefect.

`python -m benchmarks.peers [--repeat N] [--rows chain200,wide1000,stages10x100]
[--prefect-python PATH]`, run by hand. Neither peer is a dependency of taskplan:

- Luigi: `pip install luigi` into the same environment first.
- Prefect: its own environment (`python3 -m venv /tmp/prefect && /tmp/prefect/bin/pip install
  prefect`; installed beside taskplan it would move shared dependencies such as FastAPI), given
  with `--prefect-python /tmp/prefect/bin/python`; or the same environment, if it has Prefect.

A peer that is not there is left out (a line on stderr says so); taskplan's walls are always
printed.

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
- Prefect (3.x): `python FLOWS.py ROW`, one flow of no-op `@task`s on a `ThreadPoolTaskRunner`
  of N workers: chain200 calls its tasks one after the other, wide1000 submits all and waits,
  stages10x100 submits a stage's 100 and waits for them before the next. Without a Prefect
  server configured, as on a fresh install, each process starts Prefect's temporary local
  server on a SQLite database under PREFECT_HOME (one directory for the whole harness, made
  before the first timed run, as a user's home is). Telemetry is off
  (PREFECT_SERVER_ANALYTICS_ENABLED=false): this machine has no network to send it to. The
  flow prints how many tasks ran and the harness checks it.

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
are printed; Luigi is the faster peer on every row here, and the ratio to Prefect is printed
beside it). The figure is the median of the repetitions; compare within one
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
from collections.abc import Callable

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


PREFECT_FLOWS = '''"""No-op Prefect flows shaped like taskplan's benchmark jobs."""
import sys

from prefect import flow, task
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner


@task
def noop(i: int) -> int:
    return 1


def chain200() -> int:
    return sum(noop(i) for i in range(200))


def wide1000() -> int:
    futures = [noop.submit(i) for i in range(1000)]
    wait(futures)
    return sum(f.result() for f in futures)


def stages10x100() -> int:
    ran = 0
    for s in range(10):
        futures = [noop.submit(s * 100 + i) for i in range(100)]
        wait(futures)
        ran += sum(f.result() for f in futures)
    return ran


if __name__ == "__main__":
    row, workers = sys.argv[1], int(sys.argv[2])
    body = {"chain200": chain200, "wide1000": wide1000, "stages10x100": stages10x100}[row]
    ran = flow(name=row, task_runner=ThreadPoolTaskRunner(max_workers=workers))(body)()
    print(f"ran {ran}", file=sys.stderr)
'''
EXPECTED = {"chain200": 200, "wide1000": 1000, "stages10x100": 1000}


def _fresh(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)


def _timed(argv: list[str], cwd: str, env: dict[str, str]) -> tuple[float, str]:
    """The process's wall and its stderr."""
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, check=False)
    took = time.perf_counter() - start
    err = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        tail = err.strip().splitlines()[-3:]
        raise SystemExit(f"{argv[0]} failed (exit {proc.returncode}): {' | '.join(tail)}")
    return took, err


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
        took.append(_timed(argv, work, _env(cache))[0])
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
    took, _ = _timed([luigi, "--module", "peer_tasks", "Top", "--row", row,
                      "--local-scheduler", "--workers", str(workers), "--log-level", "WARNING"],
                     work, env)
    expected = EXPECTED[row] + (10 if row == "stages10x100" else 0)  # and its barriers
    if len(os.listdir(out)) != expected:
        raise SystemExit(f"luigi {row}: {len(os.listdir(out))} tasks ran, not {expected}")
    return took


def prefect_env(work: str) -> dict[str, str]:
    env = _env()
    env.update(PYTHONPATH=work, PREFECT_HOME=os.path.join(work, "prefect-home"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.pop("PREFECT_API_URL", None)  # a fresh install's: the temporary local server
    return env


def prefect_wall(python: str, work: str, row: str) -> float:
    took, err = _timed([python, os.path.join(work, "peer_flows.py"), row, str(ROWS[row][0])],
                       work, prefect_env(work))
    ran = [line for line in err.splitlines() if line.startswith("ran ")]
    if ran != [f"ran {EXPECTED[row]}"]:
        raise SystemExit(f"prefect {row}: {ran or 'no count'}, not {EXPECTED[row]} tasks")
    return took


def prefect_python(asked: str | None) -> str | None:
    """The interpreter that has Prefect: the one asked for, else this one if it has it."""
    if asked is not None:
        try:
            probe = subprocess.run([asked, "-c", "import prefect"], capture_output=True,
                                   check=False)
        except OSError as exc:
            raise SystemExit(f"--prefect-python {asked}: {exc.strerror}") from None
        if probe.returncode != 0:
            raise SystemExit(f"--prefect-python {asked}: cannot import prefect there")
        return asked
    return sys.executable if importlib.util.find_spec("prefect") is not None else None


def _median_or_none(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _ratio(ours: float, theirs: float | None) -> str:
    return "-" if theirs is None else f"{ours / theirs:.3f}"


def _secs(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--prefect-python", metavar="PATH",
                        help="a Python that has Prefect (default: this one, if it has it)")
    args = parser.parse_args(argv)
    rows = [r for r in args.rows.split(",") if r]
    if not rows:
        parser.error(f"--rows names no row; known: {','.join(ROWS)}")
    unknown = [r for r in rows if r not in ROWS]
    if unknown or args.repeat < 1:
        parser.error(f"unknown rows {unknown}; known: {','.join(ROWS)}" if unknown
                     else "--repeat must be at least 1")
    python = prefect_python(args.prefect_python)  # a bad --prefect-python stops us first
    peers: dict[str, Callable[[str, str], float]] = {}
    if importlib.util.find_spec("luigi") is not None:
        peers["luigi"] = luigi_wall
    else:
        print("luigi is not installed here (pip install luigi): left out", file=sys.stderr)
    if python is not None:
        peers["prefect"] = lambda work, row: prefect_wall(python, work, row)
    else:
        print("prefect is not installed here (see --prefect-python): left out",
              file=sys.stderr)
    _bytecode()
    results: dict[str, tuple[float, float, dict[str, float | None]]] = {}
    with tempfile.TemporaryDirectory(prefix="taskplan-peers-") as work:
        write_noop_module(work)
        with open(os.path.join(work, "peer_tasks.py"), "w", encoding="utf-8") as fh:
            fh.write(LUIGI_MODULE)
        with open(os.path.join(work, "peer_flows.py"), "w", encoding="utf-8") as fh:
            fh.write(PREFECT_FLOWS)
        open(os.path.join(work, "luigi.cfg"), "w", encoding="utf-8").close()
        if python is not None:
            # Prefect's first start creates its database: a user's first run, not timed.
            _timed([python, "-c", "from prefect import flow; flow(lambda: None)()"], work,
                   prefect_env(work))
        for row in rows:
            firsts, ours = [], []
            theirs: dict[str, list[float]] = {name: [] for name in peers}
            for i in range(args.repeat):
                # Alternated, so a change in the machine's load falls on all.
                first, again = taskplan_walls(work, row)
                firsts.append(first)
                ours.append(again)
                shown = f"taskplan {first:.3f} s first, {again:.3f} s again"
                for name, wall in peers.items():
                    theirs[name].append(wall(work, row))
                    shown += f", {name} {theirs[name][-1]:.3f} s"
                print(f"  {row} #{i + 1}: {shown}", file=sys.stderr, flush=True)
            results[row] = (statistics.median(firsts), statistics.median(ours),
                            {name: _median_or_none(xs) for name, xs in theirs.items()})
    print(f"\npeer harness, median of {args.repeat}, whole processes, SQLite store for"
          f" taskplan (nproc={os.cpu_count()}); 'first': the file's first run (parsed and"
          " checked), 'again': the same file run again (found checked); target and verdict:"
          " 'again' against Luigi")
    print(f"{'row':<14} {'first s':>8} {'again s':>8} {'luigi s':>8} {'prefect s':>9}"
          f" {'first/luigi':>11} {'again/luigi':>11} {'again/prefect':>13} {'target':>7}  met")
    for row, (first_s, ours_s, walls) in results.items():
        limit = ROWS[row][2]
        luigi_s, prefect_s = walls.get("luigi"), walls.get("prefect")
        met = "" if luigi_s is None else ("yes" if ours_s / luigi_s <= limit else "NO")
        print(f"{row:<14} {first_s:>8.3f} {ours_s:>8.3f} {_secs(luigi_s):>8}"
              f" {_secs(prefect_s):>9} {_ratio(first_s, luigi_s):>11}"
              f" {_ratio(ours_s, luigi_s):>11} {_ratio(ours_s, prefect_s):>13}"
              f" {'≤ ' + str(limit):>7}  {met}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
