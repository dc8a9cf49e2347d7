"""The event model: Segment's HTTP Tracking API spec, validated and normalized.

An incoming message is validated with pydantic (field names and reasons come
from there), then normalized into the stored event the log keeps: ids as text,
`messageId` generated when absent, `timestamp` resolved the way Segment does
(explicit timestamp, else `originalTimestamp` corrected for the client clock by
`sentAt`, else `receivedAt`), `receivedAt` stamped, the batch's `context` merged
under the event's own.

The collector runs this for every event it receives, so the hot path avoids work
the model does not need: `validate_event` checks a message with the model's own
field validators but builds plain dicts instead of a model instance, and times are
formatted by `core.clock.isoformat`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import SchemaValidator

from touchpoint.core.clock import isoformat, new_id

logger = logging.getLogger(__name__)

EventType = Literal["track", "identify", "page", "screen", "group", "alias"]
EVENT_TYPES: frozenset[str] = frozenset({"track", "identify", "page", "screen", "group", "alias"})


EXACT_FLOAT_INTEGERS = 2**53
"""Whole numbers a float holds exactly. JSON parsers read integers past 64 bits (orjson)
or past 2^53 (JavaScript) as floats, rounding them: two ids would become one person."""


def _id_text(value: Any) -> Any:
    """An id sent as a JSON number, as its exact decimal text; ValueError for a number that
    may have been rounded (a float past 2^53) or that is not whole."""
    if value.__class__ is str:  # the usual case, first
        return value
    if isinstance(value, bool):
        return value  # refused by the field's type
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < EXACT_FLOAT_INTEGERS:
            return str(int(value))
        raise ValueError(
            "a numeric id must be a whole number of at most 64 bits (larger ones are rounded "
            "when JSON is read, so two ids could become one); send it as a string"
        )
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

    @field_validator(
        "messageId",
        "anonymousId",
        "userId",
        "groupId",
        "previousId",
        "event",
        "name",
        mode="after",
    )
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        # Identifiers and names become keys in every store; PostgreSQL text cannot hold NUL.
        if value is not None and "\x00" in value:
            raise ValueError("must not contain a NUL character")
        return value

    @field_validator("timestamp", "originalTimestamp", "sentAt", mode="after")
    @classmethod
    def _plausible_time(cls, value: datetime | None) -> datetime | None:
        return None if value is None else plausible_time(value)

    @model_validator(mode="after")
    def _required_by_type(self) -> IncomingEvent:
        problem = _missing_for_type(self.__dict__)
        if problem is not None:
            raise ValueError(problem)
        return self


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def plausible_time(value: datetime) -> datetime:
    """`value` as aware UTC if it lies between 1970 and 2200; else ValueError.

    Times outside that range are client bugs, and arithmetic on them (clock-skew
    correction, time zones) would overflow Python's calendar.
    """
    moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if not EARLIEST <= moment < LATEST:
        raise ValueError("must be a time between 1970 and 2200")
    return moment


def _missing_for_type(values: dict[str, Any]) -> str | None:
    """What the message's type requires and it lacks (None when complete)."""
    kind = values["type"]
    if not values["userId"] and not values["anonymousId"]:
        return "either userId or anonymousId is required"
    if kind == "track" and not values["event"]:
        return "a track event needs `event`, the name of the action"
    if kind == "group" and not values["groupId"]:
        return "a group event needs `groupId`"
    if kind == "alias" and not (values["previousId"] and values["userId"]):
        return "an alias event needs `previousId` and `userId`"
    return None


def _fields_validator() -> SchemaValidator | None:
    """`IncomingEvent`'s field validation without the model: it returns `(fields, extra,
    fields_set)` dicts, which skips building an instance (a quarter of the time). Taken from
    the model's own core schema so the two cannot drift. The model's one model validator,
    `_required_by_type`, is run by `validate_event` itself, so if the model ever gets another
    (or the schema another shape) this returns None and `validate_event` uses the model."""
    schema: Any = IncomingEvent.__pydantic_core_schema__
    validators = IncomingEvent.__pydantic_decorators__.model_validators
    try:
        model = schema["schema"]
        expected = (
            list(validators) == ["_required_by_type"]
            and schema["type"] == "function-after"
            and schema["function"]["function"] is validators["_required_by_type"].func
            and model["type"] == "model"
            and model["schema"]["type"] == "model-fields"
        )
        if expected:
            return SchemaValidator(model["schema"], model.get("config"))
    except (KeyError, TypeError, AttributeError):
        pass
    logger.warning("IncomingEvent's schema has an unexpected shape; validating with the model")
    return None


_FIELDS = _fields_validator()


