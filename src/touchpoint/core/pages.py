"""Pages of a list: every list the API serves (profiles, audit entries, rejected events,
definition versions) is paged the same way, by an opaque cursor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from touchpoint.core.errors import InvalidInput

T = TypeVar("T")


MAX_ID = 2**63 - 1  # a SQLite rowid, a PostgreSQL bigint


def parse_id_cursor(cursor: str | None, maximum: int = MAX_ID) -> int | None:
    """The id a `list` cursor holds (lists paged by decreasing integer id: audit entries,
    rejected events, definition versions); anything but ASCII digits up to `maximum` is
    `InvalidInput`, never a database overflow."""
    if cursor is None:
        return None
    if not (cursor.isascii() and cursor.isdigit()) or int(cursor) > maximum:
        raise InvalidInput("not a cursor from this list", details={"field": "cursor"})
    return int(cursor)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """A page of results; pass `next_cursor` back to get the next one (None at the end)."""

    items: list[T]
    next_cursor: str | None
