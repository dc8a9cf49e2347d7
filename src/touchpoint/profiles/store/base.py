"""The profile store and identity graph: one interface, several backends.

Reads are plain methods. Writes happen inside `transaction()`: the stream
processor resolves identities, merges, applies an event and records segment
changes in one unit, so a crash never leaves a half-applied update. Identity
resolution and merge rules live above this interface (profiles.identity), so
every backend shares them; a backend only stores.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from touchpoint.core.config_stores import StoreConfig
from touchpoint.core.errors import DefinitionError
from touchpoint.core.leftovers import Leftover
from touchpoint.core.pages import Page
from touchpoint.profiles.model import Identity, MergeRecord, Profile

if TYPE_CHECKING:
    from touchpoint.core.postgres import Postgres


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """An event as applied to a profile. `encoded`, when given, is `event` already encoded as
    JSON (the log's payload), so a store need not encode it again."""

    message_id: str
    timestamp: str
    type: str
    name: str | None
    event: dict[str, Any]
    encoded: bytes | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class SegmentChange:
    """A profile entered or left a segment."""

    segment: str
    profile_id: str
    change: str  # "enter" | "exit"
    at: str


@dataclass(frozen=True, slots=True)
class ErasedProfile:
    """What erasing one person removed from the profile store.

    `profile_ids`: the profile and every id merged into it; `identities`: every identity the
    graph held for them (their tombstones were written); `message_ids`: the events of their
    timeline (so the log and other stores can erase them too); `counts`: rows removed per
    kind (`profiles`, `identities`, `timeline_events`, `segment_memberships`,
    `segment_changes`, `merges`, `redirects`).
    """

    profile_ids: tuple[str, ...]
    identities: tuple[Identity, ...]
    message_ids: tuple[str, ...]
    counts: dict[str, int]


class ProfileWriter(abc.ABC):
    """Write verbs, valid only inside `ProfileStore.transaction()`."""

    @abc.abstractmethod
    def find_many(self, identities: Sequence[Identity]) -> dict[Identity, str]:
        """The profile id of each identity the graph knows (unknown ones are absent)."""

    @abc.abstractmethod
    def load(self, profile_id: str) -> Profile | None:
        """The profile with its identities and segment memberships."""

    def load_many(self, profile_ids: Collection[str]) -> dict[str, Profile]:
        """`load` of several profiles at once (those that exist). A backend where every call
        is a network round trip does it in one; the default loads them one by one."""
        found = {}
        for profile_id in profile_ids:
            profile = self.load(profile_id)
            if profile is not None:
                found[profile_id] = profile
        return found

    @abc.abstractmethod
    def create(self, profile: Profile) -> None:
        """Insert a new profile (its identities are linked separately)."""

    @abc.abstractmethod
    def save(self, profile: Profile) -> None:
        """Store the profile document (traits, features, consent, times)."""

    @abc.abstractmethod
    def link(self, profile_id: str, identity: Identity, *, message_id: str, at: str) -> None:
        """Attach an identity to a profile, recording which message linked it and when."""

    @abc.abstractmethod
    def merge(
        self, survivor_id: str, merged_id: str, *, identity: Identity, message_id: str, at: str
    ) -> None:
        """Fold `merged_id` into `survivor_id`: move identities, timeline and memberships,
        delete the merged profile, keep a redirect from its id and record the lineage.
        The caller recomputes and saves the survivor's document."""

    @abc.abstractmethod
    def record_event(self, profile_id: str, event: TimelineEvent) -> bool:
        """Add an event to the profile's timeline; False if this message id was already
        applied (to any profile), which makes replay idempotent."""

    def expect_events(self, message_ids: Collection[str]) -> None:  # noqa: B027 - a hint
        """A hint: this transaction is about to `record_event` these message ids. A backend
        where every call is a network round trip looks them all up at once and buffers the
        inserts; `record_event` must still answer as if each was written at once. The
        default does nothing."""

    @abc.abstractmethod
    def timeline(self, profile_id: str) -> Iterator[TimelineEvent]:
        """Every event of the profile, oldest first by event timestamp (for recompute)."""

    @abc.abstractmethod
    def set_segment(self, profile_id: str, segment: str, *, member: bool, at: str) -> None:
        """Record entering (member=True) or leaving a segment, with the change log."""

    @abc.abstractmethod
    def tombstoned(self, keys: Collection[str]) -> set[str]:
        """Which of these tombstone keys (see profiles.tombstones) an erasure left: events
        carrying such an identity belong to an erased person and must not be applied."""


class ProfileStore(abc.ABC):
    """Profiles, the identity graph, timelines and segment memberships."""

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[ProfileWriter]:
        """A unit of work: committed when the block ends, rolled back on an exception."""

    @abc.abstractmethod
    def find(self, identity: Identity) -> str | None:
        """The profile id an identity resolves to."""

    @abc.abstractmethod
    def get(self, profile_id: str) -> Profile | None:
        """A profile by id; an id merged away resolves to its survivor."""

    @abc.abstractmethod
    def events(
        self, profile_id: str, *, cursor: str | None = None, limit: int = 50
    ) -> Page[TimelineEvent]:
        """The profile's timeline, newest first."""

    @abc.abstractmethod
    def lineage(self, profile_id: str) -> list[MergeRecord]:
        """Every merge that built this profile, oldest first."""

    @abc.abstractmethod
    def segment_members(
        self, segment: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[tuple[str, str]]:
        """`(profile_id, entered_at)` of the segment's current members."""

    @abc.abstractmethod
    def segment_sizes(self) -> dict[str, int]:
        """Current member count of every segment that has members."""

    @abc.abstractmethod
    def segment_changes(
        self, *, since_id: int = 0, limit: int = 1000
    ) -> list[tuple[int, SegmentChange]]:
        """The enter/exit log in order, with increasing ids (for journeys and audits)."""

    @abc.abstractmethod
    def profile_ids(self, *, cursor: str | None = None, limit: int = 1000) -> Page[str]:
        """Every profile id, in a stable order (for sweeps such as time-based segments)."""

    @abc.abstractmethod
    def count(self) -> int:
        """How many profiles exist."""

    @abc.abstractmethod
    def segment_history(self, profile_id: str) -> list[SegmentChange]:
        """Every segment enter/exit of the profile, oldest first (for export)."""

    @abc.abstractmethod
    def erase(
        self,
        profile_id: str,
        *,
        tombstone_key: Callable[[Identity], str],
        extra_tombstones: Collection[str] = (),
        job_id: str,
        at: str,
    ) -> ErasedProfile | None:
        """Erase a person in one transaction: the profile, every profile merged into it
        (redirects, lineage), its identities, timeline, segment memberships and changes.
        Writes a tombstone `tombstone_key(identity)` for each identity (and each of
        `extra_tombstones`), recording `job_id`, so no later event can rebuild them.
        None if the profile does not exist."""

    @abc.abstractmethod
    def tombstone(self, key: str) -> str | None:
        """The job id of the erasure that left this tombstone key, or None."""

    def scrub(self) -> list[Leftover]:
        """After an erasure: make the backend overwrite what the erased rows left in its
        files, where it can; what may still hold their bytes, and until when (empty when
        nothing does). Nothing to do by default (a backend without files of its own)."""
        return []

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections."""


DEFAULT_FILE_NAME = "profiles.sqlite3"


def build_profile_store(
    config: StoreConfig, data_dir: Path, postgres: Postgres | None = None
) -> ProfileStore:
    """The profile store a workspace configures: PostgreSQL when `postgres` is given (the
    store runs on it), else SQLite at `<data_dir>/profiles.sqlite3` unless `config.path`
    says otherwise. Creates the parent folder if needed."""
    if postgres is not None:
        from touchpoint.profiles.store.postgres import PostgresProfileStore

        return PostgresProfileStore(postgres)
    if config.type in ("sqlite", "auto"):
        from touchpoint.profiles.store.sqlite import SqliteProfileStore

        path = Path(config.path).expanduser() if config.path else Path(data_dir) / DEFAULT_FILE_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteProfileStore(path)
    raise DefinitionError("profiles.type", f"unknown profile store type {config.type!r}")
