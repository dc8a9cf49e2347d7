"""JSON responses serialized with orjson (fast, and handles datetimes)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class OrjsonResponse(JSONResponse):
    """A JSONResponse whose body orjson writes."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
