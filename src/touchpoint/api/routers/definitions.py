"""Definitions admin: read every version, plan and apply whole sets, edit one item.

Every write validates the whole resulting set before anything is stored (a bad one
is a 422 naming its `path` and `reason`), creates at most one new version, and is
recorded in the audit log by `definitions.apply`. Reading placements
(`GET /v1/placements[/{name}]`) belongs to the decide router.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from touchpoint.api.deps import AdminKey, WorkspaceDep
from touchpoint.api.schemas.common import RowId
from touchpoint.api.schemas.definitions import (
    ApplyRequest,
    ApplyResult,
    DefinitionVersionOut,
    DefinitionVersionPage,
    PlanRequest,
    PlanResult,
)
from touchpoint.api.schemas.errors import ADMIN_ERRORS
from touchpoint.api.schemas.security import SecretKeyScheme
from touchpoint.core.errors import NotFound
from touchpoint.definitions.apply import (
    DefinitionDiff,
    apply_definitions,
    delete_content,
    delete_placement,
    diff_definitions,
    edit_definitions,
    put_content,
    put_placement,
)
from touchpoint.definitions.model import Definitions, parse_definitions
from touchpoint.definitions.store.base import DefinitionVersion
from touchpoint.runtime import Workspace

router = APIRouter(
    tags=["definitions"], dependencies=[AdminKey, SecretKeyScheme], responses=ADMIN_ERRORS
)

ACTOR = "secret_key"
ItemBody = Annotated[dict[str, Any], Body(description="the item, as in touchpoint.yaml")]


def _version(version: DefinitionVersion, *, definitions: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": version.version,
        "digest": version.digest,
        "applied_at": version.applied_at,
        "actor": version.actor,
        "note": version.note,
    }
    if definitions:
        body["definitions"] = version.definitions.model_dump(mode="json")
    else:
        body["placements"] = len(version.definitions.placements)
        body["content"] = len(version.definitions.content)
    return body


def _applied(version: DefinitionVersion, diff: DefinitionDiff, *, previous: int) -> dict[str, Any]:
    return {
        "version": version.version,
        "changed": version.version != previous,
        "diff": diff.to_dict(),
    }


def _edit(
    workspace: Workspace, change: Callable[[Definitions], Definitions], note: str
) -> dict[str, Any]:
    previous = workspace.definitions.latest_version()
    version, diff = edit_definitions(
        workspace.definitions, change, audit=workspace.audit, actor=ACTOR, note=note
    )
    workspace.decider.refresh()  # this process decides with the new version at once
    return _applied(version, diff, previous=previous)


@router.get(
    "/v1/definitions",
    summary="The current placements and content, with their version",
    response_model=DefinitionVersionOut,
)
def current_definitions(workspace: WorkspaceDep) -> dict[str, Any]:
    current = workspace.definitions.current()
    if current is None:
        raise NotFound("no definitions applied yet")
    return _version(current)


@router.get(
    "/v1/definitions/versions",
    summary="Every applied version, newest first",
    response_model=DefinitionVersionPage,
)
def definition_versions(
    workspace: WorkspaceDep,
    cursor: str | None = None,
    limit: int = Query(default=20, ge=1, le=100),
) -> dict[str, Any]:
    page = workspace.definitions.versions(cursor=cursor, limit=limit)
    return {
        "versions": [_version(item, definitions=False) for item in page.items],
        "next_cursor": page.next_cursor,
    }


@router.get(
    "/v1/definitions/versions/{number}",
    summary="One applied version",
    response_model=DefinitionVersionOut,
)
def definition_version(number: RowId, workspace: WorkspaceDep) -> dict[str, Any]:
    version = workspace.definitions.get(number)
    if version is None:
        raise NotFound(f"no definitions version {number}", details={"version": number})
    return _version(version)


@router.post(
    "/v1/definitions/plan",
    summary="What applying a set would change (stores nothing)",
    response_model=PlanResult,
)
def plan_definitions(request: PlanRequest, workspace: WorkspaceDep) -> dict[str, Any]:
    definitions = parse_definitions(request.model_dump(include={"placements", "content"}))
    current = workspace.definitions.current()
    diff = diff_definitions(current.definitions if current else None, definitions)
    return {
        "current_version": current.version if current else 0,
        "changed": not diff.empty or current is None,
        "diff": diff.to_dict(),
    }


@router.put(
    "/v1/definitions", summary="Apply a whole set as the next version", response_model=ApplyResult
)
def put_definitions(request: ApplyRequest, workspace: WorkspaceDep) -> dict[str, Any]:
    previous = workspace.definitions.latest_version()
    version, diff = apply_definitions(
        workspace.definitions,
        request.model_dump(include={"placements", "content"}),
        audit=workspace.audit,
        actor=ACTOR,
        note=request.note,
    )
    workspace.decider.refresh()  # this process decides with the new version at once
    return _applied(version, diff, previous=previous)


@router.put(
    "/v1/content/{content_id}",
    summary="Create or replace one content item",
    response_model=ApplyResult,
)
def put_content_item(
    content_id: str,
    workspace: WorkspaceDep,
    item: ItemBody,
    note: str | None = None,
) -> dict[str, Any]:
    def change(definitions: Definitions) -> Definitions:
        return put_content(definitions, content_id, item)

    return _edit(workspace, change, note or f"PUT content {content_id}")


@router.delete(
    "/v1/content/{content_id}", summary="Delete one content item", response_model=ApplyResult
)
def delete_content_item(
    content_id: str, workspace: WorkspaceDep, note: str | None = None
) -> dict[str, Any]:
    def change(definitions: Definitions) -> Definitions:
        return delete_content(definitions, content_id)

    return _edit(workspace, change, note or f"DELETE content {content_id}")


@router.put(
    "/v1/placements/{name}", summary="Create or replace one placement", response_model=ApplyResult
)
def put_placement_item(
    name: str,
    workspace: WorkspaceDep,
    item: ItemBody,
    note: str | None = None,
) -> dict[str, Any]:
    def change(definitions: Definitions) -> Definitions:
        return put_placement(definitions, name, item)

    return _edit(workspace, change, note or f"PUT placement {name}")


@router.delete("/v1/placements/{name}", summary="Delete one placement", response_model=ApplyResult)
def delete_placement_item(
    name: str, workspace: WorkspaceDep, note: str | None = None
) -> dict[str, Any]:
    def change(definitions: Definitions) -> Definitions:
        return delete_placement(definitions, name)

    return _edit(workspace, change, note or f"DELETE placement {name}")
