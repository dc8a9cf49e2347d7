from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from pydantic_core import TzInfo

from touchpoint.collect import events as events_module
from touchpoint.collect.events import (
    IncomingEvent,
    event_errors,
    normalize_event,
    normalize_fields,
    validate_event,
)
from touchpoint.core.clock import isoformat

RECEIVED = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def normalized(message: dict, **kwargs) -> dict:
    return normalize_event(
        IncomingEvent.model_validate(message), source="web", received_at=RECEIVED, **kwargs
    )


def errors_of(message: dict) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as caught:
        IncomingEvent.model_validate(message)
    return event_errors(caught.value)


def test_track_is_normalized_with_generated_id_and_received_time() -> None:
    event = normalized({"type": "track", "userId": 42, "event": "Signed Up", "extra": 1})
    assert event["userId"] == "42"
    assert len(event["messageId"]) == 32
    assert event["timestamp"] == event["receivedAt"] == "2026-11-24T12:00:00.000Z"
    assert event["properties"] == {}
    assert event["source"] == "web"
    assert event["extra"] == 1
    assert event["violations"] == []


def test_explicit_timestamp_wins() -> None:
    event = normalized(
        {"type": "page", "anonymousId": "a", "timestamp": "2026-11-20T08:00:00Z", "name": "Home"}
    )
    assert event["timestamp"] == "2026-11-20T08:00:00.000Z"
    assert event["name"] == "Home"


def test_original_timestamp_is_corrected_for_client_clock_skew() -> None:
    # The client's clock runs 1 hour fast: it says it sent at 13:00 an event it made at 12:59.
    event = normalized(
        {
            "type": "track",
            "anonymousId": "a",
            "event": "X",
            "originalTimestamp": "2026-11-24T12:59:00Z",
            "sentAt": "2026-11-24T13:00:00Z",
        }
    )
    assert event["timestamp"] == "2026-11-24T11:59:00.000Z"


def test_batch_sent_at_and_context_apply_under_the_event() -> None:
    event = normalized(
        {
            "type": "track",
            "anonymousId": "a",
            "event": "X",
            "originalTimestamp": (RECEIVED - timedelta(minutes=5)).isoformat(),
            "context": {"ip": "1.2.3.4"},
        },
        batch_sent_at=RECEIVED,
        batch_context={"ip": "9.9.9.9", "library": {"name": "x"}},
    )
    assert event["timestamp"] == "2026-11-24T11:55:00.000Z"
    assert event["context"] == {"ip": "1.2.3.4", "library": {"name": "x"}}


@pytest.mark.parametrize(
    ("message", "field", "reason_part"),
    [
        ({"type": "track", "event": "X"}, "<event>", "userId or anonymousId"),
        ({"type": "track", "userId": "u"}, "<event>", "needs `event`"),
        ({"type": "launch", "userId": "u"}, "type", "track"),
        ({"type": "alias", "userId": "u"}, "<event>", "previousId"),
        ({"type": "group", "userId": "u"}, "<event>", "groupId"),
        ({"type": "track", "userId": "u", "event": "X", "properties": [1]}, "properties", "dict"),
        ({"type": "track", "userId": "u", "event": "X", "timestamp": "yesterday"}, "timestamp", ""),
        ({"type": "track", "userId": "u\x00", "event": "X"}, "userId", "NUL"),
        ({"type": "track", "userId": "u", "event": "X\x00"}, "event", "NUL"),
        ({"type": "page", "anonymousId": "a", "messageId": "m\x00"}, "messageId", "NUL"),
    ],
)
def test_invalid_messages_name_the_field(message: dict, field: str, reason_part: str) -> None:
    errors = errors_of(message)
    assert errors[0]["field"] == field
    assert reason_part in errors[0]["reason"]


def test_timestamps_in_the_future_are_clamped_to_reception() -> None:
    event = normalized(
        {"type": "track", "anonymousId": "a", "event": "X", "timestamp": "2030-01-01T00:00:00Z"}
    )
    assert event["timestamp"] == event["receivedAt"]
    near = normalized(
        {"type": "track", "anonymousId": "a", "event": "X", "timestamp": "2026-11-24T12:01:00Z"}
    )
    assert near["timestamp"] == "2026-11-24T12:01:00.000Z"


# -- the hot path: validate_event / normalize_fields / isoformat -----------------------


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC), "2026-11-24T12:00:00.000Z"),
        (datetime(2026, 11, 24, 12, 0, 0, 999_999, tzinfo=UTC), "2026-11-24T12:00:00.999Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 6_000, tzinfo=TzInfo(0)), "2026-01-02T03:04:05.006Z"),
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(0))), "2026-01-02T03:04:05.000Z"),
        (
            datetime(2026, 1, 2, 3, 4, 5, 123_456, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            "2026-01-01T21:34:05.123Z",
        ),
        (datetime(2026, 1, 2, 23, 59, 59, tzinfo=TzInfo(-3600)), "2026-01-03T00:59:59.000Z"),
        (datetime(999, 12, 31, 23, 0, 0, tzinfo=UTC), "0999-12-31T23:00:00.000Z"),
        (datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), "9999-12-31T23:59:59.999Z"),
    ],
)
def test_isoformat_is_canonical_utc_milliseconds(moment: datetime, text: str) -> None:
    assert isoformat(moment) == text


def test_the_fast_path_is_in_use() -> None:
    # A pydantic upgrade that reshapes the model's core schema must be noticed, not just slow.
    assert events_module._FIELDS is not None


