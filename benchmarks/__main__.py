"""`python -m benchmarks all|ROW... [--db sqlite|URL] [--repeat N] [--json PATH]`.

The parent runs each row in a child process (`--child ROW`) that repeats it on fresh stores and
prints its figures as one JSON line; the parent prints the table and writes the JSON file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
from typing import Any

from benchmarks import report, targets
from benchmarks.commands import COMMAND_WORKLOADS
from benchmarks.scale import agents_scale
from benchmarks.workloads import WORKLOADS as ENGINE_WORKLOADS
from benchmarks.workloads import summary, write_noop_module

WORKLOADS = {**ENGINE_WORKLOADS, **COMMAND_WORKLOADS, "agents_scale": agents_scale}

DERIVED = ("wide1000_vs_floor", "cli_vs_floor", "cli_wide1000_vs_floor",
           "wide1000_tasks_vs_floor")
# Rows `all` leaves out on PostgreSQL (still runnable by name): fanout100k takes ~10x
# fanout10k (~4-5 min a repetition here), and the plan's PostgreSQL rows were asked without
# sched_jitter (60 s a repetition, scheduler and agent in one process).
# fanout1m and history1m (a million items / finished runs) are run by name, once, late;
# fanout100k_stream is fanout1m's shape at 100,000 items (its memory is compared with it).
PG_SKIP_IN_ALL = ("fanout100k", "fanout100k_stream", "fanout1m", "history1m", "sched_jitter",
                  "web_run100k",
                  *(n for n in COMMAND_WORKLOADS if n != "cli_wide1000"))
# Rows `all` leaves out on SQLite: agents_scale is a PostgreSQL row.
SQLITE_SKIP_IN_ALL = ("agents_scale", "fanout100k_stream", "fanout1m", "history1m")
HERE = os.path.dirname(os.path.abspath(__file__))


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def child(row: str, db: str, repeat: int) -> dict[str, Any]:
    """Run one row `repeat` times in this process; return its figures."""
    with tempfile.TemporaryDirectory(prefix=f"taskplan-bench-{row}-") as workdir:
        write_noop_module(workdir)
        target = targets.Target(db, workdir)
        reps: list[dict[str, float]] = []
        for i in range(repeat):
            figures = WORKLOADS[row](target)
            reps.append(figures)
            shown = ", ".join(f"{k}={v:.4g}" for k, v in figures.items())
            print(f"  {row} #{i + 1}: {shown}", file=sys.stderr, flush=True)
    keys = list(reps[0])
    return {
        "figures": {k: summary([r[k] for r in reps]) for k in keys},
        "peak_rss_mb": _peak_rss_mb(),
    }


def _run_child(row: str, db: str, repeat: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks", "--child", row, "--db", db,
           "--repeat", str(repeat)]
    env = dict(os.environ)
    root = os.path.dirname(HERE)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"row {row} failed (exit {proc.returncode})")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _source() -> dict[str, Any]:
    """The commit measured, and whether src/ had uncommitted changes (a moving target)."""
    root = os.path.dirname(HERE)

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  check=False).stdout
        except OSError:
            return ""

    dirty = git("status", "--porcelain", "--", "src")
    return {"commit": git("rev-parse", "--short", "HEAD").strip(),
            "src_dirty": [line[3:] for line in dirty.splitlines() if line.strip()]}


def _vs_floor(rows: dict[str, Any]) -> dict[str, Any] | None:
    """wide1000 tasks/s * 2 transitions per task, as a % of the floor's transitions/s.

    PostgreSQL: of the 8-connection floor (the plan: "above the unbatched floor")."""
    if "wide1000" not in rows or "floor" not in rows:
        return None
    wide = rows["wide1000"]["figures"]["tasks_per_s"]
    floor_figures = rows["floor"]["figures"]
    fl = floor_figures.get("transitions_per_s_8conn", floor_figures["transitions_per_s"])
    pct = {k: wide[k] * 2 / fl[k] * 100 for k in ("median", "min", "max")}
    # Repetitions are not paired: the range is the widest the two ranges allow.
    pct["min"] = wide["min"] * 2 / fl["max"] * 100
    pct["max"] = wide["max"] * 2 / fl["min"] * 100
    pct["values"] = []
    return {"figures": {"percent": pct}, "peak_rss_mb": None}


def _cli_vs_floor(rows: dict[str, Any]) -> dict[str, Any] | None:
    """Issue #15's target 4 through the CLI, against the SQLite floor of the same invocation:
    wide1000 tasks/s x 2 as a % of the floor's transitions/s, and a chain hop (its mean,
    and its p50) in floor transitions."""
    floor_figures = rows.get("floor", {}).get("figures", {})
    if "transitions_per_s" not in floor_figures or "transitions_per_s_8conn" in floor_figures:
        return None  # PostgreSQL: _pg_vs_floor
    per_transition_ms = 1000 / rows["floor"]["figures"]["transitions_per_s"]["median"]
    figures: dict[str, Any] = {}

    def add(key: str, value: float) -> None:
        figures[key] = {"median": value, "min": value, "max": value, "values": []}

    wide = rows.get("cli_wide1000", {}).get("figures", {}).get("tasks_per_s")
    if wide is not None:
        add("wide1000_percent", wide["median"] * 2 * per_transition_ms / 10)
    chain = rows.get("cli_chain200", {}).get("figures", {})
    if "ms_per_hop" in chain:
        add("hop_in_floor_transitions", chain["ms_per_hop"]["median"] / per_transition_ms)
        add("hop_p50_in_floor_transitions",
            chain["hop_p50_ms"]["median"] / per_transition_ms)
        add("hop_p99_over_p50", chain["hop_p99_ms"]["median"] / chain["hop_p50_ms"]["median"])
    return {"figures": figures, "peak_rss_mb": None} if figures else None


def _pg_vs_floor(rows: dict[str, Any]) -> dict[str, Any]:
    """Issue #15's target 4 on PostgreSQL, against the 8-connection floor of the same
    invocation: tasks/s (not x 2) as a % of its transitions/s, of `taskplan run`'s in-process
    agent (`cli_wide1000_vs_floor`, at least 100 %) and of the 2 x 4-slot agents
    (`wide1000_tasks_vs_floor`, at least 150 %)."""
    floor_figures = rows.get("floor", {}).get("figures", {})
    out: dict[str, Any] = {}
    if "transitions_per_s_8conn" not in floor_figures:
        return out
    fl = floor_figures["transitions_per_s_8conn"]
    for name, row in ((DERIVED[2], "cli_wide1000"), (DERIVED[3], "wide1000")):
        got = rows.get(row, {}).get("figures", {}).get("tasks_per_s")
        if got is None:
            continue
        # Repetitions are not paired: the range is the widest the two ranges allow.
        pct = {"median": got["median"] / fl["median"] * 100,
               "min": got["min"] / fl["max"] * 100, "max": got["max"] / fl["min"] * 100,
               "values": []}
        out[name] = {"figures": {"percent": pct}, "peak_rss_mb": None}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("rows", nargs="*", help="'all' or row names: " + " ".join(WORKLOADS))
    parser.add_argument("--db", default="sqlite",
                        help="'sqlite' (a fresh temp file per repetition) or a store URL")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", dest="json_path", default=None,
                        help="where to write the results (default benchmarks/results/<ts>.json)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    if args.child:
        print(json.dumps(child(args.child, args.db, args.repeat)), flush=True)
        return 0

    if not args.rows:
        parser.error(f"name the rows to run, or all: {' '.join(WORKLOADS)}")
    unknown = [n for n in args.rows if n != "all" and n not in WORKLOADS]
    if unknown:
        parser.error(f"unknown rows {unknown}; known: all {' '.join(WORKLOADS)}")
    names = args.rows
    if "all" in args.rows:
        pg = args.db != "sqlite" and targets.Target(args.db, "").backend == "postgresql"
        skip = PG_SKIP_IN_ALL if pg else SQLITE_SKIP_IN_ALL
        names = [n for n in WORKLOADS if n not in skip]
    targets.check(args.db)
    on_pg = args.db != "sqlite" and targets.Target(args.db, "").backend == "postgresql"
    if not on_pg and "agents_scale" in names:
        parser.error("agents_scale runs on PostgreSQL: --db postgresql://...")
    sqlite_only = [n for n in names if n in COMMAND_WORKLOADS and n != "cli_wide1000"]
    if on_pg and sqlite_only:
        parser.error(f"{' '.join(sqlite_only)}: command-level rows run on SQLite (a user's"
                     " first store); of them only cli_wide1000 also runs on PostgreSQL")
    json_path = _json_path(args.json_path)

    started = dt.datetime.now().astimezone()
    doc: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "machine": report.machine(),
        "db": args.db if args.db == "sqlite" else "url:" + targets.Target(args.db, "").backend,
        "repeat": args.repeat,
        "source": _source(),
        "rows": {},
    }
    for name in names:
        print(f"{name} ...", file=sys.stderr, flush=True)
        doc["rows"][name] = _run_child(name, args.db, args.repeat)
    derived = _vs_floor(doc["rows"])
    if derived is not None:
        doc["rows"][DERIVED[0]] = derived
    through_cli = _cli_vs_floor(doc["rows"])
    if through_cli is not None:
        doc["rows"][DERIVED[1]] = through_cli
    doc["rows"].update(_pg_vs_floor(doc["rows"]))

    print()
    print(f"taskplan benchmarks, {doc['date']}, db={doc['db']}, "
          f"median of {args.repeat} (min-max)")
    m = doc["machine"]
    print(f"nproc={m['nproc']} python={m['python']} sqlite={m['sqlite']}"
          f" commit={doc['source']['commit']}"
          + (" src dirty: " + " ".join(doc["source"]["src_dirty"])
             if doc["source"]["src_dirty"] else ""))
    print(report.table(doc))

    path = json_path or os.path.join(
        HERE, "results", started.strftime("%Y%m%dT%H%M%S") + ".json")
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
    except OSError as exc:
        raise SystemExit(f"--json {path}: cannot write: {exc.strerror or exc}") from None
    print(f"\nwrote {path}")
    return 0


def _json_path(path: str | None) -> str | None:
    """--json checked before any row runs (rows take minutes): a file that can be written,
    its folder made if missing."""
    if path is None:
        return None
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise SystemExit(f"--json {path}: a folder, not a file")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise SystemExit(f"--json {path}: cannot make {folder}: {exc.strerror or exc}") from None
    existed = os.path.exists(path)
    try:  # the real test (a name too long, /proc, a read-only mount, permissions as root)
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise SystemExit(f"--json {path}: cannot write: {exc.strerror or exc}") from None
    if not existed:
        os.remove(path)
    return path


if __name__ == "__main__":
    sys.exit(main())
