"""Segments: their definitions with current sizes, and their members."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from touchpoint.api.deps import AdminKey, WorkspaceDep
from touchpoint.api.schemas.errors import ADMIN_ERRORS
from touchpoint.api.schemas.security import SecretKeyScheme
from touchpoint.api.schemas.segments import SegmentList, SegmentMembersPage
from touchpoint.core.errors import NotFound

router = APIRouter(
    tags=["segments"], dependencies=[AdminKey, SecretKeyScheme], responses=ADMIN_ERRORS
)


# Batch segment families written by `touchpoint train`, by name prefix.
BATCH_FAMILIES = {
    "rfm_": "rfm",
    "cluster_": "clusters",
    "value_": "lifecycle",
    "lifecycle_": "lifecycle",
}


@router.get(
    "/v1/segments",
    summary="Every segment with its definition and size",
    response_model=SegmentList,
)
def list_segments(workspace: WorkspaceDep) -> dict[str, Any]:
    """Real-time segments (`kind: realtime`, with their condition) and the batch segments
    models wrote (`kind: batch`, with the model that made them)."""
    sizes = workspace.profiles.segment_sizes()
    configured = workspace.settings.config.segments
    listed: list[dict[str, Any]] = [
        {
            "name": segment.name,
            "kind": "realtime",
            "description": segment.description,
            "condition": segment.condition,
            "size": sizes.get(segment.name, 0),
        }
        for segment in configured
    ]
    known = {segment.name for segment in configured}
    for name in sorted(set(sizes) - known):
        model = next((m for prefix, m in BATCH_FAMILIES.items() if name.startswith(prefix)), None)
        listed.append({"name": name, "kind": "batch", "model": model, "size": sizes[name]})
    return {"segments": listed}


@router.get(
    "/v1/segments/{name}/members",
    summary="A segment's current members",
    response_model=SegmentMembersPage,
)
def segment_members(
    name: str,
    workspace: WorkspaceDep,
    cursor: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict[str, Any]:
    configured = any(segment.name == name for segment in workspace.settings.config.segments)
    if not configured and name not in workspace.profiles.segment_sizes():
        raise NotFound(f"no segment named {name!r}", details={"segment": name})
    page = workspace.profiles.segment_members(name, cursor=cursor, limit=limit)
    return {
        "segment": name,
        "members": [{"profile_id": pid, "entered_at": at} for pid, at in page.items],
        "next_cursor": page.next_cursor,
    }
