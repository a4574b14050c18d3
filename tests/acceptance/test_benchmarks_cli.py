"""`python -m benchmarks` refusing what it cannot run, each in one line and before any row
starts (a row's figures are never asserted here)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unknown_row_is_named_with_the_known_ones() -> None:
    got = bench("floor", "wide9")
    assert got.returncode == 2
    last = got.stderr.strip().splitlines()[-1]
    assert "unknown rows ['wide9']" in last and "cli_wide1000" in last


def test_a_store_of_another_kind_is_refused() -> None:
    got = bench("floor", "--db", "mysql://root@127.0.0.1/test")
    assert got.returncode == 1
    assert got.stderr.strip() == (
        "--db mysql://root@127.0.0.1/test: expected 'sqlite', sqlite:/// or postgresql://")


def test_an_unreachable_server_is_one_line_without_its_password() -> None:
    url = f"postgresql://bench:s3cret@127.0.0.1:{_closed_port()}/postgres"
    got = bench("floor", "--db", url, "--repeat", "1")
    assert got.returncode == 1
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("--db postgresql://bench:") and ": cannot connect: " in lines[0]
    assert "s3cret" not in got.stderr
    assert got.stdout == ""


def test_no_repetitions_is_refused() -> None:
    got = bench("floor", "--repeat", "0")
    assert got.returncode == 2
    assert got.stderr.strip().splitlines()[-1].endswith("--repeat must be at least 1")
