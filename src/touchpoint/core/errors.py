"""Domain errors with a stable code and HTTP status.

Every area raises these; the API turns them into JSON responses in one handler,
so a route never builds an error body by hand.
"""

from __future__ import annotations

import math
from typing import Any


class TouchpointError(Exception):
    """Base of every error Touchpoint reports to a caller."""

    code: str = "error"
    status: int = 400

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        body.update(self.details)
        return body

    def headers(self) -> dict[str, str] | None:
        """HTTP headers the response carries (`Retry-After` for the errors that pass)."""
        return None


class BadRequest(TouchpointError):
    """The request cannot be understood (malformed JSON, bad gzip, wrong shape)."""

    code = "bad_request"
    status = 400


class Unauthorized(TouchpointError):
    """No key, or a key this workspace does not know."""

    code = "unauthorized"
    status = 401


class Forbidden(TouchpointError):
    """A known key without the right for this call (a write key on an admin route)."""

    code = "forbidden"
    status = 403


class NotFound(TouchpointError):
    """The named resource does not exist."""

    code = "not_found"
    status = 404


class PayloadTooLarge(TouchpointError):
    """A body or an event over its size limit."""

    code = "payload_too_large"
    status = 413


class InvalidInput(TouchpointError):
    """Well-formed input that breaks a rule; names the field and the reason."""

    code = "invalid"
    status = 422


class Unavailable(TouchpointError):
    """A store cannot take the write now; the caller should retry later."""

    code = "unavailable"
    status = 503

    def __init__(self, message: str, *, retry_after: int = 1, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after)}


class RateLimited(TouchpointError):
    """A source sent faster than its rate limit allows; retry after `retry_after` seconds.

    The body names the limit passed and the wait in seconds (fractional); `Retry-After`
    carries it rounded up to whole seconds, as HTTP wants."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: float, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.details["retry_after"] = round(retry_after, 3)

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


class DefinitionError(TouchpointError):
    """A definition (config, condition, template) is invalid at `path`."""

    code = "invalid_definition"
    status = 422

    def __init__(self, path: str, reason: str) -> None:
        where = path or "<root>"
        super().__init__(f"{where}: {reason}", details={"path": where, "reason": reason})
        self.path = where
        self.reason = reason


class ServiceUnavailableAtStart(TouchpointError):
    """A server the configuration names (PostgreSQL, Redis) is misconfigured or unreachable
    when a process starts. `setting` names where the value came from, so the message says
    what to fix; the URL in the message never carries a password."""

    code = "service_unavailable"
    status = 503

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}", details={"setting": setting})
        self.setting = setting
        self.reason = reason


def format_location(location: tuple[int | str, ...]) -> str:
    """A validation error's location as a path: `("content", 3, "template")` is
    `content[3].template`."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path
