"""Liveness."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Health(BaseModel):
    """Whether this process can do its work: its stream processor's state (`failing`, with
    the reason and since when, answers 503), and how far behind it is."""

    status: Literal["ok", "failing"]
    workspace: str
    processor: Literal["running", "stopped", "failing"]
    lag: int = Field(description="events logged and not yet processed")
    error: str | None = Field(default=None, description="why the processor fails")
    failing_since: str | None = Field(default=None, description="when it began to fail")
