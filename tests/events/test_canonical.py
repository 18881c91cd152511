"""The fast canonical encoder agrees with the RFC 8785 reference on every JSON value."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from musrenbang.events.canonical import canonical, format_timestamp, parse_timestamp
from musrenbang.events.errors import InvalidEvent
from musrenbang.events.model import EVENT_ID_NAMESPACE, event_id_for

keys = st.text(max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.text(max_size=30)
    | st.floats(allow_nan=False, allow_infinity=False)
)
values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(keys, kids, max_size=5),
    max_leaves=30,
)


@settings(max_examples=600, deadline=None)
@given(values)
def test_canonical_equals_the_rfc8785_reference(value: object) -> None:
    assert canonical(value) == rfc8785.dumps(value)


def test_keys_sort_by_utf16_code_units_and_controls_escape() -> None:
    value = {"\ue000": 1, "\U0001f600": 2, "a\x1fb": "tab\there", "é": None}
    assert canonical(value) == rfc8785.dumps(value)


def test_every_escape_is_the_references() -> None:
    text = "".join(chr(c) for c in range(0x80)) + '\u2028\u2029\ufeff\ud7ff\ue000/\\"'
    value = {"s": text, text[32:]: [text, -(2**53) + 1, 2**53 - 1, True, False, None]}
    assert canonical(value) == rfc8785.dumps(value)


def test_what_cannot_be_canonical_json_is_refused() -> None:
    deep: list[object] = []
    for _ in range(300):
        deep = [deep]
    for bad in ["lone \ud800 surrogate", {"k": 2**53}, float("nan"), deep, {1: "x"}, b"x"]:
        with pytest.raises(InvalidEvent):
            canonical(bad)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_event_ids_are_the_uuid5_of_the_key(key: str) -> None:
    assert event_id_for(key) == str(uuid.uuid5(EVENT_ID_NAMESPACE, key))


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(1000, 1, 1), timezones=st.timezones()))  # noqa: DTZ001
def test_timestamps_format_as_strftime_does(moment: datetime) -> None:
    expected = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert format_timestamp(moment) == expected
    assert parse_timestamp(expected) == moment.astimezone(UTC).replace(fold=0)
