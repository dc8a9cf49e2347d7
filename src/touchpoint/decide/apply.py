"""SCAFFOLD (helper C replaces): applying definitions."""

from __future__ import annotations

from typing import Any


def sync_definitions(store: Any, definitions: Any, *, audit: Any, actor: str) -> Any:
    return None
