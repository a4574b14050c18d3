"""An attempt's last output, when the store stays away longer than its slot waits for it,
waits in memory and is written once the store is back (it was dropped)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from taskplan import attempt_log
from taskplan.store import ops
from taskplan.store.db import Store
from taskplan.store.dialects.sqlite import FILE_CHECK_EVERY


def test_last_output_waits_for_a_store_away_past_the_final_wait(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attempt_log, "FINAL_WAIT", 0.3)
    path = tmp_path / "s.db"
    store = Store(f"sqlite:///{path}")
    away = tmp_path / "away"
    away.mkdir()
    try:
        out = attempt_log.AttemptLog(store, 1, 1)
        out.write("last words\n")
        names = [p.name for p in tmp_path.glob("s.db*")]
        for name in names:  # the store is gone: moved away while the attempt ends
            (tmp_path / name).rename(away / name)
        time.sleep(FILE_CHECK_EVERY * 1.5)
        out.close()  # gives up on its slot after FINAL_WAIT and hands the chunk over
        assert attempt_log._late.pending() == 1
        for name in names:
            (away / name).rename(tmp_path / name)
        assert attempt_log.wait_for_late_output(30)
        with store.read() as tx:
            assert [p.data for p in ops.read_log(tx, 1, 1)] == ["last words\n"]
    finally:
        store.close()


def test_output_of_many_attempts_is_written_over_a_bounded_number_of_connections(
        store: Store) -> None:
    """Output is written as it comes (every FLUSH_EVERY) from threads of its own; each new
    thread that writes opens a connection to the store, which PostgreSQL keeps as a server
    session until the process ends. A flush on a thread of its own each time (and on each
    attempt's output reader) used up max_connections within seconds under one agent of 8
    slots running chatty tasks; the connections stay as few as the threads that flush."""

    def read_output(out: attempt_log.AttemptLog) -> None:
        for k in range(4):
            out.write(f"line {k}\n")
            time.sleep(attempt_log.FLUSH_EVERY * 1.2)  # every line flushed on its own

    for wave in range(3):  # attempts come and go, each output read on a new thread
        outs = [attempt_log.AttemptLog(store, 10 * wave + i, 1) for i in range(4)]
        threads = [threading.Thread(target=read_output, args=(o,)) for o in outs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for out in outs:  # by the slot, once the attempt has ended
            out.close()
    with store.read() as tx:
        for i in (0, 23):
            assert "".join(p.data for p in ops.read_log(tx, i, 1)) == "".join(
                f"line {k}\n" for k in range(4))
    # This thread's, and the flushing thread's.
    assert len(store.dialect.conns) <= 2, len(store.dialect.conns)
