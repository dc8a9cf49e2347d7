"""One place where errors become HTTP responses: `{"error": {"code", "message", ...}}`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from touchpoint.api.responses import OrjsonResponse
from touchpoint.core.errors import TouchpointError

logger = logging.getLogger(__name__)


def error_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> OrjsonResponse:
    return OrjsonResponse({"error": body}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every failure into a JSON body with a stable code."""

    @app.exception_handler(TouchpointError)
    async def _domain(_: Request, error: TouchpointError) -> OrjsonResponse:
        return error_response(error.status, error.to_dict(), error.headers())

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, error: RequestValidationError) -> OrjsonResponse:
        errors = [
            {
                "field": ".".join(str(part) for part in item.get("loc", ())),
                "reason": str(item.get("msg", "invalid")),
            }
            for item in error.errors()
        ]
        message = "; ".join(f"{item['field']}: {item['reason']}" for item in errors)
        return error_response(422, {"code": "invalid", "message": message, "errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> OrjsonResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return error_response(error.status_code, {"code": code, "message": str(error.detail)})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> OrjsonResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(
            500, {"code": "internal", "message": "internal error; see the server log"}
        )
