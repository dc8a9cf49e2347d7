"""Profile lookups: the merged profile of any identifier, and its timeline."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from touchpoint.api.deps import AdminKey, WorkspaceDep, read_stores
from touchpoint.api.schemas.errors import ADMIN_ERRORS
from touchpoint.api.schemas.profiles import ProfileEventsPage, ProfileOut
from touchpoint.api.schemas.security import SecretKeyScheme
from touchpoint.core.errors import NotFound
from touchpoint.runtime import Workspace

router = APIRouter(
    tags=["profiles"], dependencies=[AdminKey, SecretKeyScheme], responses=ADMIN_ERRORS
)


def _profile_id(workspace: Workspace, kind: str, value: str) -> str:
    person = workspace.people.find_one(kind, value, load=False)
    if person.profile_id is None:
        raise NotFound(f"no profile has this {kind}", details={"kind": kind})
    return person.profile_id


def _lookup(workspace: Workspace, kind: str, value: str) -> dict[str, Any]:
    profile = workspace.people.find_one(kind, value).profile
    if profile is None:
        raise NotFound(f"no profile has this {kind}", details={"kind": kind})
    document = workspace.people.document(profile, workspace.clock.now())
    document["lineage"] = [
        {
            "survivor_id": merge.survivor_id,
            "merged_id": merge.merged_id,
            "identity": {"kind": merge.identity.kind, "value": merge.identity.value},
            "message_id": merge.message_id,
            "at": merge.at,
        }
        for merge in workspace.profiles.lineage(profile.profile_id)
    ]
    return document


@router.get(
    "/v1/profiles/{kind}/{value}",
    summary="The merged profile of an identifier",
    response_model=ProfileOut,
)
async def get_profile(kind: str, value: str, workspace: WorkspaceDep) -> dict[str, Any]:
    # A few indexed point reads on a local file (WAL: never blocked by the writer) take
    # less time than handing the request to a worker thread and back, so they run inline;
    # on server stores, on the threadpool.
    return await read_stores(workspace, lambda: _lookup(workspace, kind, value))


@router.get(
    "/v1/profiles/{kind}/{value}/events",
    summary="The profile's timeline, newest first",
    response_model=ProfileEventsPage,
)
async def get_profile_events(
    kind: str,
    value: str,
    workspace: WorkspaceDep,
    cursor: str | None = None,
    limit: int = Query(default=50, ge=1, le=500),
) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        page = workspace.profiles.events(
            _profile_id(workspace, kind, value), cursor=cursor, limit=limit
        )
        return {"events": [item.event for item in page.items], "next_cursor": page.next_cursor}

    return await run_in_threadpool(read)
