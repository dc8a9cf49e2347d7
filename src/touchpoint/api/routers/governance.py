"""Erasure and export of a person: the privacy rights, on the secret key.

The handlers only translate HTTP to `Eraser.erase` and `Workspace.export_person`; both write the
audit log, with the secret key as the actor.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from touchpoint.api.deps import AdminKey, WorkspaceDep
from touchpoint.api.schemas.errors import ADMIN_ERRORS
from touchpoint.api.schemas.governance import ErasureJobOut, PersonExport
from touchpoint.api.schemas.security import SecretKeyScheme

router = APIRouter(
    tags=["governance"], dependencies=[AdminKey, SecretKeyScheme], responses=ADMIN_ERRORS
)

ACTOR = "secret_key"


@router.delete(
    "/v1/profiles/{kind}/{value}",
    summary="Erase a person from every store; returns the erasure job (idempotent)",
    response_model=ErasureJobOut,
)
async def erase_profile(kind: str, value: str, workspace: WorkspaceDep) -> dict[str, Any]:
    job = await run_in_threadpool(workspace.eraser.erase, kind, value, actor=ACTOR)
    return job.to_dict()


@router.get(
    "/v1/profiles/{kind}/{value}/export",
    summary="Everything held about a person, as JSON",
    response_model=PersonExport,
)
async def export_profile(kind: str, value: str, workspace: WorkspaceDep) -> dict[str, Any]:
    return await run_in_threadpool(workspace.export_person, kind, value, actor=ACTOR)
