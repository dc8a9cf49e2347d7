"""Identity resolution: extraction from stored events and the merge rules."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from touchpoint.config.workspace import IdentityConfig, IdentityKind
from touchpoint.core.errors import NotFound
from touchpoint.core.identity_verification import IDENTITY_VERIFIED
from touchpoint.profiles.identity import IdentityResolver, Resolution
from touchpoint.profiles.model import Identity, Profile
from touchpoint.profiles.pii import IdentityHasher
from touchpoint.profiles.store.base import TimelineEvent
from touchpoint.profiles.store.sqlite import SqliteProfileStore

HASHER = IdentityHasher("test-hash-secret-0123456789")
T0 = "2024-01-01T00:00:00.000Z"
T1 = "2024-01-02T00:00:00.000Z"
T2 = "2024-01-03T00:00:00.000Z"
T3 = "2024-01-04T00:00:00.000Z"


def hashed_email(address: str) -> str:
    return HASHER.hash("email", address.strip().lower())


def user(value: str) -> Identity:
    return Identity("user_id", value)


def anon(value: str) -> Identity:
    return Identity("anonymous_id", value)


def email(address: str) -> Identity:
    return Identity("email", hashed_email(address))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteProfileStore]:
    opened = SqliteProfileStore(tmp_path / "profiles.sqlite3")
    yield opened
    opened.close()


@pytest.fixture
def resolver() -> IdentityResolver:
    return IdentityResolver(IdentityConfig())


def resolve(
    store: SqliteProfileStore,
    resolver: IdentityResolver,
    *identities: Identity,
    message_id: str = "m",
    at: str = T0,
    previous: list[Identity] | None = None,
) -> Resolution:
    with store.transaction() as writer:
        resolution = resolver.resolve(
            writer, list(identities), message_id=message_id, at=at, previous=previous or []
        )
        writer.record_event(
            resolution.profile_id,
            TimelineEvent(message_id, at, "track", "Viewed", {"messageId": message_id}),
        )
    return resolution


# -- extraction ---------------------------------------------------------------------------------


def test_extract_reads_every_kind_in_priority_order(resolver: IdentityResolver) -> None:
    event: dict[str, Any] = {
        "type": "identify",
        "anonymousId": " anon-1 ",
        "userId": 42,
        "traits": {"email": hashed_email("a@x.com")},
    }
    assert resolver.extract(event) == [user("42"), email("a@x.com"), anon("anon-1")]


def test_extract_falls_back_to_context_traits(resolver: IdentityResolver) -> None:
    event = {"type": "track", "context": {"traits": {"email": hashed_email("b@x.com")}}}
    assert resolver.extract(event) == [email("b@x.com")]


@pytest.mark.parametrize("value", ["", "undefined", "NULL", " None ", "0", "anonymous", None, {}])
def test_blocked_values_are_ignored(resolver: IdentityResolver, value: Any) -> None:
    assert resolver.extract({"type": "track", "userId": value, "anonymousId": value}) == []


def test_unhashed_pii_is_dropped_and_never_logged(
    resolver: IdentityResolver, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        found = resolver.extract({"type": "identify", "traits": {"email": "Secret@X.com"}})
    assert found == []
    assert "email" in caplog.text
    assert "secret" not in caplog.text.lower()


def test_repeated_extraction_gives_the_same_identities(resolver: IdentityResolver) -> None:
    event = {"type": "track", "userId": " u1 ", "anonymousId": "undefined"}
    first = resolver.extract(event)
    assert first == [user("u1")]
    assert resolver.extract(event) == first
    assert resolver.extract({"type": "track", "anonymousId": "undefined"}) == []
    assert resolver.extract({"type": "track", "userId": 7, "anonymousId": " u1 "}) == [
        user("7"),
        anon("u1"),
    ]


def test_every_unhashed_pii_value_is_dropped_with_a_warning(
    resolver: IdentityResolver, caplog: pytest.LogCaptureFixture
) -> None:
    event = {"type": "identify", "traits": {"email": "Secret@X.com"}}
    with caplog.at_level(logging.WARNING):
        assert resolver.extract(event) == []
        assert resolver.extract(event) == []
    assert len([r for r in caplog.records if "unhashed" in r.getMessage()]) == 2


def test_extraction_memo_is_bounded(
    resolver: IdentityResolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("touchpoint.profiles.identity._MEMO_SIZE", 3)
    for index in range(10):
        assert resolver.extract({"anonymousId": f"a{index}"}) == [anon(f"a{index}")]
    assert resolver.extract({"anonymousId": "a0"}) == [anon("a0")]
    assert all(len(memo) <= 3 for _, _, memo in resolver._extractors)


def test_extract_reads_any_mapping_and_skips_what_is_not_one(resolver: IdentityResolver) -> None:
    traits = MappingProxyType({"email": hashed_email("c@x.com")})
    assert resolver.extract({"type": "identify", "traits": traits}) == [email("c@x.com")]
    assert resolver.extract({"type": "identify", "traits": ["email"], "context": None}) == []
    assert resolver.extract({"type": "identify", "context": {"traits": "x"}}) == []


def test_custom_sources_and_normalization() -> None:
    config = IdentityConfig(
        kinds=[
            IdentityKind(name="account", source="properties.account", normalize="lower"),
            IdentityKind(name="device", source="context.device.id", priority=5),
        ],
        blocked_values=["none"],
    )
    resolver = IdentityResolver(config)
    event = {"properties": {"account": " ACME "}, "context": {"device": {"id": "D1"}}}
    assert resolver.extract(event) == [Identity("device", "D1"), Identity("account", "acme")]
    assert resolver.extract({"properties": {"account": "None"}}) == []


def test_alias_previous_id_candidates(resolver: IdentityResolver) -> None:
    event = {"type": "alias", "userId": "u2", "previousId": "old"}
    assert resolver.previous_identities(event) == [user("old"), anon("old")]
    assert resolver.previous_identities({"type": "track", "previousId": "old"}) == []


def test_a_verified_event_links_only_its_device_and_its_signed_user_id(
    resolver: IdentityResolver,
) -> None:
    # The collector marks events of a source that verifies identities: an email a browser
    # typed, or a previous user id nobody signed, must not link its device to that person.
    event: dict[str, Any] = {
        "type": "identify",
        "anonymousId": "anon-1",
        "userId": "u1",
        "traits": {"email": hashed_email("a@x.com")},
        "context": {"traits": {"email": hashed_email("b@x.com")}},
        IDENTITY_VERIFIED: True,
    }
    assert resolver.extract(event) == [user("u1"), anon("anon-1")]
    alias = {"type": "alias", "userId": "u2", "previousId": "old", IDENTITY_VERIFIED: True}
    assert resolver.previous_identities(alias) == [anon("old")]
    # Only the collector's own `true` counts.
    assert resolver.extract({**event, IDENTITY_VERIFIED: "yes"})[1] == email("a@x.com")


def test_identity_for_lookup_hashes_pii_and_refuses_unknown_kinds(
    resolver: IdentityResolver,
) -> None:
    assert resolver.identity_for_lookup("email", " A@X.com", HASHER) == email("a@x.com")
    assert resolver.identity_for_lookup("email", hashed_email("a@x.com"), HASHER) == email(
        "a@x.com"
    )
    assert resolver.identity_for_lookup("user_id", " u1 ", HASHER) == user("u1")
    with pytest.raises(NotFound):
        resolver.identity_for_lookup("phone", "123", HASHER)


# -- resolution ---------------------------------------------------------------------------------


def test_unknown_identities_create_one_profile(
    store: SqliteProfileStore, resolver: IdentityResolver
) -> None:
    first = resolve(store, resolver, user("u1"), anon("a1"))
    assert first.created and first.merged == () and first.linked == (user("u1"), anon("a1"))
    again = resolve(store, resolver, user("u1"), anon("a1"), message_id="m2")
    assert again.profile_id == first.profile_id and not again.created and again.linked == ()
    profile = store.get(first.profile_id)
    assert profile is not None and profile.created_at == T0
    assert store.count() == 1


def test_known_identities_in_any_order_resolve_without_writes(
    store: SqliteProfileStore, resolver: IdentityResolver
) -> None:
    first = resolve(store, resolver, user("u1"), anon("a1"), email("a@x.com"))
    for order in (
        [anon("a1"), user("u1")],
        [email("a@x.com"), anon("a1"), user("u1"), anon("a1")],
        [anon("a1")],
    ):
        with store.transaction() as writer:
            again = resolver.resolve(writer, order, message_id="m2", at=T1)
        assert again == Resolution(profile_id=first.profile_id, created=False)
    grown = resolve(store, resolver, anon("a2"), anon("a1"), message_id="m3")
    assert grown.profile_id == first.profile_id and grown.linked == (anon("a2"),)
    assert store.lineage(first.profile_id) == []


def test_identify_merges_anonymous_history_into_known_profile(
    store: SqliteProfileStore, resolver: IdentityResolver
) -> None:
    anonymous = resolve(store, resolver, anon("a1"), message_id="browse", at=T0)
    known = resolve(store, resolver, user("u1"), anon("a2"), message_id="signup", at=T1)
    login = resolve(store, resolver, user("u1"), anon("a1"), message_id="login", at=T2)
    # The profile with a user id survives, although the anonymous one is older.
    assert login.profile_id == known.profile_id
    assert login.merged == (anonymous.profile_id,)
    assert store.find(anon("a1")) == known.profile_id
    events = [event.message_id for event in store.events(known.profile_id).items]
    assert events == ["login", "signup", "browse"]
    survivor = store.get(anonymous.profile_id)
    assert survivor is not None and survivor.profile_id == known.profile_id
    assert survivor.created_at == T0  # the person is as old as their oldest history
    lineage = store.lineage(known.profile_id)
    assert [(r.survivor_id, r.merged_id, r.identity, r.message_id, r.at) for r in lineage] == [
        (known.profile_id, anonymous.profile_id, anon("a1"), "login", T2)
    ]


def test_older_profile_survives_when_neither_has_a_user_id(
    store: SqliteProfileStore, resolver: IdentityResolver
) -> None:
    older = resolve(store, resolver, anon("a1"), message_id="m1", at=T0)
    newer = resolve(store, resolver, email("x@y.com"), message_id="m2", at=T1)
    both = resolve(store, resolver, email("x@y.com"), anon("a1"), message_id="m3", at=T2)
    assert both.profile_id == older.profile_id
    assert both.merged == (newer.profile_id,)


def test_two_user_ids_never_merge(store: SqliteProfileStore, resolver: IdentityResolver) -> None:
    first = resolve(store, resolver, user("u1"), email("shared@x.com"), message_id="m1")
    second = resolve(store, resolver, user("u2"), message_id="m2")
    joined = resolve(store, resolver, user("u2"), email("shared@x.com"), message_id="m3")
    assert joined.profile_id == second.profile_id
    assert joined.merged == ()
    assert [(s.identity, s.reason) for s in joined.skipped] == [
        (email("shared@x.com"), "merge_limit")
    ]
    assert store.find(email("shared@x.com")) == first.profile_id
    assert store.count() == 2
    assert store.lineage(first.profile_id) == [] and store.lineage(second.profile_id) == []


def test_new_user_on_a_shared_device_gets_their_own_profile(
    store: SqliteProfileStore, resolver: IdentityResolver
) -> None:
    first = resolve(store, resolver, user("u1"), anon("device"), message_id="m1")
    second = resolve(store, resolver, user("u2"), anon("device"), message_id="m2")
    assert second.created and second.profile_id != first.profile_id
    assert [(s.identity, s.reason) for s in second.skipped] == [(anon("device"), "limit")]
    assert store.find(user("u2")) == second.profile_id
    assert store.find(anon("device")) == first.profile_id


def test_unknown_identity_over_its_limit_is_skipped(tmp_path: Path) -> None:
    config = IdentityConfig(
        kinds=[
            IdentityKind(name="user_id", source="user_id", priority=1, limit=1),
            IdentityKind(name="anonymous_id", source="anonymous_id", priority=10, limit=2),
        ]
    )
    resolver = IdentityResolver(config)
    store = SqliteProfileStore(tmp_path / "p.sqlite3")
    try:
        first = resolve(store, resolver, user("u1"), anon("a1"), message_id="m1")
        resolve(store, resolver, user("u1"), anon("a2"), message_id="m2")
        third = resolve(store, resolver, user("u1"), anon("a3"), message_id="m3")
        assert third.profile_id == first.profile_id
        assert [(s.identity, s.reason) for s in third.skipped] == [(anon("a3"), "limit")]
        assert store.find(anon("a3")) is None  # recorded nowhere
    finally:
        store.close()


def test_alias_merges_previous_anonymous_id(
    store: SqliteProfileStore, resolver: IdentityResolver
) -> None:
    anonymous = resolve(store, resolver, anon("old-device"), message_id="m1", at=T0)
    known = resolve(store, resolver, user("u1"), message_id="m2", at=T1)
    event = {"type": "alias", "userId": "u1", "previousId": "old-device"}
    aliased = resolve(
        store,
        resolver,
        *resolver.extract(event),
        message_id="m3",
        at=T2,
        previous=resolver.previous_identities(event),
    )
    assert aliased.profile_id == known.profile_id
    assert aliased.merged == (anonymous.profile_id,)
    assert store.lineage(known.profile_id)[0].identity == anon("old-device")


def test_alias_with_unknown_previous_id_links_it_as_anonymous(
    store: SqliteProfileStore, resolver: IdentityResolver
) -> None:
    known = resolve(store, resolver, user("u1"), message_id="m1")
    event = {"type": "alias", "userId": "u1", "previousId": "never-seen"}
    aliased = resolve(
        store,
        resolver,
        *resolver.extract(event),
        message_id="m2",
        previous=resolver.previous_identities(event),
    )
    assert aliased.profile_id == known.profile_id
    assert aliased.linked == (anon("never-seen"),)
    assert store.find(user("never-seen")) is None


def test_alias_previous_user_id_is_looked_up_first(
    store: SqliteProfileStore, resolver: IdentityResolver
) -> None:
    old = resolve(store, resolver, user("legacy-7"), anon("a1"), message_id="m1")
    event = {"type": "alias", "anonymousId": "a9", "previousId": "legacy-7"}
    aliased = resolve(
        store,
        resolver,
        *resolver.extract(event),
        message_id="m2",
        previous=resolver.previous_identities(event),
    )
    assert aliased.profile_id == old.profile_id
    assert store.find(anon("legacy-7")) is None
    assert store.find(anon("a9")) == old.profile_id


def test_pii_identities_stay_hashed(store: SqliteProfileStore, resolver: IdentityResolver) -> None:
    event = {"type": "identify", "userId": "u1", "traits": {"email": hashed_email("a@x.com")}}
    resolution = resolve(store, resolver, *resolver.extract(event))
    profile = store.get(resolution.profile_id)
    assert profile is not None
    assert profile.identity_values("email") == [hashed_email("a@x.com")]
    found = store.find(resolver.identity_for_lookup("email", "A@X.com", HASHER))
    assert found == resolution.profile_id


def test_shared_cache_stays_consistent_through_a_merge(
    store: SqliteProfileStore, resolver: IdentityResolver
) -> None:
    first = resolve(store, resolver, anon("a1"), message_id="m1", at=T0)
    second = resolve(store, resolver, user("u1"), message_id="m2", at=T1)
    cache: dict[str, Profile] = {}
    with store.transaction() as writer:
        resolution = resolver.resolve(
            writer, [user("u1"), anon("a1")], message_id="m3", at=T3, cache=cache
        )
    assert resolution.profile_id == second.profile_id
    assert first.profile_id not in cache
    cached = cache[second.profile_id]
    assert set(cached.identities) == {user("u1"), anon("a1")}
    assert cached.created_at == T0


def test_resolving_nothing_is_an_error(
    store: SqliteProfileStore, resolver: IdentityResolver
) -> None:
    with pytest.raises(ValueError), store.transaction() as writer:
        resolver.resolve(writer, [], message_id="m", at=T0)
