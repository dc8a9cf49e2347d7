"""Liveness."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Health(BaseModel):
    """The process answers; whether its stream processor runs, and how far behind it is."""

    status: Literal["ok"]
    workspace: str
    processor: Literal["running", "stopped"]
    lag: int = Field(description="events logged and not yet processed")
