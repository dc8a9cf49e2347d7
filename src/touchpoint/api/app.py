"""The HTTP application: one router per area, settings passed in, nothing built at import."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from touchpoint import __version__
from touchpoint.api.errors import install_error_handlers
from touchpoint.api.openapi import install_openapi
from touchpoint.api.responses import OrjsonResponse
from touchpoint.api.routers import (
    audit,
    collect,
    decide,
    decisions,
    definitions,
    governance,
    health,
    profiles,
    rejected,
    segments,
)
from touchpoint.config.settings import Settings, load_settings
from touchpoint.core.metrics import Metrics
from touchpoint.runtime import Workspace

logger = logging.getLogger(__name__)

DOCS_ASSETS = "/docs/static"

# Label values must come from bounded sets, whatever a client sends: every distinct value
# is a new series kept for the life of the process.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "<unmatched>"
OTHER_METHOD = "<other>"


def latency_labels(scope: Scope, status: int) -> tuple[str, str, str]:
    """(method, route, status) of a request, each from a bounded set: a standard method else
    `<other>`, the matched route's template (never the path) else `<unmatched>`, and the
    status code (100-599)."""
    method = scope.get("method", "")
    route = getattr(scope.get("route"), "path", None)
    return (
        method if method in HTTP_METHODS else OTHER_METHOD,
        route if isinstance(route, str) else UNMATCHED_ROUTE,
        str(status) if 100 <= status <= 599 else "500",
    )


class LatencyMiddleware:
    """Records request latency per route template (pure ASGI: no per-request task overhead),
    with labels from bounded sets (`latency_labels`)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self.metrics.request_latency.labels(*latency_labels(scope, status)).observe(
                time.perf_counter() - started
            )


def create_app_from_environment() -> FastAPI:
    """The app of one of `touchpoint serve --workers N`'s processes: settings from the
    environment the parent set (TOUCHPOINT_CONFIG, TOUCHPOINT_DATA_DIR, and
    TOUCHPOINT_RUN_PROCESSOR=0 to keep the stream processor out of the API processes)."""
    settings = load_settings(
        run_processor=os.environ.get("TOUCHPOINT_RUN_PROCESSOR", "1") != "0",
        enable_noop_endpoint=os.environ.get("TOUCHPOINT_NOOP_ENDPOINT") == "1",
    )
    return create_app(settings)


def create_app(
    settings: Settings,
    *,
    workspace: Workspace | None = None,
    owns_workspace: bool = False,
    routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """Build the app.

    With no `workspace`, it opens one at startup. The app runs a workspace it owns (one it
    opened, or one handed over with `owns_workspace=True`, as `touchpoint serve` does after
    printing the keys): at startup it starts the workspace's background work when the
    settings ask for it (the log consumers: profiles, outcomes, the warehouse copy; and the
    jobs: retention, training), and
    at shutdown it closes the workspace. Shutdown is the one path both Ctrl-C and SIGTERM
    take (uvicorn re-raises SIGTERM only after it), so every file is closed either way. A
    workspace handed over without ownership (tests) is left as it is.

    `routers` are added after the API's own: a layer above the API registers its pages
    this way (`touchpoint demo` its storefront), so the API imports none of them."""
    metrics = workspace.metrics if workspace is not None else Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = workspace is None or owns_workspace
        opened = workspace if workspace is not None else Workspace.open(settings, metrics=metrics)
        app.state.workspace = opened
        try:
            if owned and settings.run_processor:
                opened.start_background()
            yield
        finally:
            if owned:
                opened.close()

    # `/docs` (Swagger UI) and `/redoc` load their scripts and styles from this server
    # (`/docs/static`, shipped in the fastapi-offline package), never from a CDN: the docs
    # work offline and behind a strict firewall.
    app = FastAPIOffline(
        title="Touchpoint",
        version=__version__,
        default_response_class=OrjsonResponse,
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
    )
    if workspace is not None:
        app.state.workspace = workspace
    install_error_handlers(app)
    for module in (
        collect,
        profiles,
        governance,
        segments,
        rejected,
        decide,
        decisions,
        definitions,
        audit,
        health,
    ):
        app.include_router(module.router)
    for router in routers:
        app.include_router(router)
    if settings.enable_noop_endpoint:
        app.add_api_route("/v1/noop", health.noop, methods=["POST"], include_in_schema=False)
    install_openapi(app, settings.config, decide.MAX_PLACEMENTS)
    app.add_middleware(LatencyMiddleware, metrics=metrics)
    return app
