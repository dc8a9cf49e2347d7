"""SCAFFOLD (helper C replaces): the SQLite audit log."""

from __future__ import annotations

from pathlib import Path


class SqliteAuditLog:  # type: ignore[misc]
    def __init__(self, path: Path) -> None:
        self.path = path

    def close(self) -> None:
        pass
