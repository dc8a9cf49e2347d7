"""Liveness, Prometheus metrics and the benchmark's no-op endpoint."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from touchpoint.api.deps import WorkspaceDep
from touchpoint.api.responses import OrjsonResponse
from touchpoint.api.schemas.errors import error_responses
from touchpoint.api.schemas.health import Failing, Health

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    summary="Health: the profile consumer's state and lag (503 while it fails)",
    response_model=Health,
    responses={
        **error_responses(),
        503: {"model": Failing, "description": "The profile consumer fails"},
    },
)
async def healthz(workspace: WorkspaceDep) -> OrjsonResponse:
    """200 while this process can do its work; 503 (`status: failing`, with the reason)
    while its profile consumer fails (a store full or unreachable), so a load balancer or
    an orchestrator can act on it. It turns 200 again by itself once the cause is gone. The
    other consumers (outcomes, the warehouse copy) report through `/metrics`
    (`touchpoint_consumer_failing`): profiles stay fresh while they retry."""
    processor = workspace.processor
    lag = processor.lag()
    failing = processor.failing
    body: dict[str, Any] = {
        "status": "failing" if failing else "ok",
        "workspace": workspace.settings.config.workspace,
        "processor": "failing" if failing else "running" if processor.running else "stopped",
        "lag": sum(lag.values()),
    }
    if failing:
        body["error"] = {
            "code": "processor_failing",
            "message": processor.failure,
            "failing_since": processor.failing_since,
        }
    return OrjsonResponse(body, status_code=503 if failing else 200)


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
