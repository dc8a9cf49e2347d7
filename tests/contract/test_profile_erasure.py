"""The ProfileStore erasure contract (erase, tombstone, tombstoned, segment_history), run
against every backend of the profile-store contract suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.test_profile_store import BACKENDS
from touchpoint.profiles.model import Identity, Profile
from touchpoint.profiles.store.base import ProfileStore, TimelineEvent

T0 = "2024-01-01T00:00:00.000Z"
T1 = "2024-01-02T00:00:00.000Z"
T2 = "2024-01-03T00:00:00.000Z"
T3 = "2024-01-04T00:00:00.000Z"
ANON_A = Identity("anonymous_id", "a")
ANON_B = Identity("anonymous_id", "b")
USER_1 = Identity("user_id", "u1")
EMAIL_1 = Identity("email", "h1:" + "e" * 64)
OTHER = Identity("user_id", "someone-else")


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProfileStore]:
    instance = BACKENDS[request.param](request, tmp_path)
    yield instance
    instance.close()


def key(identity: Identity) -> str:
    return f"ts:{identity.kind}:{identity.value}"


def event(message_id: str, timestamp: str) -> TimelineEvent:
    body = {"type": "track", "messageId": message_id, "event": "Viewed", "timestamp": timestamp}
    return TimelineEvent(message_id, timestamp, "track", "Viewed", body)


def build_person(store: ProfileStore) -> None:
    """`old` (user + email) absorbed `new` (two anonymous ids); both had events and segments.
    `other` is someone else who must survive every erasure."""
    with store.transaction() as writer:
        writer.create(Profile(profile_id="new", created_at=T1))
        writer.link("new", ANON_A, message_id="m-new", at=T1)
        writer.link("new", ANON_B, message_id="m-new", at=T1)
        writer.record_event("new", event("e-new-1", T1))
        writer.set_segment("new", "browsers", member=True, at=T1)
        writer.create(Profile(profile_id="old", created_at=T0))
        writer.link("old", USER_1, message_id="m-old", at=T0)
        writer.link("old", EMAIL_1, message_id="m-old", at=T0)
        writer.record_event("old", event("e-old-1", T0))
        writer.set_segment("old", "buyers", member=True, at=T0)
        writer.create(Profile(profile_id="other", created_at=T0))
        writer.link("other", OTHER, message_id="m-other", at=T0)
        writer.record_event("other", event("e-other-1", T0))
        writer.set_segment("other", "buyers", member=True, at=T0)
        writer.set_segment("other", "browsers", member=True, at=T0)
    with store.transaction() as writer:
        writer.merge("old", "new", identity=ANON_A, message_id="m-merge", at=T2)
        writer.record_event("old", event("e-old-2", T2))
        writer.set_segment("old", "buyers", member=False, at=T3)


def test_erase_removes_the_person_and_everything_merged_into_them(store: ProfileStore) -> None:
    build_person(store)
    erased = store.erase("old", tombstone_key=key, extra_tombstones=["subject"], job_id="j1", at=T3)

    assert erased is not None
    assert set(erased.profile_ids) == {"old", "new"}
    assert erased.profile_ids[0] == "old"
    assert set(erased.identities) == {USER_1, EMAIL_1, ANON_A, ANON_B}
    assert set(erased.message_ids) == {"e-new-1", "e-old-1", "e-old-2"}
    assert erased.counts == {
        "profiles": 1,
        "identities": 4,
        "timeline_events": 3,
        "segment_memberships": 1,  # browsers (moved from new); buyers was left at T3
        # new: enter browsers, exit browsers (merge); old: enter buyers, enter browsers
        # (merge), exit buyers
        "segment_changes": 5,
        "merges": 1,
        "redirects": 1,
    }
    for identity in (USER_1, EMAIL_1, ANON_A, ANON_B):
        assert store.find(identity) is None
    for profile_id in ("old", "new"):
        assert store.get(profile_id) is None
        assert store.events(profile_id).items == []
        assert store.lineage(profile_id) == []
        assert store.segment_history(profile_id) == []
    people = {pid for _, change in store.segment_changes() for pid in [change.profile_id]}
    assert people == {"other"}
    assert store.segment_members("browsers").items == [("other", T0)]
    assert store.segment_members("buyers").items == [("other", T0)]
    assert store.profile_ids().items == ["other"]
    assert store.count() == 1


def test_erase_leaves_a_tombstone_per_identity_and_extra_key(store: ProfileStore) -> None:
    build_person(store)
    assert store.tombstone(key(USER_1)) is None
    store.erase("old", tombstone_key=key, extra_tombstones=["subject"], job_id="j1", at=T3)

    for identity in (USER_1, EMAIL_1, ANON_A, ANON_B):
        assert store.tombstone(key(identity)) == "j1"
    assert store.tombstone("subject") == "j1"
    assert store.tombstone(key(OTHER)) is None
    with store.transaction() as writer:
        asked = [key(USER_1), key(OTHER), "subject", key(ANON_B), "nothing"]
        assert writer.tombstoned(asked) == {key(USER_1), "subject", key(ANON_B)}
        assert writer.tombstoned([]) == set()
        assert writer.tombstoned([key(USER_1)]) == {key(USER_1)}  # asked again: remembered


def test_erase_through_a_merged_away_id_erases_the_survivor(store: ProfileStore) -> None:
    build_person(store)
    erased = store.erase("new", tombstone_key=key, job_id="j1", at=T3)
    assert erased is not None
    assert set(erased.profile_ids) == {"old", "new"}
    assert store.find(USER_1) is None
    assert store.get("old") is None


def test_erase_leaves_everyone_else_untouched(store: ProfileStore) -> None:
    build_person(store)
    before = store.get("other")
    store.erase("old", tombstone_key=key, job_id="j1", at=T3)
    after = store.get("other")
    assert after is not None and before is not None
    assert after.identities == before.identities == [OTHER]
    assert after.segments == before.segments
    assert [item.message_id for item in store.events("other").items] == ["e-other-1"]
    assert store.find(OTHER) == "other"


def test_erase_of_an_unknown_profile_is_none_and_writes_nothing(store: ProfileStore) -> None:
    build_person(store)
    assert (
        store.erase("ghost", tombstone_key=key, extra_tombstones=["x"], job_id="j", at=T3) is None
    )
    assert store.tombstone("x") is None
    assert store.count() == 2


def test_a_failing_erase_changes_nothing(store: ProfileStore) -> None:
    build_person(store)

    def broken(identity: Identity) -> str:
        raise RuntimeError("no key")

    with pytest.raises(RuntimeError):
        store.erase("old", tombstone_key=broken, job_id="j1", at=T3)
    assert store.find(USER_1) == "old"
    assert store.find(ANON_B) == "old"
    assert len(store.events("old").items) == 3
    assert store.tombstone(key(USER_1)) is None


def test_a_second_erasure_re_points_tombstones_to_its_job(store: ProfileStore) -> None:
    build_person(store)
    store.erase("old", tombstone_key=key, extra_tombstones=["s"], job_id="j1", at=T3)
    with store.transaction() as writer:  # the person comes back under a shared identifier
        writer.create(Profile(profile_id="again", created_at=T3))
        writer.link("again", USER_1, message_id="m-again", at=T3)
    erased = store.erase("again", tombstone_key=key, extra_tombstones=["s"], job_id="j2", at=T3)
    assert erased is not None and erased.identities == (USER_1,)
    assert store.tombstone(key(USER_1)) == "j2"
    assert store.tombstone(key(ANON_A)) == "j1"
    assert store.tombstone("s") == "j2"


def test_tombstoned_handles_more_keys_than_one_query_takes(store: ProfileStore) -> None:
    many = [Identity("anonymous_id", f"anon-{index}") for index in range(1_234)]
    with store.transaction() as writer:
        writer.create(Profile(profile_id="crowd", created_at=T0))
        for identity in many:
            writer.link("crowd", identity, message_id="m", at=T0)
    erased = store.erase("crowd", tombstone_key=key, job_id="j", at=T1)
    assert erased is not None and len(erased.identities) == 1_234
    with store.transaction() as writer:
        keys = [key(identity) for identity in many] + [f"absent-{n}" for n in range(700)]
        assert writer.tombstoned(keys) == {key(identity) for identity in many}


def test_tombstoned_is_empty_when_nothing_was_ever_erased(store: ProfileStore) -> None:
    with store.transaction() as writer:
        assert writer.tombstoned([key(USER_1), "anything"]) == set()


def test_segment_history_is_oldest_first_and_includes_merged_profiles(
    store: ProfileStore,
) -> None:
    build_person(store)
    history = [(c.segment, c.profile_id, c.change, c.at) for c in store.segment_history("old")]
    assert history == [
        ("browsers", "new", "enter", T1),
        ("buyers", "old", "enter", T0),
        ("browsers", "new", "exit", T2),
        ("browsers", "old", "enter", T2),
        ("buyers", "old", "exit", T3),
    ]
    assert store.segment_history("new") == store.segment_history("old")
    assert [c.profile_id for c in store.segment_history("other")] == ["other", "other"]
    assert store.segment_history("ghost") == []
