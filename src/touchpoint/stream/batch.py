"""The profile pipeline's working set: a log entry decoded once per batch, the counts a
batch adds up, and one transaction's batch (loaded profiles, what must be recomputed,
saved and done after the commit)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from touchpoint.log.base import LogEntry, LogRewrite
from touchpoint.profiles.model import Identity, Profile
from touchpoint.profiles.store.base import ProfileWriter


@dataclass(slots=True)
class Counts:
    processed: int = 0
    skipped_no_identity: int = 0
    duplicates: int = 0
    merges: int = 0
    segment_changes: int = 0
    erased_dropped: int = 0
    consent_suppressed: int = 0


@dataclass(slots=True)
class Decoded:
    """A log entry decoded, with the identities it carries (extracted once per batch)."""

    entry: LogEntry
    event: dict[str, Any]
    identities: list[Identity]
    previous: list[Identity]


@dataclass(slots=True)
class Batch:
    """One transaction's working set: loaded profiles and what must happen to them at the end."""

    writer: ProfileWriter
    profiles: dict[str, Profile] = field(default_factory=dict)
    dirty: dict[str, None] = field(default_factory=dict)  # insertion-ordered set
    recompute_features: set[str] = field(default_factory=set)
    recompute_all: set[str] = field(default_factory=set)
    counts: Counts = field(default_factory=Counts)
    # Identities (as an event carries them) -> the profile that holds all of them. Only a
    # merge moves an identity to another profile, so a merge empties it.
    resolved: dict[tuple[Identity, ...], str] = field(default_factory=dict)
    tombstoned: set[str] = field(default_factory=set)
    # What happens to the log after the transaction commits.
    erase_messages: list[str] = field(default_factory=list)
    rewrites: list[LogRewrite] = field(default_factory=list)

    def profile(self, profile_id: str) -> Profile:
        profile = self.profiles.get(profile_id)
        if profile is None:
            profile = self.writer.load(profile_id)
            if profile is None:
                raise LookupError(f"profile {profile_id} vanished inside its transaction")
            self.profiles[profile_id] = profile
        return profile
