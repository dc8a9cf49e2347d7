"""Rejected events: never silently dropped, kept with their reason for review and replay.

The collector stores every event it refuses (invalid, over the size limit, against
an enforced tracking plan) here, with the errors that explain why and the raw event
as received, so an operator can fix the plan or the client and replay them.

Anyone holding a public write key can make refusals, so what they cost is bounded:
identical refusals (same source, reason and event, no message id) share one row that
counts them (`occurrences`, first seen `received_at`, `last_seen`); each source keeps at
most `max_per_source` rows (beyond that a new refusal is counted by the caller, not
stored); and `purge` drops rows not seen within the retention window.
"""

from __future__ import annotations

import abc
import builtins
import hashlib
import json
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from touchpoint.core.leftovers import Leftover
from touchpoint.core.pages import Page
from touchpoint.profiles.pii import identifier_text

if TYPE_CHECKING:
    from touchpoint.core.config_stores import StoreConfig
    from touchpoint.core.postgres import Postgres

logger = logging.getLogger(__name__)

DEFAULT_REJECTED_FILE = "rejected.sqlite3"
MAX_PAGE = 1000
_CHUNK = 500


@dataclass(frozen=True)
class NewRejected:
    """A refused event to store: where it came from, why, and the event as received."""

    source: str
    message_id: str | None
    received_at: str
    reason: str
    errors: list[dict[str, Any]]
    event: Any


@dataclass(frozen=True)
class RejectedEvent:
    """A stored rejected event; `id` is assigned by the store and orders them by arrival.
    `received_at` is when it was first refused, `last_seen` the latest of its
    `occurrences` (identical refusals without a message id share one row)."""

    id: int
    source: str
    message_id: str | None
    received_at: str
    reason: str
    errors: list[dict[str, Any]]
    event: Any
    occurrences: int = 1
    last_seen: str = ""


