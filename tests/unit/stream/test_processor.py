"""The profile pipeline, run by its consumer: log -> identities, traits, consent, features,
segments."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from touchpoint.config.workspace import TouchpointConfig, parse_config
from touchpoint.consumers.consumer import LogConsumer
from touchpoint.core.clock import isoformat
from touchpoint.core.errors import Unavailable
from touchpoint.log.base import LogRecord
from touchpoint.log.sqlite import SqliteEventLog
from touchpoint.profiles.model import Identity, Profile
from touchpoint.profiles.pii import IdentityHasher
from touchpoint.profiles.store.base import ProfileStore, ProfileWriter
from touchpoint.profiles.store.sqlite import SqliteProfileStore
from touchpoint.stream.pipeline import ProfilePipeline

NOW = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
HASHER = IdentityHasher("test-hash-secret-0123456789")

CONFIG: dict[str, Any] = {
    "features": [
        {"name": "views", "type": "count", "event": "Product Viewed"},
        {"name": "views_7d", "type": "count", "event": "Product Viewed", "window": "7d"},
        {"name": "revenue", "type": "sum", "event": "Order Completed", "property": "revenue"},
        {"name": "pages", "type": "count", "event": "type:page"},
        {"name": "cart", "type": "cart"},
    ],
    "segments": [
        {"name": "buyers", "condition": "features.revenue > 0"},
        {"name": "pros", "condition": {"field": "traits.plan", "eq": "pro"}},
        {"name": "pro_buyers", "condition": {"and": [{"segment": "buyers"}, {"segment": "pros"}]}},
    ],
}


def at(days: float = 0, **offset: float) -> str:
    return isoformat(NOW - timedelta(days=days, **offset))


_counter = iter(range(1_000_000))


def event(
    kind: str,
    when: str,
    *,
    anonymous_id: str | None = None,
    user_id: str | None = None,
    name: str | None = None,
    properties: dict[str, Any] | None = None,
    traits: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    message_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": kind,
        "messageId": message_id or f"msg-{next(_counter)}",
        "anonymousId": anonymous_id,
        "userId": user_id,
        "properties": properties or {},
        "traits": traits or {},
        "context": context or {},
        "timestamp": when,
        "receivedAt": when,
        "source": "web",
        "violations": [],
        **extra,
    }
    if kind == "track":
        body["event"] = name
    elif kind in ("page", "screen"):
        body["name"] = name
    return body


class Harness:
    """A log, a store and the profile pipeline's consumer on temporary files, with a fixed
    clock."""

    def __init__(self, tmp_path: Path, config: dict[str, Any] | None = None) -> None:
        self.config: TouchpointConfig = parse_config(config if config is not None else CONFIG)
        self.log = SqliteEventLog(
            tmp_path / "log.sqlite3", partitions=2, dedup_window=timedelta(hours=1)
        )
        self.store = SqliteProfileStore(tmp_path / "profiles.sqlite3")
        self.pipeline = ProfilePipeline(self.config, self.log, self.store, clock=lambda: NOW)
        self.processor = LogConsumer(self.log, self.pipeline)

    def make_processor(self, store: ProfileStore) -> LogConsumer:
        return LogConsumer(
            self.log, ProfilePipeline(self.config, self.log, store, clock=lambda: NOW)
        )

    def send(self, *events: dict[str, Any], key: str = "person") -> None:
        self.log.append([LogRecord(key, item["messageId"], orjson.dumps(item)) for item in events])

    def send_raw(self, payload: bytes, message_id: str, key: str = "person") -> None:
        self.log.append([LogRecord(key, message_id, payload)])

    def drain(self, max_records: int = 1000) -> int:
        total = 0
        while handled := self.processor.run_once(max_records):
            total += handled
        return total

    def profile(self, kind: str, value: str) -> Profile:
        profile_id = self.store.find(Identity(kind, value))
        assert profile_id is not None, f"no profile for {kind}={value}"
        profile = self.store.get(profile_id)
        assert profile is not None
        return profile

    def close(self) -> None:
        self.processor.stop()
        self.log.close()
        self.store.close()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    opened = Harness(tmp_path)
    yield opened
    opened.close()


def snapshot(store: ProfileStore) -> dict[str, Any]:
    """Everything the store holds, as comparable data."""
    profiles = {}
    cursor = None
    while True:
        page = store.profile_ids(cursor=cursor, limit=100)
        for profile_id in page.items:
            profile = store.get(profile_id)
            assert profile is not None
            profiles[profile_id] = (
                profile.state(),
                sorted((i.kind, i.value) for i in profile.identities),
                profile.segments,
                [e.message_id for e in store.events(profile_id, limit=1000).items],
                store.lineage(profile_id),
            )
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return {
        "profiles": profiles,
        "changes": store.segment_changes(limit=100_000),
        "sizes": store.segment_sizes(),
    }


def test_traits_latest_by_event_time_whatever_the_arrival_order(harness: Harness) -> None:
    email = HASHER.hash("email", "a@x.com")
    harness.send(
        event("identify", at(1), user_id="u1", traits={"plan": "pro", "email": email}),
        event("identify", at(3), user_id="u1", traits={"plan": "free", "city": "Oslo"}),
        event("track", at(2), user_id="u1", name="Viewed", context={"traits": {"city": "Rome"}}),
    )
    harness.drain()
    profile = harness.profile("user_id", "u1")
    assert profile.traits == {"plan": "pro", "city": "Rome"}
    assert profile.trait_times == {"plan": at(1), "city": at(2)}
    assert profile.identity_values("email") == [email]  # PII lives hashed in identities only
    assert (profile.first_seen, profile.last_seen, profile.last_event_at) == (at(3), at(1), at(1))


def test_consent_latest_per_purpose_and_never_a_trait(harness: Harness) -> None:
    harness.send(
        event("identify", at(3), user_id="u1", traits={"consent": {"email": True, "ads": True}}),
        event(
            "track",
            at(2),
            user_id="u1",
            name="Consent Updated",
            properties={"consent": {"email": False, "sms": "yes"}},
        ),
        event("identify", at(4), user_id="u1", traits={"consent": {"ads": False}}),
    )
    harness.drain()
    profile = harness.profile("user_id", "u1")
    assert profile.consent == {"email": False, "ads": True}
    assert profile.consent_times == {"email": at(2), "ads": at(3)}
    assert "consent" not in profile.traits


def test_features_are_kept_per_profile(harness: Harness) -> None:
    harness.send(
        event("track", at(1), anonymous_id="a1", name="Product Viewed"),
        event("track", at(10), anonymous_id="a1", name="Product Viewed"),
        event("page", at(1), anonymous_id="a1", name="Home"),
        event(
            "track", at(2), anonymous_id="a1", name="Order Completed", properties={"revenue": 30}
        ),
        event(
            "track", at(1), anonymous_id="a1", name="Order Completed", properties={"revenue": 12.5}
        ),
    )
    assert harness.drain() == 5
    profile = harness.profile("anonymous_id", "a1")
    values = harness.pipeline.engine.values(profile.features, NOW)
    assert values["views"] == 2 and values["views_7d"] == 1
    assert values["revenue"] == 42.5 and values["pages"] == 1
    assert harness.pipeline.processed == 5


def test_a_person_is_loaded_and_saved_once_per_batch(harness: Harness) -> None:
    harness.send(*[event("page", at(0, minutes=i), anonymous_id="a1") for i in range(50)])
    harness.drain()
    profile = harness.profile("anonymous_id", "a1")
    assert profile.version == 1
    assert harness.pipeline.engine.values(profile.features, NOW)["pages"] == 50


def test_segments_enter_and_exit_with_entered_at(harness: Harness) -> None:
    harness.send(
        event("identify", at(5), user_id="u1", traits={"plan": "pro"}),
        event("track", at(4), user_id="u1", name="Order Completed", properties={"revenue": 9}),
    )
    harness.drain()
    profile = harness.profile("user_id", "u1")
    stamp = isoformat(NOW)
    assert profile.segments == {"buyers": stamp, "pros": stamp, "pro_buyers": stamp}
    assert harness.store.segment_sizes() == {"buyers": 1, "pro_buyers": 1, "pros": 1}
    harness.send(event("identify", at(1), user_id="u1", traits={"plan": "free"}))
    harness.drain()
    profile = harness.profile("user_id", "u1")
    assert profile.segments == {"buyers": stamp}
    changes = [(c.segment, c.change) for _, c in harness.store.segment_changes()]
    assert sorted(changes[:3]) == [("buyers", "enter"), ("pro_buyers", "enter"), ("pros", "enter")]
    assert sorted(changes[3:]) == [("pro_buyers", "exit"), ("pros", "exit")]
    assert harness.pipeline.segment_changes == 5


def test_segments_of_other_owners_are_left_alone(harness: Harness) -> None:
    harness.send(event("page", at(1), anonymous_id="a1"))
    harness.drain()
    profile = harness.profile("anonymous_id", "a1")
    with harness.store.transaction() as writer:  # a batch job's segment
        writer.set_segment(profile.profile_id, "rfm_champions", member=True, at=at(1))
    harness.send(event("page", at(0), anonymous_id="a1"))
    harness.drain()
    assert harness.profile("anonymous_id", "a1").segments == {"rfm_champions": at(1)}


def test_merge_recomputes_the_survivor_from_the_whole_timeline(harness: Harness) -> None:
    harness.send(
        event("track", at(7), anonymous_id="a1", name="Product Viewed"),
        event(
            "track", at(6), anonymous_id="a1", name="Product Viewed", context={"traits": {"x": 1}}
        ),
        key="a1",
    )
    harness.send(
        event("identify", at(5), user_id="u1", anonymous_id="a2", traits={"plan": "pro"}),
        event("track", at(1), user_id="u1", name="Order Completed", properties={"revenue": 5}),
        key="u1",
    )
    harness.drain()
    assert harness.store.count() == 2
    harness.send(event("identify", at(0), user_id="u1", anonymous_id="a1"), key="u1")
    harness.drain()
    assert harness.store.count() == 1
    assert harness.pipeline.merges == 1
    profile = harness.profile("anonymous_id", "a1")
    assert profile.identity_values("user_id") == ["u1"]
    values = harness.pipeline.engine.values(profile.features, NOW)
    assert values["views"] == 2 and values["revenue"] == 5
    assert profile.traits == {"plan": "pro", "x": 1}
    assert (profile.first_seen, profile.last_seen) == (at(7), at(0))
    assert profile.created_at == at(7)  # the merged profile was the older one
    assert profile.segments == {
        "buyers": isoformat(NOW),
        "pros": isoformat(NOW),
        "pro_buyers": isoformat(NOW),
    }
    assert len(harness.store.events(profile.profile_id).items) == 5


def test_merge_within_one_batch(harness: Harness) -> None:
    harness.send(
        event("track", at(3), anonymous_id="a1", name="Product Viewed"),
        event("identify", at(2), user_id="u1", traits={"plan": "pro"}),
        event("track", at(1), user_id="u1", anonymous_id="a1", name="Product Viewed"),
    )
    harness.drain()
    assert harness.store.count() == 1
    profile = harness.profile("user_id", "u1")
    assert harness.pipeline.engine.values(profile.features, NOW)["views"] == 2
    assert profile.traits == {"plan": "pro"}
    assert profile.segments == {"pros": isoformat(NOW)}


def test_late_event_recomputes_order_sensitive_features(tmp_path: Path) -> None:
    added_1 = event(
        "track", at(5), anonymous_id="a", name="Product Added", properties={"product_id": "p1"}
    )
    ordered = event(
        "track", at(4), anonymous_id="a", name="Order Completed", properties={"revenue": 1}
    )
    added_2 = event(
        "track", at(3), anonymous_id="a", name="Product Added", properties={"product_id": "p2"}
    )
    carts = []
    for arrival, batch in (([added_1, ordered, added_2], 1000), ([added_1, added_2, ordered], 1)):
        root = tmp_path / f"run{len(carts)}"
        root.mkdir()
        harness = Harness(root)
        try:
            harness.send(*arrival)
            harness.drain(max_records=batch)
            profile = harness.profile("anonymous_id", "a")
            carts.append(harness.pipeline.engine.values(profile.features, NOW)["cart"])
        finally:
            harness.close()
    assert carts[0] == carts[1]
    assert [item["product_id"] for item in carts[0]["items"]] == ["p2"]


def test_replay_from_start_and_from_the_middle_changes_nothing(harness: Harness) -> None:
    rng = random.Random(7)
    events = []
    for _ in range(120):
        person = rng.randrange(12)
        kind = rng.choice(["page", "track", "identify"])
        when = at(rng.random() * 10)
        ids: dict[str, Any] = {"anonymous_id": f"anon-{person}"}
        if person % 3 == 0 or kind == "identify":
            ids["user_id"] = f"user-{person // 2}"  # pairs of devices merge into one user
        if kind == "identify":
            events.append(
                event("identify", when, traits={"plan": rng.choice(["pro", "free"])}, **ids)
            )
        elif kind == "page":
            events.append(event("page", when, name="Home", **ids))
        else:
            revenue = {"revenue": rng.randrange(1, 50)}
            events.append(event("track", when, name="Order Completed", properties=revenue, **ids))
    for item in events:
        harness.send(item, key=item["userId"] or item["anonymousId"])
    harness.drain(max_records=17)
    assert harness.pipeline.processed == 120
    assert harness.pipeline.merges > 0
    before = snapshot(harness.store)
    for partition in range(harness.log.partitions):
        harness.log.commit("profiles", partition, 0)
    assert harness.drain(max_records=23) == 120
    assert snapshot(harness.store) == before
    assert harness.pipeline.duplicates == 120
    for partition in range(harness.log.partitions):
        end = harness.log.end_offset(partition)
        harness.log.commit("profiles", partition, end // 2)
    harness.drain()
    assert snapshot(harness.store) == before
    assert harness.pipeline.processed == 120


def test_a_poison_event_is_skipped_without_blocking(harness: Harness) -> None:
    harness.send(event("page", at(3), anonymous_id="a1"))
    harness.send_raw(b"{not json", "poison-1")
    harness.send_raw(b"[1, 2, 3]", "poison-2")
    harness.send(event("page", at(2), anonymous_id="a1"), event("page", at(1), anonymous_id="a2"))
    assert harness.drain() == 5
    assert harness.processor.failed == 2
    assert harness.pipeline.processed == 3
    assert (
        harness.pipeline.engine.values(harness.profile("anonymous_id", "a1").features, NOW)["pages"]
        == 2
    )
    assert harness.processor.idle()
    assert harness.processor.last_handled_at > 0


def test_events_without_identity_are_counted_and_skipped(harness: Harness) -> None:
    harness.send(event("page", at(1), anonymous_id="undefined"), event("page", at(1)))
    assert harness.drain() == 2
    assert harness.pipeline.skipped_no_identity == 2
    assert harness.store.count() == 0


def test_an_unavailable_store_skips_nothing(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.send(event("page", at(1), anonymous_id="a1"))

    def refuse() -> AbstractContextManager[ProfileWriter]:
        raise Unavailable("disk full")

    monkeypatch.setattr(harness.store, "transaction", refuse)
    with pytest.raises(Unavailable):
        harness.processor.run_once()
    assert harness.processor.failed == 0
    assert harness.log.committed("profiles", harness.log.partition_for("person")) == 0
    monkeypatch.undo()
    assert harness.drain() == 1  # once the store is back, the event is applied
    assert harness.store.count() == 1


def test_background_thread_processes_appends(harness: Harness) -> None:
    assert not harness.processor.running
    harness.processor.start()
    assert harness.processor.running
    harness.send(*[event("page", at(1), anonymous_id=f"a{i}") for i in range(20)])
    assert harness.processor.wait_idle(timeout=10)
    harness.processor.stop()
    assert not harness.processor.running
    assert harness.store.count() == 20
    assert harness.pipeline.processed == 20


def test_owned_partitions_only(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    try:
        harness.send(event("page", at(1), anonymous_id="a1"), key="k0")
        owned = harness.log.partition_for("k0")
        other = LogConsumer(harness.log, harness.pipeline, partitions=[1 - owned])
        assert other.run_once() == 0
        assert other.idle()
        assert not harness.processor.idle()
        with pytest.raises(ValueError):
            LogConsumer(harness.log, harness.pipeline, partitions=[5])
    finally:
        harness.close()


def test_run_once_is_safe_from_two_threads(harness: Harness) -> None:
    harness.send(*[event("page", at(1), anonymous_id=f"a{i % 7}") for i in range(200)])
    threads = [threading.Thread(target=harness.drain, kwargs={"max_records": 10}) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert harness.pipeline.processed == 200
    assert harness.pipeline.duplicates == 0


def test_refresh_segments_expires_windowed_memberships(tmp_path: Path) -> None:
    config = {
        "features": [
            {"name": "views_7d", "type": "count", "event": "Product Viewed", "window": "7d"}
        ],
        "segments": [{"name": "active", "condition": "features.views_7d >= 1"}],
    }
    harness = Harness(tmp_path, config)
    try:
        assert harness.pipeline.segments.time_dependent == {"active"}
        harness.send(event("track", at(6), anonymous_id="a1", name="Product Viewed"))
        harness.drain()
        assert harness.store.segment_sizes() == {"active": 1}
        assert harness.pipeline.refresh_segments(NOW) == 0
        assert harness.pipeline.refresh_segments(NOW + timedelta(days=2)) == 1
        assert harness.store.segment_sizes() == {}
        assert harness.pipeline.segment_changes == 2
    finally:
        harness.close()
