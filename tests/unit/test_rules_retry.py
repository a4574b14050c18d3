"""The wait before a retry (rules.retry_delay): delay * backoff^(k-1), at most 366 days."""

from __future__ import annotations

from taskplan.model import TaskSpec
from taskplan.rules import LONGEST_RETRY_WAIT, retry_delay


def _task(delay: float, backoff: float) -> TaskSpec:
    return TaskSpec(
        name="a", kind="shell", command="true", retries=9, retry_delay=delay, retry_backoff=backoff
    )


def test_the_wait_grows_by_the_backoff() -> None:
    assert [retry_delay(_task(10, 2), k) for k in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert retry_delay(_task(0, 1e300), 5) == 0


def test_a_backoff_past_any_date_waits_the_longest_wait_and_no_more() -> None:
    # `retry_backoff: 1e200` overflowed at the third try (OverflowError in the engine) and made
    # the second's wait a date `status` could not print.
    assert LONGEST_RETRY_WAIT == 366 * 86400
    huge = _task(0.001, 1e200)
    assert [retry_delay(huge, k) for k in (1, 2, 3, 50)] == [
        0.001,
        LONGEST_RETRY_WAIT,
        LONGEST_RETRY_WAIT,
        LONGEST_RETRY_WAIT,
    ]
    assert retry_delay(_task(3600, 2), 40) == LONGEST_RETRY_WAIT
