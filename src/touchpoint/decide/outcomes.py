"""SCAFFOLD (helper B replaces): the outcome sink."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class OutcomeSink:
    name = "outcomes"

    def __init__(self, decisions: Any, definitions: Any) -> None:
        self.decisions = decisions
        self.definitions = definitions

    def write(self, events: Sequence[Any]) -> None:
        pass
