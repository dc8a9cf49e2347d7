"""SCAFFOLD (helper D replaces): erasure."""

from __future__ import annotations

from typing import Any


class Eraser:
    def __init__(self, **parts: Any) -> None:
        self.parts = parts
