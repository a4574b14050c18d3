"""The pure half of `taskplan import pgagent`: catalog rows -> job documents."""

from __future__ import annotations

from datetime import UTC, datetime

from taskplan.importers.pgagent import calendar_fields, convert, parse_conninfo
from taskplan.store.pgagent_catalog import Catalog, PgJob, PgSchedule, PgStep


def _bits(size: int, *on: int) -> tuple[bool, ...]:
    return tuple(i in on for i in range(size))


def _schedule(**arrays: tuple[bool, ...]) -> PgSchedule:
    base = {"minutes": _bits(60), "hours": _bits(24), "weekdays": _bits(7),
            "monthdays": _bits(32), "months": _bits(12)}
    return PgSchedule(id=1, name="s", description="", enabled=True,
                      start=datetime(2030, 1, 1, tzinfo=UTC), end=None, **{**base, **arrays})


def test_arrays_map_to_calendar_keys() -> None:
    # nothing set: every minute of every day
    assert calendar_fields(_schedule()) == {"minutes": list(range(60))}
    # hours without minutes: every minute of those hours; Sunday-first weekdays; "last day"
    assert calendar_fields(_schedule(
        hours=_bits(24, 0, 23), weekdays=_bits(7, 0, 6), monthdays=_bits(32, 0, 31),
        months=_bits(12, 1))) == {
        "hours": [0, 23], "minutes": list(range(60)), "weekdays": ["sat", "sun"],
        "monthdays": [1, "last"], "months": ["feb"]}
    # everything set is the same as nothing set
    assert calendar_fields(_schedule(minutes=_bits(60, 5), hours=_bits(24, *range(24)),
                                     weekdays=_bits(7, *range(7)))) == {"minutes": [5]}


def test_connection_strings_and_jstdbname() -> None:
    assert parse_conninfo("host=a port=5 dbname='my db' password='it\\'s' x=y") == {
        "host": "a", "port": "5", "dbname": "my db", "password": "it's", "x": "y"}
    steps = (
        PgStep(1, "a", "", True, "s", "SELECT 1", "", "sales", "f"),
        PgStep(2, "b", "", True, "s", "SELECT 2", "", "sales", "f"),
        PgStep(3, "c", "", True, "s", "SELECT 3",
               "host=/var/run/postgresql dbname=ops user=etl sslmode=disable", "", "f"),
    )
    catalog = Catalog("UTC", "db1", 5432, "agent", (PgJob(7, "J", "", "", "", True, steps),))
    [item] = convert(catalog, "UTC")
    assert item.document is not None
    assert item.document["connections"] == {
        "sales": "postgresql://agent@db1:5432/sales",
        "ops": "postgresql://etl@/ops?host=/var/run/postgresql&port=5432&sslmode=disable"}
    assert [t.get("connection") for t in item.document["tasks"].values()] == [
        "sales", "sales", "ops"]


def test_a_job_without_steps_is_reported_not_written() -> None:
    catalog = Catalog("UTC", "h", 5432, "u", (PgJob(1, "Empty", "", "", "", True),))
    [item] = convert(catalog, "UTC")
    assert item.document is None and "no steps" in item.notes[0]
