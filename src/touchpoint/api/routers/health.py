"""Liveness, Prometheus metrics and the benchmark's no-op endpoint."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from touchpoint.api.deps import WorkspaceDep
from touchpoint.api.responses import OrjsonResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Health: the processor's state and lag (503 while it fails)")
async def healthz(workspace: WorkspaceDep) -> OrjsonResponse:
    """200 while this process can do its work; 503 (`status: failing`, with the reason)
    while its stream processor fails (a store full or unreachable), so a load balancer or
    an orchestrator can act on it. It turns 200 again by itself once the cause is gone."""
    processor = workspace.processor
    lag = workspace.log.lag(processor.group)
    failing = processor.failing
    body: dict[str, Any] = {
        "status": "failing" if failing else "ok",
        "workspace": workspace.settings.config.workspace,
        "processor": "failing" if failing else "running" if processor.running else "stopped",
        "lag": sum(lag.values()),
    }
    if failing:
        body["error"] = processor.failure
        body["failing_since"] = processor.failing_since
    return OrjsonResponse(body, status_code=503 if failing else 200)


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(workspace: WorkspaceDep) -> Response:
    payload = await run_in_threadpool(generate_latest, workspace.metrics.registry)
    return Response(payload, media_type=CONTENT_TYPE_LATEST)


async def noop(request: Request) -> OrjsonResponse:
    """Reads the body and answers: the floor the benchmarks compare real endpoints with."""
    await request.body()
    return OrjsonResponse({"success": True})
