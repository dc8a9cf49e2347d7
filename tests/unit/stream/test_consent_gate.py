"""The profile pipeline's consent gate, and what the groups following `profiles` see.

Without `analytics` consent an event must not grow a profile: it stays in the log only
anonymized (or is dropped, per config); a consent change itself is kept, reduced to the
choice. A handler following `profiles` (the outcome joiner, the warehouse copy) reads the
log only once the pipeline committed it, so it sees what the gates left, and its own
failures never hold the profiles back.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from touchpoint.config.workspace import parse_config
from touchpoint.consumers.consumer import LogConsumer
from touchpoint.core.clock import isoformat
from touchpoint.core.errors import Unavailable
from touchpoint.log.base import LogEntry, LogRecord
from touchpoint.log.sqlite import SqliteEventLog
from touchpoint.profiles.model import Identity
from touchpoint.profiles.store.sqlite import SqliteProfileStore
from touchpoint.stream.pipeline import ProfilePipeline

NOW = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
FEATURES: list[dict[str, Any]] = [{"name": "views", "type": "count", "event": "Product Viewed"}]
_ids = itertools.count()
_minutes = itertools.count()


def message(kind: str, anonymous_id: str, **fields: Any) -> dict[str, Any]:
    when = isoformat(NOW - timedelta(hours=10) + timedelta(minutes=next(_minutes)))
    return {
        "type": kind,
        "messageId": f"m{next(_ids)}",
        "anonymousId": anonymous_id,
        "userId": fields.pop("user_id", None),
        "context": {"ip": "203.0.113.9", "page": {"path": "/shoes"}},
        "timestamp": when,
        "receivedAt": when,
        "source": "web",
        **fields,
    }


def view(anonymous_id: str, product: str = "p1") -> dict[str, Any]:
    return message("track", anonymous_id, event="Product Viewed", properties={"id": product})


def consent(anonymous_id: str, **choices: bool) -> dict[str, Any]:
    return message(
        "identify", anonymous_id, traits={"name": "Ada", "consent": choices}, user_id=None
    )


class RecordingHandler:
    """A handler of its own group following `profiles`: records the events it is handed."""

    name = "recording"
    group = "recording"
    follows = "profiles"

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.fail_with: Exception | None = None

    def handle(self, entries: Sequence[LogEntry]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.batches.append([orjson.loads(entry.payload) for entry in entries])


class Rig:
    def __init__(self, tmp_path: Path, consent_config: dict[str, Any] | None = None) -> None:
        config = {"features": FEATURES}
        if consent_config is not None:
            config["consent"] = consent_config
        self.log = SqliteEventLog(
            tmp_path / "log.sqlite3", partitions=2, dedup_window=timedelta(hours=1)
        )
        self.store = SqliteProfileStore(tmp_path / "profiles.sqlite3")
        self.pipeline = ProfilePipeline(
            parse_config(config), self.log, self.store, clock=lambda: NOW
        )
        self.processor = LogConsumer(self.log, self.pipeline)
        self.follower = RecordingHandler()
        self.following = LogConsumer(self.log, self.follower)

    def send(self, *events: dict[str, Any]) -> None:
        self.log.append(
            [
                LogRecord(event["anonymousId"], event["messageId"], orjson.dumps(event))
                for event in events
            ]
        )
        while self.processor.run_once():
            pass
        while self.following.run_once():
            pass

    def profile_id(self, anonymous_id: str) -> str | None:
        return self.store.find(Identity("anonymous_id", anonymous_id))

    def stored(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            (entry.key, orjson.loads(entry.payload))
            for partition in range(self.log.partitions)
            for entry in self.log.read(partition, 0, 1000)
        ]

    def close(self) -> None:
        self.log.close()
        self.store.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    yield made
    made.close()


def test_without_analytics_consent_events_stay_only_anonymized(rig: Rig) -> None:
    rig.send(view("a"), consent("a", analytics=False), view("a", "p2"))
    profile = rig.store.get(rig.profile_id("a") or "")
    assert profile is not None
    assert profile.consent == {"analytics": False}
    assert profile.features == {"views": 1}  # the view before the choice only
    assert "name" not in profile.traits  # the withdrawing identify grew nothing
    timeline = rig.store.events(profile.profile_id).items
    assert [item.name for item in reversed(timeline)] == ["Product Viewed", None]
    record = timeline[0].event
    assert record["traits"] == {"consent": {"analytics": False}} and "context" not in record
    anonymized = [event for _, event in rig.stored() if event.get("anonymized")]
    assert len(anonymized) == 1
    (key,) = [key for key, event in rig.stored() if event.get("anonymized")]
    event = anonymized[0]
    assert key == "" and "anonymousId" not in event and "userId" not in event
    assert event["context"] == {"page": {"path": "/shoes"}}
    assert event["properties"] == {"id": "p2"}
    assert rig.pipeline.consent_suppressed == 1


def test_consent_given_again_lets_events_through(rig: Rig) -> None:
    rig.send(consent("a", analytics=False), view("a"), consent("a", analytics=True), view("a"))
    profile = rig.store.get(rig.profile_id("a") or "")
    assert profile is not None and profile.consent == {"analytics": True}
    assert profile.features == {"views": 1}
    assert profile.traits == {"name": "Ada"}  # the granting identify applies in full


def test_drop_mode_deletes_the_events(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"without_analytics": "drop"})
    try:
        rig.send(consent("a", analytics=False), view("a"))
        assert [event.get("event") for _, event in rig.stored()] == [None]  # the record only
        seen = [event.get("event") for batch in rig.follower.batches for event in batch]
        assert "Product Viewed" not in seen and rig.pipeline.consent_suppressed == 1
    finally:
        rig.close()


def test_opt_in_default_creates_no_profile_until_consent(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"purposes": {"analytics": {"default": False}, "personalization": {}}})
    try:
        rig.send(view("a"), view("a"))
        assert rig.profile_id("a") is None and rig.store.count() == 0
        rig.send(consent("a", analytics=True), view("a"))
        profile = rig.store.get(rig.profile_id("a") or "")
        assert profile is not None and profile.features == {"views": 1}
        assert rig.pipeline.consent_suppressed == 2
    finally:
        rig.close()


def test_a_follower_sees_each_event_as_the_gates_left_it(rig: Rig) -> None:
    rig.send(view("a"), consent("b", analytics=False), view("b"))
    seen = [event for batch in rig.follower.batches for event in batch]
    assert len(seen) == 3
    by_person = {event.get("anonymousId"): event for event in seen}
    assert set(by_person) == {"a", "b", None}
    assert by_person[None]["anonymized"] is True and by_person[None]["event"] == "Product Viewed"


def test_a_follower_reads_nothing_the_profiles_have_not_committed(rig: Rig) -> None:
    rig.log.append([LogRecord("a", "x0", orjson.dumps(view("a")))])
    assert rig.following.run_once() == 0 and rig.following.idle()
    assert rig.processor.run_once() == 1
    assert not rig.following.idle()
    assert rig.following.run_once() == 1


def test_a_follower_that_cannot_write_holds_only_its_own_position(rig: Rig) -> None:
    rig.follower.fail_with = Unavailable("decision log locked")
    partition = rig.log.partition_for("a")
    rig.log.append([LogRecord("a", "x1", orjson.dumps(view("a")))])
    assert rig.processor.run_once() == 1  # the profiles go on
    with pytest.raises(Unavailable):
        rig.following.run_once()
    assert rig.log.committed(rig.following.group, partition) == 0
    assert rig.log.committed(rig.processor.group, partition) == 1
    rig.follower.fail_with = None
    assert rig.following.run_once() == 1
    assert [event["messageId"] for event in rig.follower.batches[-1]] == [view_id(rig, "x1")]


def view_id(rig: Rig, message_id: str) -> str:
    """The message id the event carried (the log's message id is the record's)."""
    [entry] = [
        entry
        for partition in range(rig.log.partitions)
        for entry in rig.log.read(partition, 0, 100)
        if entry.message_id == message_id
    ]
    return str(orjson.loads(entry.payload)["messageId"])


def test_a_follower_bug_skips_the_entry_and_leaves_the_profiles_alone(rig: Rig) -> None:
    rig.follower.fail_with = RuntimeError("bug")
    rig.send(view("a"))
    assert rig.following.failed == 1 and rig.pipeline.processed == 1
    assert rig.following.idle()
