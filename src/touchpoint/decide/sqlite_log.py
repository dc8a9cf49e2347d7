"""SCAFFOLD (helper B replaces): the SQLite decision log."""

from __future__ import annotations

from pathlib import Path


class SqliteDecisionLog:  # type: ignore[misc]
    def __init__(self, path: Path) -> None:
        self.path = path

    def close(self) -> None:
        pass
