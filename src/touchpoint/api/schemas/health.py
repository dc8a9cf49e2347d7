"""Health."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from touchpoint.api.schemas.common import Out
from touchpoint.api.schemas.errors import ErrorDetail


class Health(Out):
    """The process can do its work: whether its stream processor runs, and how far behind
    it is."""

    status: Literal["ok"]
    workspace: str
    processor: Literal["running", "stopped"]
    lag: int = Field(description="events logged and not yet processed")


class Failing(Out):
    """The 503 of `/healthz`: the error shape of every 4xx and 5xx (`code`
    `processor_failing`, the reason as `message`, and `failing_since`), beside the same
    fields as a healthy answer."""

    error: ErrorDetail
    status: Literal["failing"] = "failing"
    workspace: str | None = None
    processor: Literal["failing"] = "failing"
    lag: int | None = Field(default=None, description="events logged and not yet processed")
