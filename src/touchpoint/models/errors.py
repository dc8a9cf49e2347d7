"""What a model step reports instead of crashing."""

from __future__ import annotations

from touchpoint.core.errors import TouchpointError


class NotEnoughData(TouchpointError):
    """Too little data to train (a new workspace, a window with no purchases): the model is
    skipped with this reason and decisions keep their fallback (popularity or rules)."""

    code = "not_enough_data"
    status = 422

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