def test_validate_event_holds_what_the_model_holds() -> None:
    message = {
        "type": "group",
        "userId": 7.0,
        "groupId": 12,
        "traits": {"plan": "pro"},
        "timestamp": "2026-11-20T08:00:00+01:00",
        "writeKey": "wk",
        "custom": [1],
    }
    fields, extra = validate_event(message)
    model = IncomingEvent.model_validate(message)
    assert fields == model.__dict__
    assert extra == model.model_extra == {"writeKey": "wk", "custom": [1]}
    assert fields["userId"] == "7" and fields["groupId"] == "12"


@pytest.mark.parametrize(
    "message",
    [
        {"type": "track", "event": "X"},
        {"type": "track", "userId": "u"},
        {"type": "alias", "userId": "u"},
        {"type": "launch", "userId": "u", "properties": [1]},
        {"type": "track", "userId": "u", "event": "X", "timestamp": "yesterday"},
        {"type": "page", "anonymousId": "a", "messageId": ""},
        {"type": "identify", "anonymousId": "a\x00"},
    ],
)
def test_validate_event_raises_the_model_s_errors(message: dict) -> None:
    with pytest.raises(ValidationError) as fast:
        validate_event(message)
    assert event_errors(fast.value) == errors_of(message)


# Messages of valid parts (still invalid when the type lacks what it needs), and messages
# with the odd value of a wrong type, to compare both paths where it matters.
text = st.text(min_size=1, max_size=6)
good_ids = st.one_of(text, st.integers(), st.floats(allow_nan=False, allow_infinity=False))
good_names = st.one_of(text, st.none())
good_times = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "2026-11-24T12:00:00Z",
            "2026-11-24T11:59:59.999999Z",
            "2026-11-24T13:00:00.5+02:00",
            "2026-11-23T10:00:00",  # naive
            "2026-11-24",
            "2030-01-01T00:00:00Z",  # in the future
        ]
    ),
    st.integers(min_value=1_600_000_000, max_value=1_800_000_000),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=6))
good_objects = st.one_of(st.none(), st.dictionaries(st.text(max_size=4), scalars, max_size=3))
KINDS = ["track", "identify", "page", "screen", "group", "alias"]


def message_strategy(
    ids: st.SearchStrategy,
    names: st.SearchStrategy,
    times: st.SearchStrategy,
    objects: st.SearchStrategy,
) -> st.SearchStrategy:
    return st.fixed_dictionaries(
        {"type": st.sampled_from(KINDS), "anonymousId": ids},
        optional={
            "messageId": names,
            "userId": ids,
            "event": names,
            "name": names,
            "groupId": ids,
            "previousId": ids,
            "properties": objects,
            "traits": objects,
            "context": objects,
            "integrations": objects,
            "timestamp": times,
            "originalTimestamp": times,
            "sentAt": times,
            "writeKey": scalars,
            "custom": scalars,
        },
    )


messages = st.one_of(
    message_strategy(good_ids, good_names, good_times, good_objects),
    message_strategy(
        st.one_of(good_ids, st.booleans(), st.just("")),
        st.one_of(good_names, st.just(""), st.integers()),
        st.one_of(good_times, st.just("yesterday")),
        st.one_of(good_objects, scalars),
    ),
)


@settings(max_examples=300, deadline=None)
@given(message=messages, batch_context=st.one_of(st.none(), st.just({"ip": "1.2.3.4"})))
def test_the_fast_path_agrees_with_the_model(message: dict, batch_context: dict | None) -> None:
    try:
        model = IncomingEvent.model_validate(message)
    except ValidationError as error:
        with pytest.raises(ValidationError) as fast:
            validate_event(message)
        assert event_errors(fast.value) == event_errors(error)
        return
    fields, extra = validate_event(message)
    assert (fields, extra) == (model.__dict__, model.model_extra or {})
    kwargs: dict = {"source": "web", "received_at": RECEIVED, "batch_context": batch_context}
    try:
        expected = normalize_event(model, **kwargs)
    except (TypeError, OverflowError) as error:  # naive minus aware times, dates out of range
        with pytest.raises(type(error)):
            normalize_fields(fields, extra, **kwargs)
        return
    stored = normalize_fields(fields, extra, received_text="2026-11-24T12:00:00.000Z", **kwargs)
    if not model.messageId:
        stored["messageId"] = expected["messageId"]  # generated, so it differs
    assert stored == expected
    assert list(stored) == list(expected)  # same key order, so the same payload bytes


def test_normalize_fields_leaves_its_inputs_alone() -> None:
    fields, extra = validate_event(
        {"type": "track", "userId": "u", "event": "X", "context": {"a": 1}, "writeKey": "k"}
    )
    before = (dict(fields), dict(extra))
    stored = normalize_fields(
        fields, extra, source="web", received_at=RECEIVED, batch_context={"b": 2}
    )
    assert (fields, extra) == before
    assert "writeKey" not in stored and stored["context"] == {"b": 2, "a": 1}


def test_the_stored_event_keeps_its_shape_and_key_order() -> None:
    stored = normalized(
        {
            "custom": 1,
            "type": "track",
            "userId": "u",
            "event": "X",
            "originalTimestamp": "2026-11-24T11:00:00Z",
            "integrations": {"All": True},
        }
    )
    assert list(stored) == [
        "custom",
        "type",
        "messageId",
        "anonymousId",
        "userId",
        "context",
        "timestamp",
        "receivedAt",
        "source",
        "violations",
        "originalTimestamp",
        "event",
        "properties",
        "integrations",
    ]
    assert stored["originalTimestamp"] == stored["timestamp"] == "2026-11-24T11:00:00.000Z"


def test_validate_event_falls_back_to_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    message = {"type": "track", "userId": 5, "event": "X", "writeKey": "k"}
    fast = validate_event(message)
    monkeypatch.setattr(events_module, "_FIELDS", None)
    assert validate_event(message) == fast
    with pytest.raises(ValidationError):
        validate_event({"type": "track", "userId": 5})
