"""_validate: text is valid UTF-8 and bounded, datetimes stay in range once in UTC, and the
documented limits match the code. No store, no server."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ponos_redis import InvalidInputError
from ponos_redis import _validate as v

README = Path(__file__).resolve().parents[2] / "README.md"

LIMITS = {
    "MAX_ID_CHARS": 256,
    "MAX_HASH_CHARS": 256,
    "MAX_ADDRESS_CHARS": 256,
    "MAX_TEXT_CHARS": 4096,
    "MAX_FIELD_CHARS": 1024,
    "MAX_STATUS_CHARS": 256,
    "MAX_ENV_NAME_CHARS": 256,
    "MAX_ENV_VALUE_CHARS": 32768,
    "MAX_ENV_VARS": 1024,
    "MAX_URL_CHARS": 4096,
}


@pytest.mark.parametrize(("name", "value"), LIMITS.items())
def test_limits_are_the_documented_ones(name: str, value: int) -> None:
    assert getattr(v, name) == value
    readme = README.read_text(encoding="utf-8")
    assert re.search(rf"\| (1-)?{value} \(`{name}`\) \|", readme)
    assert re.search(rf"``{name}``\s+(1-)?{value}\s", v.__doc__ or "")


@pytest.mark.parametrize("bad", ["x\ud800", "\udfff", "a\ud83d", "\ud800\udc00"])
def test_lone_surrogates_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInputError, match="surrogate"):
        v.ident(bad, "task_id")
    with pytest.raises(InvalidInputError, match="surrogate"):
        v.string(bad, "reason")


def test_non_ascii_text_is_accepted() -> None:
    assert v.ident("タスク-😀", "task_id") == "タスク-😀"
    assert v.string("é" * v.MAX_TEXT_CHARS, "reason") == "é" * v.MAX_TEXT_CHARS


def test_string_bound_defaults_to_the_text_bound() -> None:
    with pytest.raises(InvalidInputError, match="reason must be at most 4096 characters, got 4097"):
        v.string("r" * 4097, "reason")
    assert v.string("h" * 256, "hash", v.MAX_HASH_CHARS) == "h" * 256
    with pytest.raises(InvalidInputError, match="hash must be at most 256"):
        v.string("h" * 257, "hash", v.MAX_HASH_CHARS)


def test_error_messages_do_not_quote_huge_values() -> None:
    with pytest.raises(InvalidInputError) as err:
        v.string("x" * 20_000_000, "reason")
    assert len(str(err.value)) < 200


@pytest.mark.parametrize(
    "bad",
    [
        datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone(timedelta(minutes=-1))),
        datetime(1, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=5))),
        datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(microseconds=1))),
    ],
)
def test_datetimes_overflowing_utc_are_invalid_input(bad: datetime) -> None:
    with pytest.raises(InvalidInputError, match="deadline is out of range"):
        v.timestamp(bad, "deadline")


@pytest.mark.parametrize(
    "extreme",
    [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(1, 1, 1, 5, tzinfo=timezone(timedelta(hours=5))),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(9999, 12, 31, 18, 59, 59, 999_999, tzinfo=timezone(timedelta(hours=-5))),
        datetime(1970, 1, 1, tzinfo=UTC) - timedelta(milliseconds=1),
    ],
)
def test_extremes_round_trip_through_milliseconds(extreme: datetime) -> None:
    normal = v.timestamp(extreme, "t")
    assert normal == extreme.astimezone(UTC).replace(microsecond=extreme.microsecond // 1000 * 1000)
    assert v.from_ms(v.to_ms(normal)) == normal


_OFFSETS = st.builds(
    timezone,
    st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)),
)


@given(st.datetimes(), _OFFSETS)
def test_every_validated_datetime_round_trips(naive: datetime, offset: timezone) -> None:
    aware = naive.replace(tzinfo=offset)
    try:
        normal = v.timestamp(aware, "t")
    except InvalidInputError:
        with pytest.raises(OverflowError):
            aware.astimezone(UTC)
        return
    assert normal.tzinfo is UTC
    assert v.from_ms(v.to_ms(normal)) == normal
    assert abs(normal - aware) < timedelta(milliseconds=1)


def test_from_ms_out_of_range_is_an_overflow() -> None:
    with pytest.raises(OverflowError):
        v.from_ms(10**20)
    with pytest.raises(OverflowError):
        v.from_ms(v.to_ms(datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)) + 1)
