"""The SQLite store's file system fills up, turns read-only, or another program holds its write
lock: one clear line naming the store, nothing committed lost, no corruption, and a run that
carries on once the fault is gone."""

from __future__ import annotations

import os
import re
import resource
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from acceptance_helpers import TASKPLAN, Taskplan, clean_env

from taskplan.errors import StoreUnavailableError
from taskplan.store.db import Store
from taskplan.store.dialects.sqlite import FILE_CHECK_EVERY

ITEMS = 12


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def _small_files() -> None:
    # A file-size limit acts like a full disk for this process: writes past it fail (EFBIG)
    # instead of killing it, since SIGXFSZ is ignored. The hard limit stays open, so the test
    # can give the space back with prlimit.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, resource.RLIM_INFINITY))


def test_full_disk_mid_run_is_ridden_out_and_loses_nothing(tp: Taskplan) -> None:
    tp.write("noisy.yaml", f"""
        job: noisy
        tasks:
          each:
            foreach: {{values: {list(range(ITEMS))}}}
            shell: 'head -c 45000 /dev/zero | tr "\\0" x; echo " item $TASKPLAN_ITEM"'
          after: {{shell: "echo done", depends_on: [each]}}
        """)
    tp.ok("apply", "noisy.yaml")
    proc = subprocess.Popen(
        [TASKPLAN, "--db", tp.url, "run", "noisy.yaml"], cwd=tp.home, env=clean_env(),
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        preexec_fn=_small_files)
    tp.started.append(proc)
    lines: list[str] = []
    full = threading.Event()

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "disk" in line:
                full.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    assert full.wait(60), "".join(lines)
    assert proc.poll() is None, "".join(lines)  # riding it out, not dead
    assert integrity(tp.db_path) == "ok"  # while the disk is full
    resource.prlimit(proc.pid, resource.RLIMIT_FSIZE,
                     (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    out, _ = proc.communicate(timeout=120)
    reader.join(10)
    err = "".join(lines)
    assert proc.returncode == 0, out + err
    assert f"SQLite store {tp.db_path} could not be written" in err
    assert "Traceback" not in err
    assert integrity(tp.db_path) == "ok"
    status = tp.status(1)
    assert status["state"] == "succeeded"
    items = [t for t in status["tasks"] if t["kind"] == "item"]
    # Every item ran once and its whole output was kept through the outage.
    assert len(items) == ITEMS and all(t["attempts"] == 1 for t in items)
    for i in (0, ITEMS - 1):
        log = tp.ok("logs", "1", "each", "--item", str(i)).out
        assert log == "x" * 45000 + f" item {i}\n"


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another program in a long write transaction."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("CREATE TABLE other_program (x INTEGER)")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_store_locked_by_another_program_fails_cleanly_after_the_busy_timeout(
        tp: Taskplan) -> None:
    tp.write("job.yaml", "job: j\ntasks:\n  a: {shell: 'true'}\n")
    tp.ok("apply", "job.yaml")
    env = {"TASKPLAN_SQLITE_BUSY_TIMEOUT": "1"}
    with write_lock_held(tp.db_path):
        assert tp.ok("jobs", env=env).out  # readers are not blocked (WAL)
        res = tp("run", "job.yaml", env=env, timeout=30)
    assert res.code == 3, res
    assert res.err.strip() == (
        f"taskplan: SQLite store {tp.db_path} is locked by another program (still locked "
        "after the busy timeout of 1s): database is locked"), res.err
    conn = sqlite3.connect(tp.db_path)
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone() == (0,)  # nothing half-written
    conn.close()
    assert tp("run", "job.yaml").code == 0  # and fine once the lock is gone


@contextmanager
def read_only_folder(folder: Path) -> Iterator[None]:
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.iterdir()]}
        for p in modes:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    # root ignores permissions: make the file system itself read-only.
    if subprocess.run(["mount", "--bind", str(folder), str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("root without the right to mount: cannot make a read-only folder")
    subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_read_only_store_fails_with_one_line(tp: Taskplan, tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    url = f"sqlite:///{folder / 'taskplan.db'}"
    Store(url).close()  # created while writable
    tp.write("job.yaml", "job: j\ntasks:\n  a: {shell: 'true'}\n")
    with read_only_folder(folder):
        res = subprocess.run([TASKPLAN, "--db", url, "run", "job.yaml"], cwd=tp.home,
                             env=clean_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 3, res
    [line] = res.stderr.strip().splitlines()
    assert line.startswith(f"taskplan: SQLite store {folder / 'taskplan.db'} "), line
    assert "is read-only" in line, line
    assert integrity(folder / "taskplan.db") == "ok"


def test_a_store_file_deleted_or_replaced_while_open_is_never_written_blind(tmp_path: Path
                                                                             ) -> None:
    path = tmp_path / "s.db"
    store = Store(f"sqlite:///{path}")
    with store.tx() as tx:
        tx.run("INSERT INTO pools (name, size) VALUES ('kept', 1)")
    other = sqlite3.connect(path)
    other.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # all of it in the file, to copy it
    other.close()
    saved = tmp_path / "saved.db"
    saved.write_bytes(path.read_bytes())
    for name in ("s.db", "s.db-wal", "s.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    time.sleep(FILE_CHECK_EVERY * 1.5)  # a thread looks at the file at most that often
    for open_tx in (store.read, store.tx):
        gone = re.escape("is gone (deleted or moved while in use)")
        with pytest.raises(StoreUnavailableError, match=gone), open_tx():
            pass
    assert not path.exists()  # not created again, empty, by a new connection
    # another file moved to the path (a restored copy) is the store from now on
    saved.rename(path)
    with store.tx() as tx:
        tx.run("INSERT INTO pools (name, size) VALUES ('after', 2)")
    store.close()
    conn = sqlite3.connect(path)
    assert sorted(r[0] for r in conn.execute("SELECT name FROM pools")) == ["after", "kept"]
    conn.close()


def test_a_relative_store_path_survives_a_change_of_directory(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    store = Store("sqlite:///s.db")
    try:
        with store.tx() as tx:
            tx.run("INSERT INTO pools (name, size) VALUES ('p', 1)")
        os.chdir(tmp_path / "b")  # as an in-process python task may
        time.sleep(FILE_CHECK_EVERY * 1.5)
        with store.tx() as tx:
            assert tx.scalar("SELECT size FROM pools WHERE name = 'p'") == 1
        assert not (tmp_path / "b" / "s.db").exists()
    finally:
        store.close()


def _no_file_growth() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))


def test_a_store_that_cannot_be_read_for_want_of_space_is_not_called_missing(tp: Taskplan
                                                                           ) -> None:
    """Opening a WAL store makes its -shm file; with no room for it a reader must say the disk
    is full (exit 3), never that there is no store (exit 2), which invites making a new one."""
    tp.write("job.yaml", "job: j\ntasks:\n  a: {shell: 'true'}\n")
    tp.ok("run", "job.yaml")
    for name in ("taskplan.db-wal", "taskplan.db-shm"):
        (tp.db_path.parent / name).unlink(missing_ok=True)
    for args in (("runs",), ("status",), ("jobs",)):
        proc = subprocess.run(tp.argv(args, True), cwd=tp.home, env=clean_env(tp.env),
                              capture_output=True, text=True, preexec_fn=_no_file_growth,
                              timeout=60)
        assert proc.returncode == 3, (args, proc.stderr)
        assert proc.stderr == (f"taskplan: SQLite store {tp.db_path} could not be written or"
                               " read (disk I/O error: is its disk full?): disk I/O error\n")
    assert tp.ok("runs", "--json").json()[0]["state"] == "succeeded"  # all there once it can


def _files_up_to_60k() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, resource.RLIM_INFINITY))


def test_a_new_store_on_a_full_disk_says_the_disk_is_full(tp: Taskplan) -> None:
    """Room for the file but not for its schema: SQLite rolls the creating transaction back
    itself, and the message must still be the full disk (not a failed ROLLBACK after it)."""
    tp.write("job.yaml", "job: j\ntasks:\n  a: {shell: 'true'}\n")
    proc = subprocess.run(tp.argv(("run", "job.yaml"), True), cwd=tp.home, env=clean_env(tp.env),
                          capture_output=True, text=True, preexec_fn=_files_up_to_60k,
                          timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.startswith(f"taskplan: SQLite store {tp.db_path} "), proc.stderr
    assert "full" in proc.stderr and "rollback" not in proc.stderr, proc.stderr
    assert integrity(tp.db_path) == "ok"
    # Nothing half-made stays: with room again the same command makes the store and runs.
    assert tp.ok("run", "job.yaml").out.splitlines()[-1].startswith("run 1 (j v1) succeeded")
