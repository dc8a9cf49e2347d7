"""Identity resolution: which profile an event belongs to, and when two profiles are one.

Shared by every backend: the rules live here, a `ProfileWriter` only stores.
The rules follow Segment Unify's:

- identities are taken in priority order (lower `priority` first);
- the profile of the first known identity is the candidate; none known: a new profile;
- an unknown identity is linked unless its kind's `limit` on the profile would be
  exceeded (then it belongs to someone else: it is skipped and nothing is recorded);
- an identity known on another profile merges that profile into the candidate unless
  the union would exceed any kind's limit (then there is no merge and it is not linked);
- the survivor of a merge is the profile with a user id, else the older one.

One refinement keeps the priority meaningful: an unknown identity already accepted for
this event (say a new `user_id`) outranks a known identity of lower priority (say an
`anonymous_id` on a shared computer that belongs to someone who is logged in as another
user). When the known identity's profile cannot take the accepted ones within the
limits, that lower-priority identity is skipped and the event goes to a new profile,
instead of attaching the new user's event to the other person.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from touchpoint.config.workspace import IdentityConfig, IdentityKind
from touchpoint.core.clock import new_id
from touchpoint.core.errors import InvalidInput, NotFound
from touchpoint.core.identity_verification import IDENTITY_VERIFIED
from touchpoint.profiles.model import Identity, Profile
from touchpoint.profiles.pii import IdentifierRefused, IdentityHasher, identifier_text, normalize
from touchpoint.profiles.store.base import ProfileWriter

logger = logging.getLogger(__name__)

Reader = Callable[[Mapping[str, Any]], Any]
"""Reads the raw value of one identity kind's `source` from a stored event."""

# How many raw values per kind `extract` remembers; the memo is simply emptied when full.
_MEMO_SIZE = 8192
# The kinds an event marked IDENTITY_VERIFIED may link: its device and its signed user id.
_PROVEN_SOURCES = frozenset({"anonymous_id", "user_id"})
# Stands for "not remembered" in a memo lookup (compared by identity, never stored).
_NOT_REMEMBERED = Identity("", "")


@dataclass(frozen=True, slots=True)
class SkippedIdentity:
    """An identity of an event that was not linked, and why (`limit` or `merge_limit`)."""

    identity: Identity
    reason: str
    profile_id: str | None = None


@dataclass(frozen=True, slots=True)
class Resolution:
    """The outcome of resolving one event's identities (for the processor, logs and metrics)."""

    profile_id: str
    created: bool
    merged: tuple[str, ...] = ()
    linked: tuple[Identity, ...] = ()
    skipped: tuple[SkippedIdentity, ...] = ()


@dataclass(slots=True)
class _Work:
    """Mutable state while resolving one event."""

    writer: ProfileWriter
    message_id: str
    at: str
    cache: MutableMapping[str, Profile]
    known: dict[Identity, str]
    target: str | None = None
    created: bool = False
    pending: list[Identity] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)
    linked: list[Identity] = field(default_factory=list)
    skipped: list[SkippedIdentity] = field(default_factory=list)

    def profile(self, profile_id: str) -> Profile:
        profile = self.cache.get(profile_id)
        if profile is None:
            profile = self.writer.load(profile_id)
            if profile is None:
                raise NotFound(f"profile {profile_id} is in the identity graph but not stored")
            self.cache[profile_id] = profile
        return profile


