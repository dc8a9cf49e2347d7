"""The ProfileStore / ProfileWriter contract, run against every backend.

Each backend opens a store on storage private to one test: SQLite in the test's temporary
directory, PostgreSQL on the test's own schema (the `postgres` fixture; skipped with a
message when no server is reachable, a failure in CI), and PostgreSQL behind the Redis
read-through cache (`CachedProfileStore`, on the test's own key prefix), which must keep
every promise of the store it wraps: a read after a write sees the write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from touchpoint.core.config_stores import StoreConfig
from touchpoint.core.metrics import Metrics
from touchpoint.core.postgres import Postgres
from touchpoint.core.redis import RedisService
from touchpoint.profiles.model import Identity, Profile
from touchpoint.profiles.store.base import ProfileStore, TimelineEvent, build_profile_store
from touchpoint.profiles.store.postgres import PostgresProfileStore
from touchpoint.profiles.store.redis_cache import CachedProfileStore
from touchpoint.profiles.store.sqlite import SqliteProfileStore


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> ProfileStore:
    return SqliteProfileStore(tmp_path / "profiles.sqlite3")


def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> ProfileStore:
    postgres: Postgres = request.getfixturevalue("postgres")
    return PostgresProfileStore(postgres)


def _postgres_redis(request: pytest.FixtureRequest, tmp_path: Path) -> ProfileStore:
    postgres: Postgres = request.getfixturevalue("postgres")
    redis: RedisService = request.getfixturevalue("redis_service")
    return CachedProfileStore(PostgresProfileStore(postgres), redis, metrics=Metrics())


# Each opener gets the test's request (for server fixtures) and its temporary directory.
BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], ProfileStore]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
    "postgres-redis": _postgres_redis,
}


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProfileStore]:
    instance = BACKENDS[request.param](request, tmp_path)
    yield instance
    instance.close()


def _event(message_id: str, timestamp: str, name: str = "Viewed") -> TimelineEvent:
    body = {"type": "track", "messageId": message_id, "event": name, "timestamp": timestamp}
    return TimelineEvent(message_id, timestamp, "track", name, body)


def _create(store: ProfileStore, profile_id: str, created_at: str, *identities: Identity) -> None:
    with store.transaction() as writer:
        writer.create(Profile(profile_id=profile_id, created_at=created_at))
        for identity in identities:
            writer.link(profile_id, identity, message_id=f"m-{profile_id}", at=created_at)


T0 = "2024-01-01T00:00:00.000Z"
T1 = "2024-01-02T00:00:00.000Z"
T2 = "2024-01-03T00:00:00.000Z"
T3 = "2024-01-04T00:00:00.000Z"
ANON_A = Identity("anonymous_id", "a")
ANON_B = Identity("anonymous_id", "b")
USER_1 = Identity("user_id", "u1")


def test_create_load_save_round_trip(store: ProfileStore) -> None:
    with store.transaction() as writer:
        profile = Profile(profile_id="p1", created_at=T0)
        writer.create(profile)
        writer.link("p1", ANON_A, message_id="m1", at=T0)
        loaded = writer.load("p1")
        assert loaded is not None
        loaded.traits["plan"] = "pro"
        loaded.trait_times["plan"] = T1
        loaded.features["views"] = {"count": 3}
        loaded.consent["email"] = True
        loaded.first_seen, loaded.last_seen, loaded.last_event_at = T0, T1, T1
        loaded.scores["churn"] = 0.25
        writer.save(loaded)
        assert loaded.version == 1
    got = store.get("p1")
    assert got is not None
    assert got.traits == {"plan": "pro"}
    assert got.trait_times == {"plan": T1}
    assert got.features == {"views": {"count": 3}}
    assert got.consent == {"email": True}
    assert (got.first_seen, got.last_seen, got.last_event_at) == (T0, T1, T1)
    assert got.scores == {"churn": 0.25}
    assert got.identities == [ANON_A]
    assert got.version == 1
    assert store.count() == 1


def test_get_unknown_profile_is_none(store: ProfileStore) -> None:
    assert store.get("nobody") is None
    assert store.find(ANON_A) is None


def test_find_and_find_many(store: ProfileStore) -> None:
    _create(store, "p1", T0, ANON_A, USER_1)
    _create(store, "p2", T0, ANON_B)
    assert store.find(USER_1) == "p1"
    assert store.find(ANON_B) == "p2"
    with store.transaction() as writer:
        found = writer.find_many([ANON_A, ANON_B, Identity("email", "h1:x")])
    assert found == {ANON_A: "p1", ANON_B: "p2"}


def test_find_many_follows_links_and_merges_inside_the_transaction(store: ProfileStore) -> None:
    _create(store, "p1", T0, ANON_A)
    with store.transaction() as writer:
        assert writer.find_many([ANON_A, ANON_B, USER_1]) == {ANON_A: "p1"}
        writer.create(Profile(profile_id="p2", created_at=T1))
        writer.link("p2", ANON_B, message_id="m2", at=T1)
        writer.link("p1", USER_1, message_id="m3", at=T1)
        assert writer.find_many([ANON_A, ANON_B, USER_1]) == {
            ANON_A: "p1",
            ANON_B: "p2",
            USER_1: "p1",
        }
        writer.merge("p2", "p1", identity=ANON_B, message_id="m4", at=T2)
        assert writer.find_many([USER_1, ANON_A, ANON_B]) == {
            USER_1: "p2",
            ANON_A: "p2",
            ANON_B: "p2",
        }
    with store.transaction() as writer:
        assert writer.find_many([ANON_A, USER_1]) == {ANON_A: "p2", USER_1: "p2"}


def test_a_refused_link_leaves_lookups_true(store: ProfileStore) -> None:
    _create(store, "p1", T0)
    _create(store, "p2", T0)
    with store.transaction() as writer:
        writer.link("p1", ANON_A, message_id="m1", at=T1)
        with pytest.raises(Exception):
            writer.link("p2", ANON_A, message_id="m2", at=T1)
        assert writer.find_many([ANON_A]) == {ANON_A: "p1"}


def test_lookups_of_a_rolled_back_transaction_do_not_survive(store: ProfileStore) -> None:
    _create(store, "p1", T0)
    with pytest.raises(RuntimeError), store.transaction() as writer:
        writer.link("p1", ANON_A, message_id="m1", at=T1)
        assert writer.find_many([ANON_A]) == {ANON_A: "p1"}
        raise RuntimeError("boom")
    with store.transaction() as writer:
        assert writer.find_many([ANON_A]) == {}


def test_link_to_another_profile_is_refused(store: ProfileStore) -> None:
    _create(store, "p1", T0, ANON_A)
    _create(store, "p2", T0)
    with pytest.raises(Exception), store.transaction() as writer:
        writer.link("p2", ANON_A, message_id="m9", at=T1)
    assert store.find(ANON_A) == "p1"
    with store.transaction() as writer:  # linking again to the same profile is harmless
        writer.link("p1", ANON_A, message_id="m9", at=T1)
    assert store.find(ANON_A) == "p1"


def test_record_event_is_idempotent_across_profiles(store: ProfileStore) -> None:
    _create(store, "p1", T0)
    _create(store, "p2", T0)
    with store.transaction() as writer:
        assert writer.record_event("p1", _event("m1", T1)) is True
        assert writer.record_event("p1", _event("m1", T1)) is False
        assert writer.record_event("p2", _event("m1", T1)) is False
    assert [event.message_id for event in store.events("p1").items] == ["m1"]
    assert store.events("p2").items == []


def test_find_many_answers_a_whole_batch_of_identities(store: ProfileStore) -> None:
    known = [Identity("user_id", f"u{n}") for n in range(60)]
    with store.transaction() as writer:
        for n, identity in enumerate(known):
            writer.create(Profile(profile_id=f"p{n}", created_at=T0))
            writer.link(f"p{n}", identity, message_id=f"m{n}", at=T0)
    unknown = [Identity("anonymous_id", f"a{n}") for n in range(60)]
    with store.transaction() as writer:
        found = writer.find_many([*unknown, *known, known[0]])
    assert found == {identity: f"p{n}" for n, identity in enumerate(known)}


def test_load_many_loads_those_that_exist_with_identities_and_segments(store: ProfileStore) -> None:
    ada, bob = Identity("user_id", "ada"), Identity("user_id", "bob")
    _create(store, "p1", T0, ada)
    _create(store, "p2", T0, bob)
    with store.transaction() as writer:
        writer.set_segment("p2", "vip", member=True, at=T1)
    with store.transaction() as writer:
        loaded = writer.load_many(["p2", "missing", "p1", "p2"])
        assert sorted(loaded) == ["p1", "p2"]
        assert loaded["p1"].identities == [ada]
        assert loaded["p2"].segments == {"vip": T1}
        assert loaded["p2"] == writer.load("p2")
        assert writer.load_many([]) == {}


def test_expected_events_answer_as_if_each_was_written_at_once(store: ProfileStore) -> None:
    _create(store, "p1", T0)
    _create(store, "p2", T0)
    with store.transaction() as writer:
        assert writer.record_event("p1", _event("old", T0)) is True
    with store.transaction() as writer:
        writer.expect_events(["old", "m1", "m2", "m1"])
        assert writer.record_event("p1", _event("old", T0)) is False  # applied before
        assert writer.record_event("p1", _event("m2", T2)) is True
        assert writer.record_event("p1", _event("m1", T1)) is True
        assert writer.record_event("p2", _event("m1", T1)) is False  # earlier in this batch
        assert writer.record_event("p2", _event("unexpected", T1)) is True
        assert [e.message_id for e in writer.timeline("p1")] == ["old", "m1", "m2"]
    assert [e.message_id for e in store.events("p1").items] == ["m2", "m1", "old"]
    assert [e.message_id for e in store.events("p2").items] == ["unexpected"]


def test_expected_events_are_not_written_when_the_transaction_fails(store: ProfileStore) -> None:
    _create(store, "p1", T0)
    with pytest.raises(RuntimeError), store.transaction() as writer:
        writer.expect_events(["m1"])
        assert writer.record_event("p1", _event("m1", T1)) is True
        raise RuntimeError("the batch failed")
    assert store.events("p1").items == []
    with store.transaction() as writer:
        writer.expect_events(["m1"])
        assert writer.record_event("p1", _event("m1", T1)) is True


def test_timeline_is_oldest_first_by_event_time(store: ProfileStore) -> None:
    _create(store, "p1", T0)
    with store.transaction() as writer:
        writer.record_event("p1", _event("late", T2))
        writer.record_event("p1", _event("early", T0))
        writer.record_event("p1", _event("middle-1", T1))
        writer.record_event("p1", _event("middle-2", T1))
        order = [event.message_id for event in writer.timeline("p1")]
    assert order == ["early", "middle-1", "middle-2", "late"]
    newest = [event.message_id for event in store.events("p1").items]
    assert newest == ["late", "middle-2", "middle-1", "early"]
    first = store.events("p1").items[-1]
    assert first.event["event"] == "Viewed" and first.type == "track" and first.name == "Viewed"


def test_events_pagination_walks_every_event_once(store: ProfileStore) -> None:
    _create(store, "p1", T0)
    with store.transaction() as writer:
        for index in range(7):
            writer.record_event("p1", _event(f"m{index}", T1 if index % 2 else T2))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = store.events("p1", cursor=cursor, limit=3)
        seen.extend(event.message_id for event in page.items)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 3
    assert sorted(seen) == [f"m{index}" for index in range(7)]
    assert seen[:3] == ["m6", "m4", "m2"]  # T2 first, newest insertion first


def test_bad_cursor_is_refused(store: ProfileStore) -> None:
    with pytest.raises(Exception, match="cursor"):
        store.events("p1", cursor="not-a-cursor!")


def test_merge_moves_identities_timeline_memberships_and_redirects(store: ProfileStore) -> None:
    _create(store, "old", T0, USER_1)
    _create(store, "new", T1, ANON_A, ANON_B)
    with store.transaction() as writer:
        writer.record_event("old", _event("m-old", T0))
        writer.record_event("new", _event("m-new", T1))
        writer.set_segment("new", "active", member=True, at=T1)
        writer.set_segment("new", "buyers", member=True, at=T1)
        writer.set_segment("old", "buyers", member=True, at=T2)
        writer.merge("old", "new", identity=ANON_A, message_id="m-merge", at=T3)
    assert store.find(ANON_A) == "old" and store.find(ANON_B) == "old"
    merged = store.get("new")
    assert merged is not None and merged.profile_id == "old"  # followed the redirect
    assert {identity.value for identity in merged.identities} == {"u1", "a", "b"}
    assert merged.segments == {"active": T1, "buyers": T1}  # the earlier entry wins
    assert [event.message_id for event in store.events("old").items] == ["m-new", "m-old"]
    assert [event.message_id for event in store.events("new").items] == ["m-new", "m-old"]
    assert store.count() == 1
    lineage = store.lineage("old")
    assert len(lineage) == 1
    record = lineage[0]
    assert (record.survivor_id, record.merged_id) == ("old", "new")
    assert (record.identity, record.message_id, record.at) == (ANON_A, "m-merge", T3)
    assert store.lineage("new") == lineage
    changes = [(c.segment, c.profile_id, c.change) for _, c in store.segment_changes()][3:]
    assert sorted(changes) == [
        ("active", "new", "exit"),
        ("active", "old", "enter"),
        ("buyers", "new", "exit"),
    ]


def test_chained_merges_keep_one_hop_redirects_and_full_lineage(store: ProfileStore) -> None:
    _create(store, "a", T0)
    _create(store, "b", T1)
    _create(store, "c", T2)
    with store.transaction() as writer:
        writer.merge("b", "c", identity=ANON_A, message_id="m1", at=T2)
        writer.merge("a", "b", identity=ANON_B, message_id="m2", at=T3)
    got = store.get("c")
    assert got is not None and got.profile_id == "a"
    assert [(r.survivor_id, r.merged_id) for r in store.lineage("c")] == [("b", "c"), ("a", "b")]


def test_merge_of_a_missing_profile_fails_and_changes_nothing(store: ProfileStore) -> None:
    _create(store, "a", T0, ANON_A)
    with pytest.raises(Exception), store.transaction() as writer:
        writer.merge("a", "ghost", identity=ANON_A, message_id="m1", at=T1)
    assert store.lineage("a") == []
    with pytest.raises(Exception), store.transaction() as writer:
        writer.merge("a", "a", identity=ANON_A, message_id="m1", at=T1)


def test_segment_memberships_sizes_and_change_log(store: ProfileStore) -> None:
    for index in range(5):
        _create(store, f"p{index}", T0)
    with store.transaction() as writer:
        for index in range(5):
            writer.set_segment(f"p{index}", "active", member=True, at=T1)
        writer.set_segment("p0", "active", member=True, at=T2)  # already in: nothing changes
        writer.set_segment("p1", "vip", member=True, at=T1)
        writer.set_segment("p2", "active", member=False, at=T2)
        writer.set_segment("p3", "vip", member=False, at=T2)  # not in: nothing changes
    assert store.segment_sizes() == {"active": 4, "vip": 1}
    profile = store.get("p1")
    assert profile is not None and profile.segments == {"active": T1, "vip": T1}
    members: list[tuple[str, str]] = []
    cursor = None
    while True:
        page = store.segment_members("active", cursor=cursor, limit=3)
        members.extend(page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert members == [("p0", T1), ("p1", T1), ("p3", T1), ("p4", T1)]
    log = store.segment_changes()
    assert [change.change for _, change in log] == ["enter"] * 6 + ["exit"]
    assert [identifier for identifier, _ in log] == sorted(identifier for identifier, _ in log)
    last_id = log[3][0]
    rest = store.segment_changes(since_id=last_id, limit=2)
    assert [identifier for identifier, _ in rest] == [log[4][0], log[5][0]]
    assert log[-1][1].profile_id == "p2" and log[-1][1].at == T2


def test_profile_ids_pagination_is_stable_and_complete(store: ProfileStore) -> None:
    with store.transaction() as writer:
        for index in range(25):
            writer.create(Profile(profile_id=f"id{index:03d}", created_at=T0))
    seen: list[str] = []
    cursor = None
    while True:
        page = store.profile_ids(cursor=cursor, limit=10)
        seen.extend(page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == sorted(f"id{index:03d}" for index in range(25))
    assert store.count() == 25


def test_exception_rolls_back_everything(store: ProfileStore) -> None:
    _create(store, "keep", T0)
    with pytest.raises(RuntimeError), store.transaction() as writer:
        writer.create(Profile(profile_id="gone", created_at=T0))
        writer.link("gone", ANON_A, message_id="m1", at=T0)
        writer.record_event("gone", _event("m1", T0))
        writer.set_segment("keep", "active", member=True, at=T0)
        raise RuntimeError("boom")
    assert store.get("gone") is None
    assert store.find(ANON_A) is None
    assert store.segment_changes() == []
    assert store.count() == 1
    with store.transaction() as writer:  # the message id is free again
        assert writer.record_event("keep", _event("m1", T0)) is True


def test_writer_is_unusable_after_its_transaction(store: ProfileStore) -> None:
    with store.transaction() as writer:
        pass
    with pytest.raises(Exception):
        writer.load("x")


def test_save_of_unknown_profile_fails(store: ProfileStore) -> None:
    with pytest.raises(Exception), store.transaction() as writer:
        writer.save(Profile(profile_id="ghost", created_at=T0))


def test_readers_in_other_threads_see_committed_state(store: ProfileStore) -> None:
    _create(store, "p1", T0, ANON_A)
    results: list[str | None] = []
    thread = threading.Thread(target=lambda: results.append(store.find(ANON_A)))
    thread.start()
    thread.join()
    assert results == ["p1"]


def test_uncommitted_writes_are_invisible_to_readers(store: ProfileStore) -> None:
    with store.transaction() as writer:
        writer.create(Profile(profile_id="p1", created_at=T0))
        writer.link("p1", ANON_A, message_id="m1", at=T0)
        seen: list[str | None] = []
        thread = threading.Thread(target=lambda: seen.append(store.find(ANON_A)))
        thread.start()
        thread.join()
    assert seen == [None]
    assert store.find(ANON_A) == "p1"


def test_data_survives_reopening(tmp_path: Path) -> None:
    store = build_profile_store(StoreConfig(), tmp_path / "data")
    _create(store, "p1", T0, ANON_A)
    store.close()
    assert (tmp_path / "data" / "profiles.sqlite3").exists()
    reopened = build_profile_store(StoreConfig(), tmp_path / "data")
    assert reopened.find(ANON_A) == "p1"
    reopened.close()
    custom = build_profile_store(StoreConfig(path=str(tmp_path / "x.db")), tmp_path)
    assert isinstance(custom, SqliteProfileStore) and custom.path == tmp_path / "x.db"
    custom.close()
