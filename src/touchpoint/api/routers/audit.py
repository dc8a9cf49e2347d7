"""The audit log: who did what, when, newest first."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from touchpoint.api.deps import AdminKey, WorkspaceDep
from touchpoint.api.schemas.audit import AuditEntryOut, AuditPage
from touchpoint.api.schemas.common import RowId
from touchpoint.api.schemas.errors import ADMIN_ERRORS
from touchpoint.api.schemas.security import SecretKeyScheme
from touchpoint.audit.base import AuditEntry
from touchpoint.core.errors import NotFound

router = APIRouter(tags=["audit"], dependencies=[AdminKey, SecretKeyScheme], responses=ADMIN_ERRORS)


def _entry(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at,
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "details": entry.details,
    }


@router.get(
    "/v1/audit",
    summary="Audit entries, newest first, by action or target",
    response_model=AuditPage,
)
def list_audit(
    workspace: WorkspaceDep,
    action: str | None = None,
    target: str | None = None,
    cursor: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict[str, Any]:
    page = workspace.audit.list(action=action, target=target, cursor=cursor, limit=limit)
    return {"entries": [_entry(item) for item in page.items], "next_cursor": page.next_cursor}


@router.get("/v1/audit/{entry_id}", summary="One audit entry", response_model=AuditEntryOut)
def get_audit(entry_id: RowId, workspace: WorkspaceDep) -> dict[str, Any]:
    entry = workspace.audit.get(entry_id)
    if entry is None:
        raise NotFound(f"no audit entry {entry_id}", details={"id": entry_id})
    return _entry(entry)
