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


def test_a_json_path_that_cannot_be_written_is_refused_before_any_row(tmp_path: Path) -> None:
    got = bench("floor", "--json", str(tmp_path))
    assert got.returncode == 1
    assert got.stderr.strip() == f"--json {tmp_path}: a folder, not a file"
    blocker = tmp_path / "file"
    blocker.write_text("")
    got = bench("floor", "--json", str(blocker / "out.json"))
    assert got.returncode == 1
    assert got.stderr.strip().startswith(f"--json {blocker / 'out.json'}: cannot make {blocker}")
    assert "floor ..." not in got.stderr  # no row ran


def test_a_sqlite_file_in_a_missing_folder_is_refused() -> None:
    got = bench("load1000", "--db", "sqlite:////nonexistent-folder/x.db")
    assert got.returncode == 1
    assert got.stderr.strip() == ("--db sqlite:////nonexistent-folder/x.db:"
                                  " no folder /nonexistent-folder")


def test_a_postgresql_row_on_sqlite_is_refused() -> None:
    got = bench("agents_scale")
    assert got.returncode == 2
    assert got.stderr.strip().splitlines()[-1].endswith(
        "agents_scale runs on PostgreSQL: --db postgresql://...")


def test_the_floor_leaves_a_users_store_file_alone(tmp_path: Path) -> None:
    # --db sqlite:///FILE reuses one store for every row; the floor's own table goes to a
    # file of its own beside it, so a second invocation works too.
    store = tmp_path / "mine.db"
    for _ in range(2):
        got = bench("floor", "--repeat", "1", "--db", f"sqlite:///{store}",
                    "--json", str(tmp_path / "out.json"))
        assert got.returncode == 0, got.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_the_peer_harness_needs_a_row() -> None:
    got = subprocess.run([sys.executable, "-m", "benchmarks.peers", "--rows", ","], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert got.returncode == 2
    assert got.stderr.strip().splitlines()[-1].endswith("--rows names no row; known:"
                                                       " chain200,wide1000,stages10x100")


def test_rows_must_be_named_and_all_does_not_hide_an_unknown_one() -> None:
    got = bench()
    assert got.returncode == 2
    assert "error: name the rows to run, or all: chain200 " in got.stderr
    got = bench("all", "wide9")
    assert got.returncode == 2
    assert "unknown rows ['wide9']" in got.stderr.strip().splitlines()[-1]
    assert "chain200 ...\n" not in got.stderr  # no row ran


def test_a_json_file_that_cannot_be_made_is_refused_before_any_row(tmp_path: Path) -> None:
    too_long = tmp_path / ("a" * 300 + ".json")
    got = bench("floor", "--json", str(too_long))
    assert got.returncode == 1
    assert got.stderr.strip() == f"--json {too_long}: cannot write: File name too long"
    writable = tmp_path / "fine.json"
    assert bench("nosuch", "--json", str(writable)).returncode == 2
    assert not writable.exists()  # checking it left nothing behind
