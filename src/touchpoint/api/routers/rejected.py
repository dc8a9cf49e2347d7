"""The rejected-events store: count, list, and replay after the plan changed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from touchpoint.api.deps import AdminKey, WorkspaceDep
from touchpoint.collect.replay import replay_rejected

router = APIRouter(tags=["rejected"], dependencies=[AdminKey])


class ReplayRequest(BaseModel):
    """Which rejected events to replay: given ids, or every one (optionally of a reason)."""

    ids: list[int] | None = Field(default=None, max_length=10_000)
    reason: str | None = None
    limit: int = Field(default=1000, ge=1, le=10_000)


@router.get("/v1/rejected", summary="Rejected events with their reasons")
def list_rejected(
    workspace: WorkspaceDep,
    reason: str | None = None,
    source: str | None = None,
    cursor: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict[str, Any]:
    store = workspace.rejected
    page = store.list(reason=reason, source=source, cursor=cursor, limit=limit)
    return {
        "count": store.count(reason=reason, source=source),
        "by_reason": store.counts_by_reason(),
        "events": [
            {
                "id": item.id,
                "source": item.source,
                "messageId": item.message_id,
                "received_at": item.received_at,
                "last_seen": item.last_seen,
                "occurrences": item.occurrences,
                "reason": item.reason,
                "errors": item.errors,
                "event": item.event,
            }
            for item in page.items
        ],
        "next_cursor": page.next_cursor,
    }


@router.post("/v1/rejected/replay", summary="Re-validate rejected events; log those that pass")
async def replay(request: ReplayRequest, workspace: WorkspaceDep) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        result = replay_rejected(
            workspace.collector,
            workspace.rejected,
            workspace.settings.config,
            ids=request.ids,
            reason=request.reason,
            limit=request.limit,
        )
        counts = result.to_dict()
        workspace.audit.record(
            actor="secret_key",
            action="rejected.replay",
            target="rejected",
            details={
                **counts,
                "ids": len(request.ids) if request.ids is not None else None,
                "reason": request.reason,
                "limit": request.limit,
            },
        )
        return counts

    return await run_in_threadpool(run)
