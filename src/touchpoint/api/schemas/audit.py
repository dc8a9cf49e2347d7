"""The audit log over HTTP."""

from __future__ import annotations

from typing import Any

from touchpoint.api.schemas.common import Out


class AuditEntryOut(Out):
    """Who did what to which target, when, with the details of the change."""

    id: int
    at: str
    actor: str
    action: str
    target: str
    details: dict[str, Any]


class AuditPage(Out):
    """Audit entries, newest first; pass `next_cursor` as `cursor` for the next page."""

    entries: list[AuditEntryOut]
    next_cursor: str | None
