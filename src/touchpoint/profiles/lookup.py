"""Finding a person from what a caller names them by: one path for every reader.

A decision, a profile lookup, an export and an erasure all start from an identifier as a
caller writes it (`email` / `Ada@Example.com`) and need the same steps, in the same
order: normalize it as its kind declares, hash it when the kind is PII, then look for the
profile that holds it, or, when none does, for the tombstone an erasure left; then, for
readers, the profile document at a moment. Written once here, so the four cannot drift
apart (a lookup that forgot to normalize would miss a profile that decide finds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from touchpoint.profiles.features import FeatureEngine
from touchpoint.profiles.identity import IdentityResolver
from touchpoint.profiles.model import Identity, Profile
from touchpoint.profiles.pii import IdentityHasher
from touchpoint.profiles.store.base import ProfileStore
from touchpoint.profiles.tombstones import tombstone_key
from touchpoint.profiles.view import profile_document


@dataclass(frozen=True, slots=True)
class Person:
    """Who the identities name.

    `identities`: in stored form (normalized, PII hashed), in the order asked;
    `profile_id`/`profile`: the first identity's profile that exists (`profile` is None
    when not loaded or gone).
    """

    identities: tuple[Identity, ...]
    profile_id: str | None = None
    profile: Profile | None = None

    @property
    def known(self) -> bool:
        """Whether a profile holds one of the identities."""
        return self.profile_id is not None


class PersonFinder:
    """Finds people by identifier: normalize → hash → profile (or tombstones) → document.

    Shared by every request thread: it holds no per-request state, and each call reads
    the store afresh.
    """

    def __init__(
        self,
        *,
        resolver: IdentityResolver,
        hasher: IdentityHasher,
        profiles: ProfileStore,
        features: FeatureEngine,
    ) -> None:
        self.resolver = resolver
        self.hasher = hasher
        self.profiles = profiles
        self.features = features

    def identity(self, kind: str, value: str) -> Identity:
        """The stored form of an identifier as a caller writes it. NotFound for an undeclared
        kind; InvalidInput (naming the kind) for a value its normalization refuses."""
        return self.resolver.identity_for_lookup(kind, value, self.hasher)

    def tombstone_key(self, identity: Identity) -> str:
        """The key an erasure of `identity` leaves (and looks for)."""
        return tombstone_key(self.hasher, identity)

    def find(self, identities: Sequence[Identity], *, load: bool = True) -> Person:
        """The person the identities (stored form) name: the profile of the first one that
        has one (loaded unless `load` is False)."""
        for identity in identities:
            profile_id = self.profiles.find(identity)
            if profile_id is None:
                continue
            if not load:
                return Person(tuple(identities), profile_id)
            profile = self.profiles.get(profile_id)
            if profile is not None:
                return Person(tuple(identities), profile_id, profile)
        return Person(tuple(identities))

    def tombstones(self, identities: Sequence[Identity]) -> dict[Identity, str]:
        """The tombstone key of each identity an erasure left one for (someone erased who
        comes back); asked only of people without a profile, as a profile means none."""
        found = {}
        for identity in identities:
            key = self.tombstone_key(identity)
            if self.profiles.tombstone(key) is not None:
                found[identity] = key
        return found

    def find_one(self, kind: str, value: str, *, load: bool = True) -> Person:
        """`find` for one identifier as a caller writes it."""
        return self.find([self.identity(kind, value)], load=load)

    def document(self, profile: Profile, now: datetime) -> dict[str, Any]:
        """The profile as conditions and the API see it at `now` (see profiles.view)."""
        return profile_document(profile, self.features, now)
