"""Task code for files.yaml: list the files, load one file, summarise."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def list_files(ctx: Any) -> list[dict[str, str]]:
    folder = HERE / ctx.params["folder"]
    return [{"path": str(p), "name": p.name} for p in sorted(folder.glob("*.csv"))]


def summary(ctx: Any) -> dict[str, int]:
    out = HERE / "loaded"
    return {"files": len(list(out.glob("*.count"))) if out.exists() else 0}


def load(path: str) -> None:
    with open(path, newline="") as fh:
        rows = sum(1 for _ in csv.DictReader(fh))
    out = HERE / "loaded"
    out.mkdir(exist_ok=True)
    (out / (Path(path).name + ".count")).write_text(f"{rows}\n")
    print(f"{path}: {rows} rows (item {os.environ.get('TASKPLAN_ITEM_NAME')})")


if __name__ == "__main__" and sys.argv[1:2] == ["load"]:
    load(sys.argv[2])
