from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triomem import InvalidMemory
from triomem.actors._timephrase import parse_time

NOW = dt.datetime(2026, 11, 23, 14, 30, tzinfo=dt.UTC)  # a Monday
DAY = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-20", dt.datetime(2026, 11, 20, tzinfo=dt.UTC)),
        ("2026-11-20T10:00:00Z", dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC)),
        ("2026-11-20T10:00:00+02:00", dt.datetime(2026, 11, 20, 8, tzinfo=dt.UTC)),
        ("now", NOW),
        ("today", DAY),
        ("Yesterday", DAY - dt.timedelta(days=1)),
        ("the day before yesterday", DAY - dt.timedelta(days=2)),
        ("this week", DAY),
        ("last week", DAY - dt.timedelta(days=7)),
        ("this month", dt.datetime(2026, 11, 1, tzinfo=dt.UTC)),
        ("last month", dt.datetime(2026, 10, 1, tzinfo=dt.UTC)),
        ("last year", dt.datetime(2025, 1, 1, tzinfo=dt.UTC)),
        ("3 days ago", NOW - dt.timedelta(days=3)),
        ("an hour ago", NOW - dt.timedelta(hours=1)),
        ("two  weeks  ago", NOW - dt.timedelta(weeks=2)),
        ("a few minutes ago", NOW - dt.timedelta(minutes=3)),
        ("6 months ago", dt.datetime(2026, 5, 23, 14, 30, tzinfo=dt.UTC)),
        ("past 24 hours", NOW - dt.timedelta(hours=24)),
        ("last 3 days", NOW - dt.timedelta(days=3)),
        ("past month", dt.datetime(2026, 10, 23, 14, 30, tzinfo=dt.UTC)),
        ("friday", DAY - dt.timedelta(days=3)),
        ("last monday", DAY - dt.timedelta(days=7)),
        ("on sunday", DAY - dt.timedelta(days=1)),
    ],
)
def test_phrases(text: str, expected: dt.datetime) -> None:
    assert parse_time(text, "after", NOW) == expected


def test_month_arithmetic_clamps_the_day() -> None:
    march_31 = dt.datetime(2026, 3, 31, tzinfo=dt.UTC)
    assert parse_time("1 month ago", "after", march_31) == dt.datetime(2026, 2, 28,
                                                                       tzinfo=dt.UTC)


@pytest.mark.parametrize("text", ["", "soon", "2026-13-01", "three fortnights hence", "ago"])
def test_malformed_dates_name_the_field(text: str) -> None:
    with pytest.raises(InvalidMemory) as info:
        parse_time(text, "before", NOW)
    assert info.value.field == "before"


@given(st.text(max_size=40))
def test_any_string_parses_or_raises_invalid_memory(text: str) -> None:
    try:
        result = parse_time(text, "after", NOW)
    except InvalidMemory:
        return
    assert result.tzinfo is not None
