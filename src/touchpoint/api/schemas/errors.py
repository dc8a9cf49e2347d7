"""The error shape every failure answers with: `{"error": {"code", "message", ...}}`.

`api.errors` writes it for domain errors, request validation (422 with `errors`), unknown
routes and unexpected failures; `error_responses` attaches it to a route's documented
statuses so the OpenAPI document describes what the server returns (FastAPI's own
`HTTPValidationError` never appears: the server never sends it).
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from touchpoint.api.schemas.common import Out


class FieldProblem(Out):
    """One invalid field of a request: where, and why."""

    field: str = Field(description="the field's path, such as `query.limit` or `body.batch`")
    reason: str


class ErrorDetail(Out):
    """What went wrong: a stable `code`, a message for people, and details that depend on the
    error (`field`, `path`, `errors`, `source`, ...)."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(
        description=(
            "stable: bad_request, unauthorized, forbidden, not_found, payload_too_large, "
            "invalid, invalid_definition, rejected, unavailable, internal, ..."
        )
    )
    message: str
    errors: list[FieldProblem] | None = Field(
        default=None, description="on a 422 for request validation: every invalid field"
    )


class ErrorResponse(Out):
    """The body of every 4xx and 5xx answer."""

    error: ErrorDetail


DESCRIPTIONS = {
    400: "The request cannot be understood (malformed JSON, bad gzip, wrong shape)",
    401: "No key, or a key this workspace does not know",
    403: "A known key without the right for this route",
    404: "The named resource does not exist",
    413: "The body (or an event) is over its size limit",
    422: "Well-formed input that breaks a rule; names the field and the reason",
    429: "Over the source's rate limit; retry after `Retry-After` seconds",
    500: "An unexpected failure (logged on the server)",
    503: "A store cannot take the work now; retry after `Retry-After` seconds",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route that may fail with `statuses` (500 is always added)."""
    return {
        status: {"model": ErrorResponse, "description": DESCRIPTIONS[status]}
        for status in sorted({*statuses, 500})
    }


ADMIN_ERRORS = error_responses(400, 401, 403, 404, 422, 503)
"""What a secret-key route may answer besides its result."""