class IdentityResolver:
    """Extracts identities from stored events and applies the merge rules through a writer."""

    def __init__(self, config: IdentityConfig) -> None:
        indexed = sorted(enumerate(config.kinds), key=lambda pair: (pair[1].priority, pair[0]))
        self.kinds: tuple[IdentityKind, ...] = tuple(kind for _, kind in indexed)
        self._by_name = {kind.name: kind for kind in self.kinds}
        self._rank = {kind.name: rank for rank, kind in enumerate(self.kinds)}
        self._blocked = frozenset(value.lower() for value in config.blocked_values)
        self._limits = {kind.name: kind.limit for kind in self.kinds if kind.limit is not None}
        self._user_kind = self._kind_with_source("user_id")
        self._anonymous_kind = self._kind_with_source("anonymous_id")
        self.pii_traits: frozenset[str] = frozenset(
            kind.source.rsplit(".", 1)[1]
            for kind in self.kinds
            if kind.pii and kind.source.startswith(("traits.", "context.traits."))
        )
        # Per kind, in priority order: its reader and a memo of raw text -> stored identity
        # (None: blocked). A stream batch sees the same few ids on event after event.
        self._extractors: tuple[tuple[IdentityKind, Reader, dict[str, Identity | None]], ...] = (
            tuple((kind, _source_reader(kind.source), {}) for kind in self.kinds)
        )

    def _kind_with_source(self, source: str) -> IdentityKind | None:
        return next((kind for kind in self.kinds if kind.source == source), None)

    # -- extraction ---------------------------------------------------------------------------

    def extract(self, event: Mapping[str, Any]) -> list[Identity]:
        """The usable identities an event carries, in priority order, without duplicates.

        Blocked values are dropped; non-PII values are normalized; PII values must already
        be hashed by the collector, and one that is not is dropped (never stored). An event
        the collector marked `IDENTITY_VERIFIED` yields only its anonymous id and its
        (signed) user id: an email or phone a browser typed proves nothing, and linking by
        it would hand that person's profile to the browser's device.
        """
        found: list[Identity] = []
        proven_only = event.get(IDENTITY_VERIFIED) is True
        for kind, read, memo in self._extractors:
            if proven_only and kind.source not in _PROVEN_SOURCES:
                continue
            raw = read(event)
            if raw is None:
                continue
            if type(raw) is str:
                identity = memo.get(raw, _NOT_REMEMBERED)
                if identity is _NOT_REMEMBERED:
                    identity = self._identity(kind, raw)
                    if identity is not None or not kind.pii:  # keep warning about unhashed PII
                        if len(memo) >= _MEMO_SIZE:
                            memo.clear()
                        memo[raw] = identity
            else:
                identity = self._identity(kind, raw)
            # Kind names are unique, so two kinds never yield the same identity.
            if identity is not None:
                found.append(identity)
        return found

    def previous_identities(self, event: Mapping[str, Any]) -> list[Identity]:
        """For an `alias` event, who `previousId` may be: as a user id, then as an anonymous id
        (only the latter for an event marked `IDENTITY_VERIFIED`).

        `resolve` links the first one the graph knows, else the anonymous id.
        """
        if event.get("type") != "alias":
            return []
        raw = event.get("previousId")
        candidates = []
        kinds: tuple[IdentityKind | None, ...] = (self._user_kind, self._anonymous_kind)
        if event.get(IDENTITY_VERIFIED) is True:
            kinds = (self._anonymous_kind,)  # nobody signed the previous user id
        for kind in kinds:
            identity = None if kind is None else self._identity(kind, raw)
            if identity is not None and identity not in candidates:
                candidates.append(identity)
        return candidates

    def _identity(self, kind: IdentityKind, raw: Any) -> Identity | None:
        text = identifier_text(raw)
        if text is None or normalize(text, "lower") in self._blocked:
            return None
        if kind.pii:
            if not IdentityHasher.is_hashed(text):
                logger.warning("dropped an unhashed value of PII identity kind %s", kind.name)
                return None
            return Identity(kind.name, text)
        try:
            value = normalize(text, kind.normalize)
        except IdentifierRefused:
            # The collector refuses these; one logged before that rule is never resolved.
            logger.warning("dropped a refused value of identity kind %s", kind.name)
            return None
        if not value or value.lower() in self._blocked:
            return None
        return Identity(kind.name, value)

    def identity_for_lookup(self, kind: str, raw_value: str, hasher: IdentityHasher) -> Identity:
        """The stored form of an identifier given by a caller (`GET /v1/profiles/email/X@Y.com`):
        normalized, and hashed for PII kinds. Raises NotFound for an undeclared kind and
        InvalidInput (naming the kind as the field) for a value its normalization refuses."""
        declared = self._by_name.get(kind)
        if declared is None:
            raise NotFound(f"identity kind {kind!r} is not declared")
        if declared.pii and IdentityHasher.is_hashed(raw_value):
            return Identity(kind, raw_value)
        try:
            value = normalize(raw_value, declared.normalize)
        except IdentifierRefused as refused:
            # Never a lookup of what the look-alike would fold into: that is someone else.
            raise InvalidInput(
                f"{kind}: {refused.reason}", details={"field": kind, "reason": refused.reason}
            ) from None
        return Identity(kind, hasher.hash(kind, value) if declared.pii else value)

    # -- resolution ---------------------------------------------------------------------------

    def resolve(
        self,
        writer: ProfileWriter,
        identities: Sequence[Identity],
        *,
        message_id: str,
        at: str,
        previous: Sequence[Identity] = (),
        cache: MutableMapping[str, Profile] | None = None,
    ) -> Resolution:
        """Find or create the event's profile, linking and merging by the rules above.

        `previous`: an alias event's `previous_identities`. `cache`: profiles already loaded
        in this transaction, by id; the resolver reads and updates it (identities, merged
        segments and scores, created_at) and drops merged-away profiles from it, so a caller
        that shares it keeps one consistent copy per profile. After a merge the survivor is
        saved with the earliest created_at and the union of scores; its timeline-derived
        state (traits, features, consent, seen times) is the caller's to rebuild.
        """
        ordered = list(dict.fromkeys(identities))
        if previous:
            known = writer.find_many([*ordered, *previous])
            chosen = next((p for p in previous if p in known), previous[-1])
            if chosen not in ordered:
                ordered.append(chosen)
        elif ordered:
            known = writer.find_many(ordered)
        else:
            raise ValueError("an event needs at least one identity to resolve")

        # Fast path: every identity known, all on one profile (whatever their order).
        first_owner = known.get(ordered[0])
        if first_owner is not None:
            for identity in ordered:
                if known.get(identity) != first_owner:
                    break
            else:
                return Resolution(profile_id=first_owner, created=False)

        ordered.sort(key=lambda identity: self._rank.get(identity.kind, len(self._rank)))
        work = _Work(writer, message_id, at, {} if cache is None else cache, known)
        for identity in ordered:
            owner = known.get(identity)
            if owner is None:
                self._accept_unknown(work, identity)
            elif work.target is None:
                self._adopt_first_known(work, identity, owner)
            elif owner != work.target:
                self._merge(work, identity, owner)
        if work.target is None:
            self._create(work)
        assert work.target is not None
        return Resolution(
            profile_id=work.target,
            created=work.created,
            merged=tuple(work.merged),
            linked=tuple(work.linked),
            skipped=tuple(work.skipped),
        )

    def _accept_unknown(self, work: _Work, identity: Identity) -> None:
        limit = self._limits.get(identity.kind)
        if limit is not None:
            held = sum(1 for pending in work.pending if pending.kind == identity.kind)
            if work.target is not None:
                held += len(work.profile(work.target).identity_values(identity.kind))
            if held + 1 > limit:
                work.skipped.append(SkippedIdentity(identity, "limit", work.target))
                return
        if work.target is None:
            work.pending.append(identity)
        else:
            self._link(work, work.target, identity)

    def _adopt_first_known(self, work: _Work, identity: Identity, owner: str) -> None:
        if work.pending and not self._fits(work.profile(owner).identities, work.pending):
            # The identities accepted so far outrank this one: it is someone else's.
            work.skipped.append(SkippedIdentity(identity, "limit", owner))
            return
        work.target = owner
        pending, work.pending = work.pending, []
        for accepted in pending:
            self._link(work, owner, accepted)

    def _merge(self, work: _Work, identity: Identity, owner: str) -> None:
        assert work.target is not None
        target = work.profile(work.target)
        other = work.profile(owner)
        if not self._fits(target.identities, other.identities):
            work.skipped.append(SkippedIdentity(identity, "merge_limit", owner))
            return
        survivor, merged = self._survivor(target, other), target
        if survivor is target:
            merged = other
        work.writer.merge(
            survivor.profile_id,
            merged.profile_id,
            identity=identity,
            message_id=work.message_id,
            at=work.at,
        )
        _absorb(survivor, merged)
        work.writer.save(survivor)
        work.cache.pop(merged.profile_id, None)
        for key, value in work.known.items():
            if value == merged.profile_id:
                work.known[key] = survivor.profile_id
        work.merged.append(merged.profile_id)
        work.target = survivor.profile_id

    def _create(self, work: _Work) -> None:
        profile = Profile(profile_id=new_id(), created_at=work.at)
        work.writer.create(profile)
        work.cache[profile.profile_id] = profile
        work.target = profile.profile_id
        work.created = True
        pending, work.pending = work.pending, []
        for identity in pending:
            self._link(work, profile.profile_id, identity)

    def _link(self, work: _Work, profile_id: str, identity: Identity) -> None:
        work.writer.link(profile_id, identity, message_id=work.message_id, at=work.at)
        cached = work.cache.get(profile_id)
        if cached is not None:
            cached.identities.append(identity)
        work.known[identity] = profile_id
        work.linked.append(identity)

    def _fits(self, held: Sequence[Identity], added: Sequence[Identity]) -> bool:
        """Whether a profile holding `held` may also hold `added` within every kind's limit."""
        if not self._limits:
            return True
        counts = Counter(identity.kind for identity in {*held, *added})
        return all(counts[kind] <= limit for kind, limit in self._limits.items())

    def _survivor(self, first: Profile, second: Profile) -> Profile:
        """The profile with a user id survives; else the older one (then the smaller id)."""
        if self._user_kind is not None:
            first_user = bool(first.identity_values(self._user_kind.name))
            second_user = bool(second.identity_values(self._user_kind.name))
            if first_user != second_user:
                return first if first_user else second
        first_key = (first.created_at, first.profile_id)
        second_key = (second.created_at, second.profile_id)
        return first if first_key <= second_key else second


