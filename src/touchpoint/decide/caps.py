"""Frequency caps within one decision request: the counts of what a person was shown,
read from the decision log lazily, once per distinct window."""

from __future__ import annotations

from datetime import datetime, timedelta

from touchpoint.core.clock import isoformat
from touchpoint.decide.catalog import Catalog, CompiledContent
from touchpoint.decide.decision_log.base import DecisionLog


class RequestCaps:
    """One request's view of frequency caps: counts read from the decision log lazily, once
    per distinct window, for every content capped over that window."""

    __slots__ = ("_catalog", "_counts", "_decisions", "_now", "_profile_id", "_subjects")

    def __init__(
        self,
        decisions: DecisionLog,
        catalog: Catalog,
        profile_id: str | None,
        subjects: list[str],
        now: datetime,
    ) -> None:
        self._decisions = decisions
        self._catalog = catalog
        self._profile_id = profile_id
        self._subjects = subjects
        self._now = now
        self._counts: dict[timedelta, dict[str, int]] = {}

    def _window(self, window: timedelta) -> dict[str, int]:
        counts = self._counts.get(window)
        if counts is None:
            counts = dict(
                self._decisions.shown_counts(
                    profile_id=self._profile_id,
                    subjects=self._subjects,
                    content_ids=self._catalog.cap_windows.get(window, frozenset()),
                    since=isoformat(self._now - window),
                )
            )
            self._counts[window] = counts
        return counts

    def reached(self, item: CompiledContent) -> bool:
        """Whether any of the item's caps is reached for this person."""
        return any(self._window(cap.window).get(item.id, 0) >= cap.max for cap in item.caps)

    def shown(self, item: CompiledContent) -> None:
        """Count a choice made in this request (two placements may show the same item)."""
        for cap in item.caps:
            counts = self._window(cap.window)
            counts[item.id] = counts.get(item.id, 0) + 1
