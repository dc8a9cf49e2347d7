"""Parameter types shared by several routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

MAX_ROW_ID = 2**63 - 1
"""The largest integer the stores can hold (SQLite and PostgreSQL BIGINT): a larger one in
a path is a 422, not an overflow inside the store."""

RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="a stored row's number")]
"""A numbered stored row in a path (`/v1/audit/{entry_id}`, a definitions version)."""
