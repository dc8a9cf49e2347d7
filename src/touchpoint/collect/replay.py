"""Replaying rejected events after the tracking plan (or the code) changed.

Each rejected event goes through the collector again, exactly like a new
request from its source; those that pass are logged (deduplicated as usual) and
removed from the rejected store, the others stay with their original reasons.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from touchpoint.collect.ingest import Collector
from touchpoint.collect.rejected.base import RejectedEvent, RejectedStore
from touchpoint.config.workspace import TouchpointConfig


@dataclass(frozen=True)
class ReplayResult:
    """How a replay went."""

    replayed: int
    accepted: int
    duplicates: int
    still_rejected: int
    unknown_source: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "replayed": self.replayed,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "still_rejected": self.still_rejected,
            "unknown_source": self.unknown_source,
        }


def _select(
    store: RejectedStore, ids: Sequence[int] | None, reason: str | None, limit: int
) -> list[RejectedEvent]:
    wanted = set(ids) if ids is not None else None
    chosen: list[RejectedEvent] = []
    cursor: str | None = None
    while len(chosen) < limit:
        page = store.list(reason=reason, cursor=cursor, limit=min(500, limit))
        chosen.extend(item for item in page.items if wanted is None or item.id in wanted)
        cursor = page.next_cursor
        if cursor is None:
            break
    return chosen[:limit]


def replay_rejected(
    collector: Collector,
    store: RejectedStore,
    config: TouchpointConfig,
    *,
    ids: Sequence[int] | None = None,
    reason: str | None = None,
    limit: int = 1000,
) -> ReplayResult:
    """Replay up to `limit` rejected events (the given ids, or all of a reason, or all)."""
    sources = {source.name: source for source in config.sources}
    accepted = duplicates = still_rejected = unknown = 0
    done: list[int] = []
    items = _select(store, ids, reason, limit)
    for item in items:
        source = sources.get(item.source)
        if source is None:
            unknown += 1
            continue
        result = collector.collect(source, [item.event], store_rejections=False)
        if result.rejected:
            still_rejected += 1
            continue
        accepted += result.accepted
        duplicates += result.duplicates
        done.append(item.id)
    if done:
        store.remove(done)
    return ReplayResult(len(items), accepted, duplicates, still_rejected, unknown)
