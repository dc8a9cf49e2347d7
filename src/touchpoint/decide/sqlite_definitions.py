"""SCAFFOLD (helper C replaces): the SQLite definition store."""

from __future__ import annotations

from pathlib import Path


class SqliteDefinitionStore:  # type: ignore[misc]
    def __init__(self, path: Path) -> None:
        self.path = path

    def close(self) -> None:
        pass
