"""SCAFFOLD (helper A replaces): the decision engine."""

from __future__ import annotations

from typing import Any


class Decider:
    def __init__(self, **parts: Any) -> None:
        self.parts = parts
