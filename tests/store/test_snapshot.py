"""Store.snapshot: every statement of it sees one committed state, on both backends (a plain
read on PostgreSQL is READ COMMITTED: each statement sees what was committed before it)."""

from __future__ import annotations

from taskplan.store import ops
from taskplan.store.db import Store


def test_a_snapshot_does_not_see_what_another_process_commits_meanwhile(
        store: Store, store_url: str) -> None:
    other = Store(store_url)  # another connection, as another process would have
    try:
        count = "SELECT COUNT(*) FROM pools"
        with store.snapshot() as tx:
            assert tx.scalar(count) == 0
            with other.tx() as w:
                ops.upsert_pool(w, "mart", 4)
            assert tx.scalar(count) == 0  # still the state it started from
        with store.read() as tx:
            assert tx.scalar(count) == 1
    finally:
        other.close()
