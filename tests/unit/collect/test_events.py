from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from touchpoint.collect.events import IncomingEvent, event_errors, normalize_event

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
