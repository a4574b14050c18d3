"""An attempt's last output, when the store stays away longer than its slot waits for it,
waits in memory and is written once the store is back (it was dropped)."""

from __future__ import annotations

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
