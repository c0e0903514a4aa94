"""Time filters from people and models: ISO 8601 or a common English phrase.

A small parser on purpose: the one kept library for this (dateparser) costs about a second of
import time and a large regex dependency for the dozen phrases agents actually send. Every
phrase resolves to an instant (the start of the period it names), in UTC unless the text
carries an offset: ``after="yesterday"`` means from yesterday 00:00, ``before="last week"``
means before the Monday that started last week.
"""

from __future__ import annotations

import datetime as dt
import re

from ._errors import InvalidMemory

_UNITS = {
    "second": dt.timedelta(seconds=1), "minute": dt.timedelta(minutes=1),
    "hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1), "week": dt.timedelta(weeks=1),
    "fortnight": dt.timedelta(weeks=2),
}
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
            "seven": 7, "eight": 8, "nine": 9, "ten": 10, "twelve": 12, "a few": 3,
            "a couple of": 2, "couple of": 2, "several": 5}
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_AGO = re.compile(
    r"(?P<n>\d+|a few|a couple of|couple of|several|an?|one|two|three|four|five|six|seven|"
    r"eight|nine|ten|twelve)\s+(?P<unit>second|minute|hour|day|week|fortnight|month|year)s?"
    r"\s+ago"
)
_LAST = re.compile(r"(?:last|past|previous)\s+(?:(?P<n>\d+)\s+)?(?P<unit>hour|day|week|month|"
                   r"year)s?")


def _midnight(when: dt.datetime) -> dt.datetime:
    return when.replace(hour=0, minute=0, second=0, microsecond=0)


def _months_back(when: dt.datetime, months: int) -> dt.datetime:
    index = when.year * 12 + when.month - 1 - months
    year, month = divmod(index, 12)
    day = min(when.day, [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28,
                         31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month])
    return when.replace(year=year, month=month + 1, day=day)


def _back(now: dt.datetime, n: int, unit: str) -> dt.datetime:
    """``n`` units before ``now``; months and years by the calendar, not by a fixed length."""
    if unit == "month":
        return _months_back(now, n)
    if unit == "year":
        return _months_back(now, 12 * n)
    return now - n * _UNITS[unit]


def parse_time(text: str, field: str, now: dt.datetime | None = None) -> dt.datetime:
    """An aware datetime for ``text``; raises InvalidMemory(field) when it is not understood
    or lies outside the calendar ("99999999999 days ago")."""
    try:
        return _parse(text, field, now)
    except (OverflowError, ValueError):
        raise InvalidMemory(field, f"{text!r} is out of range") from None


def _parse(text: str, field: str, now: dt.datetime | None) -> dt.datetime:
    now = now or dt.datetime.now(dt.UTC)
    phrase = " ".join(text.strip().lower().split())
    try:
        parsed = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        pass
    else:
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    today = _midnight(now)
    fixed = {
        "now": now, "today": today, "tonight": today, "this morning": today,
        "yesterday": today - dt.timedelta(days=1),
        "the day before yesterday": today - dt.timedelta(days=2),
        "tomorrow": today + dt.timedelta(days=1),
        "this week": today - dt.timedelta(days=today.weekday()),
        "last week": today - dt.timedelta(days=today.weekday() + 7),
        "this month": today.replace(day=1),
        "last month": _months_back(today.replace(day=1), 1),
        "this year": today.replace(month=1, day=1),
        "last year": today.replace(year=today.year - 1, month=1, day=1),
    }
    if phrase in fixed:
        return fixed[phrase]
    if match := _AGO.fullmatch(phrase):
        n = int(match["n"]) if match["n"].isdigit() else _NUMBERS[match["n"]]
        return _back(now, n, match["unit"])
    if match := _LAST.fullmatch(phrase):  # "past 3 days", "last 24 hours": a rolling window
        return _back(now, int(match["n"] or 1), match["unit"])
    for prefix in ("last ", "on ", ""):
        day = phrase.removeprefix(prefix)
        if day in _WEEKDAYS:
            back = (today.weekday() - _WEEKDAYS.index(day)) % 7 or 7
            return today - dt.timedelta(days=back)
    raise InvalidMemory(
        field, f"{text!r} is not a date: use ISO 8601 (2026-11-20 or 2026-11-20T14:00:00Z) or "
               "a phrase like 'yesterday', 'last week', '3 days ago', 'past 24 hours'"
    )