def payload_hash(event: Any) -> bytes:
    """What identifies an event's content: 16 bytes of BLAKE2b over its canonical JSON (keys
    sorted), so the same event sent twice is known as such whatever its key order."""
    text = json.dumps(event, ensure_ascii=False, default=str, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


@dataclass
class Distinct:
    """One distinct refusal of a batch given to `add`: the first item, the positions of
    every item it stands for, and how many times it occurs (at least 1)."""

    item: NewRejected
    digest: bytes
    positions: list[int] = field(default_factory=list)
    last_seen: str = ""

    @property
    def occurrences(self) -> int:
        return len(self.positions)


def distinct(items: Sequence[NewRejected]) -> list[Distinct]:
    """`items` collapsed in input order: those with a message id by (source, message id,
    reason), the others by (source, reason, content), as the stores keep them."""
    found: dict[tuple[Any, ...], Distinct] = {}
    for position, item in enumerate(items):
        digest = payload_hash(item.event)
        if item.message_id is not None:
            key: tuple[Any, ...] = (item.source, item.reason, "id", item.message_id)
        else:
            key = (item.source, item.reason, "hash", digest)
        entry = found.get(key)
        if entry is None:
            entry = found[key] = Distinct(item, digest, last_seen=item.received_at)
        entry.positions.append(position)
        entry.last_seen = max(entry.last_seen, item.received_at)
    return list(found.values())


class RejectedStore(abc.ABC):
    """Where rejected events wait for review and replay. `max_per_source`: the most rows one
    source may hold (None: no cap)."""

    max_per_source: int | None = None

    @abc.abstractmethod
    def add(self, items: Sequence[NewRejected]) -> list[int | None]:
        """Store `items` durably; the id of each, in input order (None: not stored, its
        source is at `max_per_source`).

        Idempotent for a retried batch: an item whose `(source, message_id, reason)` is
        already stored (and not yet removed by a replay) is not added again, and its
        existing id is returned. Items without a message id that equal a stored one (same
        source, reason and event) are counted on its row (`occurrences`, `last_seen`)
        rather than stored again, even when the source is at its cap.
        """

    @abc.abstractmethod
    def purge(self, seen_before: str) -> int:
        """Delete the events last seen before `seen_before` (canonical text time, see
        `core.clock.isoformat`): the retention window. How many were deleted."""

    @abc.abstractmethod
    def list(
        self,
        *,
        reason: str | None = None,
        source: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[RejectedEvent]:
        """Stored events, newest first, filtered by reason and source; pass
        `next_cursor` back for the next page."""

    @abc.abstractmethod
    def count(self, *, reason: str | None = None, source: str | None = None) -> int:
        """How many stored events match the filters."""

    @abc.abstractmethod
    def counts_by_reason(self) -> dict[str, int]:
        """How many stored events there are per reason (reasons with none are absent)."""

    @abc.abstractmethod
    def remove(self, ids: Sequence[int]) -> int:
        """Delete events by id, after a successful replay; how many were deleted."""

    @abc.abstractmethod
    def erase_identities(self, values: Sequence[str]) -> int:
        """Delete rejected events naming any of these identity values (as stored: PII ones
        hashed) as `userId`, `anonymousId`, `previousId` or an identity trait; the count."""

    @abc.abstractmethod
    def erase_message_ids(self, message_ids: Sequence[str]) -> int:
        """Delete every stored event with one of these message ids (erasure); the count."""

    def scrub(self) -> builtins.list[Leftover]:
        """After an erasure: make the backend overwrite what the erased rows left in its
        files, where it can; what may still hold their bytes, and until when (empty when
        nothing does). Nothing to do by default (a backend without files of its own)."""
        return []

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections."""


TOP_LEVEL_IDS = ("userId", "anonymousId", "previousId")


def identity_forms(event: Any) -> set[str]:
    """Every form under which a stored event may name a person: its `userId`,
    `anonymousId`, `previousId` and each value of its `traits` and `context.traits`, as
    text, trimmed and lower-cased (the normalizations an identity kind can apply, short of
    email and phone, whose kinds are PII and so stored hashed)."""
    if not isinstance(event, dict):
        return set()
    context = event.get("context")
    values: list[Any] = [event.get(key) for key in TOP_LEVEL_IDS]
    for traits in (
        event.get("traits"),
        context.get("traits") if isinstance(context, dict) else None,
    ):
        if isinstance(traits, dict):
            values.extend(traits.values())
    forms: set[str] = set()
    for value in values:
        text = identifier_text(value)
        if text is not None:
            forms.update((text, text.strip(), text.strip().lower()))
    return forms


def rejected_from_row(row: Sequence[Any]) -> RejectedEvent:
    """An event from the columns `id, source, message_id, received_at, reason, errors (JSON),
    event (JSON), occurrences, last_seen`, as every backend stores them."""
    return RejectedEvent(
        id=int(row[0]),
        source=row[1],
        message_id=row[2],
        received_at=row[3],
        reason=row[4],
        errors=json.loads(row[5]),
        event=json.loads(row[6]),
        occurrences=int(row[7]),
        last_seen=row[8] or row[3],
    )


def names_any(event: Any, values: Collection[str]) -> bool:
    """Whether a stored rejected event names one of these identity values (as stored: PII
    ones hashed) as `userId`, `anonymousId`, `previousId`, or as any value of its `traits`
    or `context.traits` (where identity traits such as a hashed email live).

    Errs on the side of erasure: a trait value equal to an erased identifier counts, even
    if that trait is not an identity kind, so no rejected event of the person survives.
    """
    return not identity_forms(event).isdisjoint(values)


def build_rejected_store(
    config: StoreConfig,
    data_dir: Path,
    postgres: Postgres | None = None,
    *,
    max_per_source: int | None = None,
) -> RejectedStore:
    """Open the rejected-events store the configuration names: PostgreSQL when `postgres` is
    given (the store runs on it), else SQLite (default `<data_dir>/rejected.sqlite3`),
    creating its folders if needed; at most `max_per_source` events per source."""
    if postgres is not None:
        from touchpoint.collect.rejected.postgres import PostgresRejectedStore

        return PostgresRejectedStore(postgres, max_per_source=max_per_source)
    if config.type in ("sqlite", "auto"):
        path = (
            Path(config.path).expanduser()
            if config.path
            else Path(data_dir) / DEFAULT_REJECTED_FILE
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        from touchpoint.collect.rejected.sqlite import SqliteRejectedStore

        return SqliteRejectedStore(path, max_per_source=max_per_source)
    raise ValueError(f"unknown rejected store type {config.type!r}")  # pragma: no cover
