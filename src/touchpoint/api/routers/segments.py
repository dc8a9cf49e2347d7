"""Segments: their definitions with current sizes, and their members."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from touchpoint.api.deps import AdminKey, WorkspaceDep
from touchpoint.core.errors import NotFound

router = APIRouter(tags=["segments"], dependencies=[AdminKey])


@router.get("/v1/segments", summary="Every segment with its definition and size")
def list_segments(workspace: WorkspaceDep) -> dict[str, Any]:
    sizes = workspace.profiles.segment_sizes()
    return {
        "segments": [
            {
                "name": segment.name,
                "description": segment.description,
                "condition": segment.condition,
                "size": sizes.get(segment.name, 0),
            }
            for segment in workspace.settings.config.segments
        ]
    }


@router.get("/v1/segments/{name}/members", summary="A segment's current members")
def segment_members(
    name: str,
    workspace: WorkspaceDep,
    cursor: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict[str, Any]:
    if all(segment.name != name for segment in workspace.settings.config.segments):
        raise NotFound(f"no segment named {name!r}", details={"segment": name})
    page = workspace.profiles.segment_members(name, cursor=cursor, limit=limit)
    return {
        "segment": name,
        "members": [{"profile_id": pid, "entered_at": at} for pid, at in page.items],
        "next_cursor": page.next_cursor,
    }
