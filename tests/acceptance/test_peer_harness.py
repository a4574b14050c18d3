"""The peer harness (benchmarks/peers.py) as a user runs it by hand: what it needs of a peer,
and that the job it times really runs. Its walls are figures, never asserted here."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks import peers

ROOT = Path(__file__).resolve().parents[2]


def harness(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "benchmarks.peers", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def test_a_python_without_prefect_is_refused_in_one_line() -> None:
    if _has("prefect"):
        pytest.skip("this environment has Prefect")
    got = harness("--prefect-python", sys.executable)
    assert got.returncode == 1
    assert got.stderr.strip().splitlines() == [
        f"--prefect-python {sys.executable}: cannot import prefect there"]


def test_a_missing_interpreter_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-python"
    got = harness("--prefect-python", str(missing))
    assert got.returncode == 1
    assert got.stderr.strip() == f"--prefect-python {missing}: No such file or directory"


def test_an_unknown_row_is_refused() -> None:
    got = harness("--rows", "chain200,wide9")
    assert got.returncode == 2
    assert "unknown rows ['wide9']" in got.stderr


def test_the_flows_and_tasks_given_to_the_peers_are_python() -> None:
    compile(peers.PREFECT_FLOWS, "peer_flows.py", "exec")
    compile(peers.LUIGI_MODULE, "peer_tasks.py", "exec")


@pytest.mark.slow
def test_taskplan_s_row_runs_and_the_table_names_each_peer_left_out() -> None:
    got = harness("--repeat", "1", "--rows", "chain200")
    assert got.returncode == 0, got.stderr
    row = [line for line in got.stdout.splitlines() if line.startswith("chain200 ")]
    assert len(row) == 1
    first, again = (float(x) for x in row[0].split()[1:3])
    assert first > 0 and again > 0
    for name in ("luigi", "prefect"):
        if not _has(name):
            assert f"{name} is not installed here" in got.stderr


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None

