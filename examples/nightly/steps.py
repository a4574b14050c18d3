"""Stand-ins for extract scripts: they print progress, sleep a little, and write a marker."""

import os
import sys
import time
from pathlib import Path

WORK = Path(os.environ.get("NIGHTLY_WORK", "work"))


def extract(table: str, day: str) -> None:
    WORK.mkdir(exist_ok=True)
    for pct in (25, 50, 75, 100):
        print(f"extract {table} for {day}: {pct}%", flush=True)
        time.sleep(0.15)
    (WORK / f"{table}.csv").write_text(f"{table},{day}\n")


def flaky(table: str) -> None:
    # Fails on the first attempt of each run so the retry is visible.
    if os.environ.get("TASKPLAN_ATTEMPT") == "1":
        print(f"extract {table}: source not ready yet", file=sys.stderr)
        sys.exit(3)
    extract(table, "today")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"extract": extract, "flaky": flaky}[command](*args)
