"""Validation of user input: every bad value names its field."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest

from triomem import InvalidMemory, Limits
from triomem.actors._values import (
    ms_from_time,
    validate_content,
    validate_metadata,
    validate_name,
    validate_tags,
)

LIMITS = Limits(max_content_bytes=100, max_tags=3, max_tag_chars=10, max_metadata_bytes=50)


@pytest.mark.parametrize(
    ("content", "reason"),
    [("", "empty"), ("  \n\t ", "empty"), (None, "string"), (42, "string"),
     ("x" * 101, "limit"), ("é" * 51, "limit"), ("a\ud800b", "surrogate"), ("a\x00b", "NUL")],
)
def test_bad_content_is_refused(content: Any, reason: str) -> None:
    with pytest.raises(InvalidMemory) as info:
        validate_content(content, LIMITS)
    assert info.value.field == "content"
    assert reason in info.value.reason


def test_content_at_the_limit_is_accepted() -> None:
    assert validate_content("x" * 100, LIMITS) == "x" * 100


@pytest.mark.parametrize(
    ("tags", "field"),
    [("ui", "tags"), (5, "tags"), (["ok", 3], "tags[1]"), ([""], "tags[0]"),
     (["x" * 11], "tags[0]"), (["a", "b", "c", "d"], "tags"), (["a\nb"], "tags[0]")],
)
def test_bad_tags_are_refused(tags: Any, field: str) -> None:
    with pytest.raises(InvalidMemory) as info:
        validate_tags(tags, LIMITS)
    assert info.value.field == field


def test_tags_are_stripped_and_deduplicated_in_order() -> None:
    assert validate_tags([" b", "a", "b "], LIMITS) == ("b", "a")


@pytest.mark.parametrize("metadata", [[1, 2], "text", 3, {"x": math.nan}, {"x": object()},
                                      {"x": "y" * 60}])
def test_bad_metadata_is_refused(metadata: Any) -> None:
    with pytest.raises(InvalidMemory) as info:
        validate_metadata(metadata, LIMITS)
    assert info.value.field == "metadata"


def test_metadata_is_canonical_json() -> None:
    assert validate_metadata({"b": 1, "a": [True, None]}, LIMITS) == '{"a":[true,null],"b":1}'
    assert validate_metadata(None, LIMITS) == "{}"


@pytest.mark.parametrize("name", ["", " x", "-x", "a b", "x" * 65, "ü", None, 3])
def test_bad_names_are_refused(name: Any) -> None:
    with pytest.raises(InvalidMemory) as info:
        validate_name(name, "space")
    assert info.value.field == "space"


def test_times() -> None:
    when = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    assert ms_from_time(when, "after") == int(when.timestamp() * 1000)
    assert ms_from_time(1.5, "after") == 1500
    for bad in (dt.datetime(2026, 1, 2), math.inf, "2026", True):
        with pytest.raises(InvalidMemory):
            ms_from_time(bad, "after")
