"""The event model: Segment's HTTP Tracking API spec, validated and normalized.

An incoming message is validated with pydantic (field names and reasons come
from there), then normalized into the stored event the log keeps: ids as text,
`messageId` generated when absent, `timestamp` resolved the way Segment does
(explicit timestamp, else `originalTimestamp` corrected for the client clock by
`sentAt`, else `receivedAt`), `receivedAt` stamped, the batch's `context` merged
under the event's own.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from touchpoint.core.clock import isoformat, new_id

EventType = Literal["track", "identify", "page", "screen", "group", "alias"]
EVENT_TYPES: frozenset[str] = frozenset({"track", "identify", "page", "screen", "group", "alias"})


def _id_text(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return value


class IncomingEvent(BaseModel):
    """One message as a Segment or RudderStack SDK sends it. Unknown fields are kept."""

    model_config = ConfigDict(extra="allow", str_max_length=32 * 1024)

    type: EventType
    messageId: str | None = Field(default=None, min_length=1, max_length=256)
    anonymousId: str | None = Field(default=None, max_length=1024)
    userId: str | None = Field(default=None, max_length=1024)
    event: str | None = Field(default=None, max_length=512)
    name: str | None = Field(default=None, max_length=512)
    groupId: str | None = Field(default=None, max_length=1024)
    previousId: str | None = Field(default=None, max_length=1024)
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    timestamp: datetime | None = None
    originalTimestamp: datetime | None = None
    sentAt: datetime | None = None

    @field_validator("anonymousId", "userId", "groupId", "previousId", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        return _id_text(value)

    @model_validator(mode="after")
    def _required_by_type(self) -> IncomingEvent:
        if not self.userId and not self.anonymousId:
            raise ValueError("either userId or anonymousId is required")
        if self.type == "track" and not self.event:
            raise ValueError("a track event needs `event`, the name of the action")
        if self.type == "group" and not self.groupId:
            raise ValueError("a group event needs `groupId`")
        if self.type == "alias" and not (self.previousId and self.userId):
            raise ValueError("an alias event needs `previousId` and `userId`")
        return self


def event_errors(error: ValidationError) -> list[dict[str, str]]:
    """Pydantic's errors as `[{"field": "properties", "reason": "..."}]`."""
    found = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or "<event>"
        reason = item["msg"].removeprefix("Value error, ")
        found.append({"field": field, "reason": reason})
    return found


FUTURE_TOLERANCE = timedelta(minutes=5)
_KEYS_TO_DROP = ("writeKey", "sentAt", "originalTimestamp", "timestamp")


def normalize_event(
    incoming: IncomingEvent,
    *,
    source: str,
    received_at: datetime,
    batch_sent_at: datetime | None = None,
    batch_context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The stored form of a validated message (see the module docstring)."""
    sent_at = incoming.sentAt or batch_sent_at
    if incoming.timestamp is not None:
        moment = incoming.timestamp
    elif incoming.originalTimestamp is not None and sent_at is not None:
        moment = received_at - (sent_at - incoming.originalTimestamp)
    elif incoming.originalTimestamp is not None:
        moment = incoming.originalTimestamp
    else:
        moment = received_at
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=received_at.tzinfo)
    if moment > received_at + FUTURE_TOLERANCE:
        # A clock far ahead must not push windows forward for everyone: the event happened
        # no later than we received it.
        moment = received_at
    context = dict(batch_context or {})
    context.update(incoming.context or {})
    stored: dict[str, Any] = dict(incoming.model_extra or {})
    for key in _KEYS_TO_DROP:
        stored.pop(key, None)
    stored.update(
        type=incoming.type,
        messageId=incoming.messageId or new_id(),
        anonymousId=incoming.anonymousId,
        userId=incoming.userId,
        context=context,
        timestamp=isoformat(moment),
        receivedAt=isoformat(received_at),
        source=source,
        violations=[],
    )
    if incoming.originalTimestamp is not None:
        stored["originalTimestamp"] = isoformat(incoming.originalTimestamp)
    if incoming.type == "track":
        stored["event"] = incoming.event
        stored["properties"] = incoming.properties or {}
    elif incoming.type in ("page", "screen"):
        stored["name"] = incoming.name
        stored["properties"] = incoming.properties or {}
    elif incoming.type == "identify":
        stored["traits"] = incoming.traits or {}
    elif incoming.type == "group":
        stored["groupId"] = incoming.groupId
        stored["traits"] = incoming.traits or {}
    else:
        stored["previousId"] = incoming.previousId
    if incoming.integrations:
        stored["integrations"] = incoming.integrations
    return stored
