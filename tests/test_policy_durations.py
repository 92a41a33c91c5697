"""Durations: every accepted spelling, every refusal, and the formatters."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from failjob_reaper.policy import format_duration, parse_duration
from failjob_reaper.policy._durations import describe_duration, iso_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P7D", timedelta(days=7)),
        ("PT12H", timedelta(hours=12)),
        ("P1DT2H30M", timedelta(days=1, hours=2, minutes=30)),
        ("P2W", timedelta(weeks=2)),
        ("PT30S", timedelta(seconds=30)),
        ("PT0.5S", timedelta(milliseconds=500)),
        ("PT1,25S", timedelta(seconds=1.25)),
        ("PT0S", timedelta(0)),
        ("p1dt1h", timedelta(days=1, hours=1)),
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("12h", timedelta(hours=12)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("0s", timedelta(0)),
        ("  7d\n", timedelta(days=7)),
        ("forever", None),
        ("FOREVER", None),
    ],
)
def test_accepted_spellings(text: str, expected: timedelta | None) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("abc", "invalid duration 'abc' (use P7D, 7d, 12h, 30m, 30s or forever)"),
        ("", "invalid duration ''"),
        ("P", "invalid duration 'P'"),
        ("PT", "invalid duration 'PT'"),
        ("P1DT", "invalid duration 'P1DT'"),
        ("7D", "invalid duration '7D'"),
        ("1d2h", "invalid duration '1d2h'"),
        ("7 d", "invalid duration '7 d'"),
        ("1.5h", "invalid duration '1.5h'"),
        ("P1Y", "years and months have no fixed length"),
        ("P1M", "years and months have no fixed length"),
        ("P1Y2M3D", "years and months have no fixed length"),
        ("-7d", "negative durations are not allowed"),
        ("-P1D", "negative durations are not allowed"),
        ("7", "a plain number has no unit"),
        (7, "invalid duration 7: a plain number has no unit"),
        (1.5, "a plain number has no unit"),
        (True, "expected a string, got bool"),
        ([1], "expected a string, got a list"),
        ({"days": 1}, "expected a string, got a mapping"),
        ("P99999999999D", "too large"),
        ("\u0667d", "invalid duration"),  # an Arabic-Indic 7 is not a digit here
        (timedelta(seconds=-1), "negative duration -1s is not allowed"),
    ],
)
def test_refusals(value: object, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert fragment in str(caught.value)


def test_long_input_is_not_echoed() -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration("9" * 5000 + "d")
    assert len(str(caught.value)) < 200


def test_forever_only_where_allowed() -> None:
    with pytest.raises(ValueError, match="must be finite here"):
        parse_duration("forever", allow_forever=False)
    with pytest.raises(ValueError, match="expected a string"):
        parse_duration(None, allow_forever=False)
    assert parse_duration(None) is None  # Python callers: None is forever


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (None, "forever"),
        (timedelta(0), "0s"),
        (timedelta(days=7), "7d"),
        (timedelta(days=1, hours=2), "1d 2h"),
        (timedelta(days=9, hours=2, minutes=13, seconds=5), "9d 2h 13m 5s"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(microseconds=1), "0.000001s"),
        (timedelta(weeks=2), "14d"),
        (timedelta(minutes=-5), "-5m"),
    ],
)
def test_format_duration(td: timedelta | None, text: str) -> None:
    assert format_duration(td) == text


def test_format_duration_parts_truncates() -> None:
    td = timedelta(days=9, hours=2, minutes=13, seconds=5.591)
    assert format_duration(td, parts=2) == "9d 2h"


def test_describe_duration() -> None:
    assert describe_duration(timedelta(days=7)) == "7 days"
    assert describe_duration(timedelta(days=1)) == "1 day"
    assert describe_duration(timedelta(days=1, hours=2)) == "1 day 2 hours"
    assert describe_duration(timedelta(seconds=1)) == "1 second"
    assert describe_duration(timedelta(0)) == "0 seconds"


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=100_000)))
def test_iso_form_round_trips(td: timedelta) -> None:
    assert parse_duration(iso_duration(td)) == td


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from("smhdw"))
def test_short_forms(n: int, unit: str) -> None:
    names = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    assert parse_duration(f"{n}{unit}") == timedelta(**{names[unit]: n})
