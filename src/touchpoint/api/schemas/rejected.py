"""The rejected-events store over HTTP: list, count and replay."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from touchpoint.api.schemas.common import Out
from touchpoint.api.schemas.errors import FieldProblem


class ReplayRequest(BaseModel):
    """Which rejected events to replay: given ids, or every one (optionally of a reason)."""

    ids: list[int] | None = Field(default=None, max_length=10_000)
    reason: str | None = None
    limit: int = Field(default=1000, ge=1, le=10_000)


class RejectedEventOut(Out):
    """An event the collector refused, with why and the event as received (PII hashed)."""

    id: int
    source: str
    messageId: str | None
    received_at: str = Field(description="when it was first refused")
    last_seen: str = Field(description="when it was last refused")
    occurrences: int = Field(description="how many identical refusals this row counts")
    reason: str
    errors: list[FieldProblem]
    event: Any


class RejectedPage(Out):
    """Rejected events, newest first, with counts; pass `next_cursor` as `cursor`."""

    count: int = Field(description="how many match the filters")
    by_reason: dict[str, int]
    events: list[RejectedEventOut]
    next_cursor: str | None


class ReplayResult(Out):
    """What the replay did with the events it re-validated."""

    replayed: int
    accepted: int
    duplicates: int
    still_rejected: int
    unknown_source: int