def validate_event(message: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`(fields, extra)` of a valid message, exactly as `IncomingEvent` would hold them
    (`fields` has every declared field, `extra` the unknown ones); raises the model's own
    `ValidationError` for an invalid one."""
    if _FIELDS is not None:
        try:
            fields, extra, _ = _FIELDS.validate_python(message)
        except ValidationError:
            pass  # the model raises the same errors below
        else:
            if _missing_for_type(fields) is None:
                return fields, extra or {}
    incoming = IncomingEvent.model_validate(message)
    return incoming.__dict__, incoming.model_extra or {}


def event_errors(error: ValidationError) -> list[dict[str, str]]:
    """Pydantic's errors as `[{"field": "properties", "reason": "..."}]`."""
    found = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or "<event>"
        reason = item["msg"].removeprefix("Value error, ")
        found.append({"field": field, "reason": reason})
    return found


def event_name(event: Mapping[str, Any]) -> str | None:
    """The name a stored event carries: a `track`'s `event`, a `page`'s or `screen`'s
    `name`; None for the other types (or a name that is not text).

    Every reader of stored events (the profile pipeline, the warehouse's events table)
    names them this one way."""
    key = "event" if event.get("type") == "track" else "name"
    name = event.get(key)
    return name if isinstance(name, str) else None


FUTURE_TOLERANCE = timedelta(minutes=5)


def normalize_event(
    incoming: IncomingEvent,
    *,
    source: str,
    received_at: datetime,
    batch_sent_at: datetime | None = None,
    batch_context: dict[str, Any] | None = None,
    received_text: str | None = None,
) -> dict[str, Any]:
    """The stored form of a validated message (see the module docstring).

    `received_text`, the canonical text of `received_at`, saves formatting it for every
    event of a batch.
    """
    return normalize_fields(
        incoming.__dict__,
        incoming.model_extra or {},
        source=source,
        received_at=received_at,
        batch_sent_at=batch_sent_at,
        batch_context=batch_context,
        received_text=received_text,
    )


def normalize_fields(
    fields: dict[str, Any],
    extra: dict[str, Any],
    *,
    source: str,
    received_at: datetime,
    batch_sent_at: datetime | None = None,
    batch_context: dict[str, Any] | None = None,
    received_text: str | None = None,
) -> dict[str, Any]:
    """`normalize_event` on what `validate_event` returns. The dicts are not changed, but the
    stored event shares their values (as `normalize_event` shares the model's)."""
    received = received_text if received_text is not None else isoformat(received_at)
    skew_note = None
    original = fields["originalTimestamp"]
    sent_at = fields["sentAt"] or batch_sent_at
    if fields["timestamp"] is not None:
        moment = fields["timestamp"]
    elif original is not None and sent_at is not None:
        moment = received_at - (sent_at - original)
        if not EARLIEST <= moment < LATEST:
            # Both times are plausible but the clock they describe is not: keep the event at
            # the time it arrived, and say why.
            skew_note = (
                "timestamp: originalTimestamp corrected by sentAt falls "
                f"{'before 1970' if moment < EARLIEST else 'after 2200'}; receivedAt used"
            )
            moment = received_at
    elif original is not None:
        moment = original
    else:
        moment = received_at
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=received_at.tzinfo)
    if moment > received_at + FUTURE_TOLERANCE:
        # A clock far ahead must not push windows forward for everyone: the event happened
        # no later than we received it.
        moment = received_at
    context = dict(batch_context) if batch_context else {}
    if fields["context"]:
        context.update(fields["context"])
    stored: dict[str, Any] = {}
    if extra:  # only `writeKey` can be here of the keys not stored: the others are fields
        stored.update(extra)
        stored.pop("writeKey", None)
    stored.update(
        type=fields["type"],
        messageId=fields["messageId"] or new_id(),
        anonymousId=fields["anonymousId"],
        userId=fields["userId"],
        context=context,
        timestamp=received if moment is received_at else isoformat(moment),
        receivedAt=received,
        source=source,
        violations=[] if skew_note is None else [skew_note],
    )
    if original is not None:
        stored["originalTimestamp"] = isoformat(original)
    kind = fields["type"]
    if kind == "track":
        stored["event"] = fields["event"]
        stored["properties"] = fields["properties"] or {}
    elif kind in ("page", "screen"):
        stored["name"] = fields["name"]
        stored["properties"] = fields["properties"] or {}
    elif kind == "identify":
        stored["traits"] = fields["traits"] or {}
    elif kind == "group":
        stored["groupId"] = fields["groupId"]
        stored["traits"] = fields["traits"] or {}
    else:
        stored["previousId"] = fields["previousId"]
    if fields["integrations"]:
        stored["integrations"] = fields["integrations"]
    return stored
