"""The event routes' bodies (Segment's HTTP Tracking API) and their answers.

The routes parse bodies themselves (gzip, any content type, orjson, then
`collect.events.IncomingEvent` per event), so these models only document them: one model
per event type, the single-event bodies (`/v1/track`, ...) and the batch. Unknown fields
are kept, as Segment keeps them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from touchpoint.api.schemas.common import Out
from touchpoint.api.schemas.errors import ErrorDetail, FieldProblem

Identifier = str | int
"""An id as SDKs send it: text, or a number (stored as text)."""


class _Event(BaseModel):
    """The fields every event may carry. Either `userId` or `anonymousId` is required."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"anyOf": [{"required": ["userId"]}, {"required": ["anonymousId"]}]},
    )

    messageId: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="the client's id of the message; repeats are acknowledged as duplicates",
    )
    anonymousId: Identifier | None = Field(default=None, description="the device's id")
    userId: Identifier | None = Field(default=None, description="your id of the person")
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    timestamp: datetime | None = Field(default=None, description="when it happened")
    originalTimestamp: datetime | None = Field(
        default=None, description="when it happened by the client's clock (corrected by sentAt)"
    )
    sentAt: datetime | None = None


class _Track(_Event):
    event: str = Field(max_length=512, description="the action, such as `Order Completed`")
    properties: dict[str, Any] | None = None


class _Identify(_Event):
    traits: dict[str, Any] | None = None


class _Page(_Event):
    name: str | None = Field(default=None, max_length=512)
    properties: dict[str, Any] | None = None


class _Group(_Event):
    groupId: Identifier = Field(description="the group (account, company) the person joins")
    traits: dict[str, Any] | None = None


class _Alias(_Event):
    previousId: Identifier = Field(description="the id the person had before")
    userId: Identifier = Field(description="the id the person has now")


class TrackEvent(_Track):
    """Something the person did."""

    type: Literal["track"]


class IdentifyEvent(_Identify):
    """Who the person is: traits."""

    type: Literal["identify"]


class PageEvent(_Page):
    """A page the person viewed."""

    type: Literal["page"]


class ScreenEvent(_Page):
    """A screen of an app the person viewed."""

    type: Literal["screen"]


class GroupEvent(_Group):
    """The person belongs to a group."""

    type: Literal["group"]


class AliasEvent(_Alias):
    """Two ids of one person."""

    type: Literal["alias"]


Event = Annotated[
    TrackEvent | IdentifyEvent | PageEvent | ScreenEvent | GroupEvent | AliasEvent,
    Field(discriminator="type"),
]


class _WriteKey(Out):
    writeKey: str | None = Field(
        default=None, description="the source's write key, when not sent as HTTP Basic user"
    )


class TrackBody(_Track, _WriteKey):
    """`POST /v1/track`: one track event (its `type` is the route's)."""


class IdentifyBody(_Identify, _WriteKey):
    """`POST /v1/identify`: one identify event."""


class PageBody(_Page, _WriteKey):
    """`POST /v1/page`: one page event."""


class ScreenBody(_Page, _WriteKey):
    """`POST /v1/screen`: one screen event."""


class GroupBody(_Group, _WriteKey):
    """`POST /v1/group`: one group event."""


class AliasBody(_Alias, _WriteKey):
    """`POST /v1/alias`: one alias event."""


SINGLE_BODIES: dict[str, type[BaseModel]] = {
    "track": TrackBody,
    "identify": IdentifyBody,
    "page": PageBody,
    "screen": ScreenBody,
    "group": GroupBody,
    "alias": AliasBody,
}


class BatchBody(_WriteKey):
    """`POST /v1/batch`: events of any type, with what applies to all of them."""

    model_config = ConfigDict(extra="allow")

    batch: list[Event]
    sentAt: datetime | None = Field(
        default=None, description="when the client sent the batch: corrects its clock's skew"
    )
    context: dict[str, Any] | None = Field(
        default=None, description="merged under each event's own context"
    )


class EventProblem(Out):
    """Why the event at `index` of the request was rejected or flagged."""

    index: int
    messageId: str | None
    reason: str = Field(description="invalid, too_large, tracking_plan, ...")
    errors: list[FieldProblem]


class CollectResponse(Out):
    """What happened to each event: accepted (durably logged before this answer),
    duplicates, rejected (kept in the rejected store) and flagged (accepted, but off the
    tracking plan)."""

    success: bool = Field(description="true when no event was rejected")
    accepted: int
    duplicates: int
    rejected_count: int = Field(description="how many events were rejected")
    rejected: list[EventProblem] = Field(description="the first 100 rejected events")
    flagged_count: int = Field(description="how many accepted events are off the plan")
    flagged: list[EventProblem] = Field(description="the first 100 flagged events")


class CollectRejectedDetail(ErrorDetail):
    """With `code` `rejected`, every event of the request was rejected: the message names the
    first reason, and the whole result follows (absent for other codes)."""

    success: bool | None = None
    accepted: int | None = None
    duplicates: int | None = None
    rejected_count: int | None = None
    rejected: list[EventProblem] | None = None
    flagged_count: int | None = None
    flagged: list[EventProblem] | None = None


class CollectRejectedResponse(Out):
    """The body of a 400 or 413 on an event route (also used for a malformed request)."""

    error: CollectRejectedDetail
