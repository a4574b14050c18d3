import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskplan.spec.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("15m", 900.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("2d", 172800.0),
        ("1w", 604800.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        ("90", 90.0),
        (90, 90.0),
        (2.5, 2.5),
        ("0s", 0.0),
        (" 1m 5s ", 65.0),
    ],
)
def test_parses(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "expected a duration like"),
        ("abc", "expected a duration like"),
        ("10 parsecs", "expected a duration like"),
        ("5x", "expected a duration like"),
        ("30m 1h", "largest first"),
        ("1h1h", "largest first"),
        ("-5s", "expected a duration like"),
        (-5, "not negative"),
        (True, "expected a duration like"),
        (None, "expected a duration like"),
        (float("nan"), "finite"),
    ],
)
def test_rejects(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_duration(value)  # type: ignore[arg-type]


def test_zero_rejected_when_positive_needed() -> None:
    with pytest.raises(ValueError, match="greater than zero"):
        parse_duration("0s", allow_zero=False)
    assert parse_duration("1ms", allow_zero=False) == 0.001


@given(
    st.integers(0, 50), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59),
    st.booleans(),
)
def test_composed_text(d: int, h: int, m: int, s: int, spaced: bool) -> None:
    parts = [f"{n}{u}" for n, u in ((d, "d"), (h, "h"), (m, "m"), (s, "s")) if n]
    text = (" " if spaced else "").join(parts) or "0s"
    assert parse_duration(text) == d * 86400 + h * 3600 + m * 60 + s
