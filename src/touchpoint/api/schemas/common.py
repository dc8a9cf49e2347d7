"""Parameter types shared by several routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, ConfigDict

MAX_ROW_ID = 2**63 - 1
"""The largest integer the stores can hold (SQLite and PostgreSQL BIGINT): a larger one in
a path is a 422, not an overflow inside the store."""

RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="a stored row's number")]
"""A numbered stored row in a path (`/v1/audit/{entry_id}`, a definitions version)."""


class Out(BaseModel):
    """The base of every answer's model. A field a handler returns that its model does not
    declare fails the answer's validation instead of vanishing from it: FastAPI drops
    undeclared fields silently, so a new field would reach no client and no document. The
    contract test (schemathesis over every route) and the route tests then name it."""

    model_config = ConfigDict(extra="forbid")