def _absorb(survivor: Profile, merged: Profile) -> None:
    """Mirror in memory what `ProfileWriter.merge` did in the store, plus what it leaves to
    the caller: the earliest created_at and the union of scores (the survivor's win).
    Timeline-derived state (traits, features, consent, seen times) is the caller's to
    recompute (the stream processor rebuilds it from the merged timeline).
    """
    for identity in merged.identities:
        if identity not in survivor.identities:
            survivor.identities.append(identity)
    for segment, entered_at in merged.segments.items():
        current = survivor.segments.get(segment)
        if current is None or entered_at < current:
            survivor.segments[segment] = entered_at
    survivor.created_at = min(survivor.created_at, merged.created_at)
    survivor.scores = {**merged.scores, **survivor.scores}
    survivor.recommendations = survivor.recommendations or merged.recommendations


def _source_reader(source: str) -> Reader:
    """A reader of the raw value at an identity kind's `source` in a stored event.

    `user_id` and `anonymous_id` are the top-level `userId` / `anonymousId`; `traits.x` is
    read from `traits`, else from `context.traits`; any other dotted path as written.
    """
    if source == "user_id":
        return _top_level("userId")
    if source == "anonymous_id":
        return _top_level("anonymousId")
    parts = tuple(source.split("."))
    if parts[0] == "traits":
        own, in_context = _path(parts), _path(("context", *parts))

        def read_trait(event: Mapping[str, Any]) -> Any:
            value = own(event)
            return in_context(event) if value is None else value

        return read_trait
    return _path(parts)


def _top_level(key: str) -> Reader:
    def read(event: Mapping[str, Any]) -> Any:
        return event.get(key)

    return read


def _path(parts: tuple[str, ...]) -> Reader:
    def read(event: Mapping[str, Any]) -> Any:
        current: Any = event
        for part in parts:
            # None before the (slow) ABC check: most events lack most paths.
            if type(current) is not dict and (current is None or not isinstance(current, Mapping)):
                return None
            current = current.get(part)
        return current

    return read
