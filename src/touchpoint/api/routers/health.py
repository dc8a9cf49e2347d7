"""Liveness, Prometheus metrics and the benchmark's no-op endpoint."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from touchpoint.api.deps import WorkspaceDep
from touchpoint.api.responses import OrjsonResponse
from touchpoint.api.schemas.errors import error_responses
from touchpoint.api.schemas.health import Health

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    summary="Liveness and the processor's lag",
    response_model=Health,
    responses=error_responses(503),
)
async def healthz(workspace: WorkspaceDep) -> dict[str, Any]:
    lag = workspace.log.lag(workspace.processor.group)
    return {
        "status": "ok",
        "workspace": workspace.settings.config.workspace,
        "processor": "running" if workspace.processor.running else "stopped",
        "lag": sum(lag.values()),
    }


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
            "description": "The Prometheus text exposition format",
        },
        **error_responses(),
    },
)
async def metrics(workspace: WorkspaceDep) -> Response:
    payload = await run_in_threadpool(generate_latest, workspace.metrics.registry)
    return Response(payload, media_type=CONTENT_TYPE_LATEST)


async def noop(request: Request) -> OrjsonResponse:
    """Reads the body and answers: the floor the benchmarks compare real endpoints with."""
    await request.body()
    return OrjsonResponse({"success": True})
