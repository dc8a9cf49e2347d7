"""The stream processor's consent gate and sinks.

Without `analytics` consent an event must not grow a profile: it stays in the log only
anonymized (or is dropped, per config); a consent change itself is kept, reduced to the
choice. Sinks see every applied batch after the profile transaction commits.
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
from touchpoint.core.clock import isoformat
from touchpoint.core.errors import Unavailable
from touchpoint.log.base import LogRecord
from touchpoint.log.sqlite import SqliteEventLog
from touchpoint.profiles.model import Identity
from touchpoint.profiles.sinks import AppliedEvent
from touchpoint.profiles.store.sqlite import SqliteProfileStore
from touchpoint.stream.processor import StreamProcessor

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


class RecordingSink:
    name = "recording"

    def __init__(self) -> None:
        self.batches: list[list[AppliedEvent]] = []
        self.fail_with: Exception | None = None

    def write(self, events: Sequence[AppliedEvent]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.batches.append(list(events))


class Rig:
    def __init__(self, tmp_path: Path, consent_config: dict[str, Any] | None = None) -> None:
        config = {"features": FEATURES}
        if consent_config is not None:
            config["consent"] = consent_config
        self.log = SqliteEventLog(
            tmp_path / "log.sqlite3", partitions=2, dedup_window=timedelta(hours=1)
        )
        self.store = SqliteProfileStore(tmp_path / "profiles.sqlite3")
        self.sink = RecordingSink()
        self.processor = StreamProcessor(
            parse_config(config), self.log, self.store, clock=lambda: NOW, sinks=[self.sink]
        )

    def send(self, *events: dict[str, Any]) -> None:
        self.log.append(
            [
                LogRecord(event["anonymousId"], event["messageId"], orjson.dumps(event))
                for event in events
            ]
        )
        while self.processor.run_once():
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
    assert rig.processor.consent_suppressed == 1


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
        seen = [applied.event.get("event") for batch in rig.sink.batches for applied in batch]
        assert "Product Viewed" not in seen and rig.processor.consent_suppressed == 1
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
        assert rig.processor.consent_suppressed == 2
    finally:
        rig.close()


def test_sinks_see_each_batch_with_profiles_and_anonymized_events(rig: Rig) -> None:
    rig.send(view("a"), consent("b", analytics=False), view("b"))
    seen = [applied for batch in rig.sink.batches for applied in batch]
    assert len(seen) == 3
    by_person = {applied.event.get("anonymousId"): applied for applied in seen}
    assert by_person["a"].profile_id == rig.profile_id("a")
    assert by_person[None].event["anonymized"] is True and by_person[None].profile_id is None


def test_a_sink_that_cannot_write_holds_the_log_position(rig: Rig) -> None:
    rig.sink.fail_with = Unavailable("decision log locked")
    rig.log.append([LogRecord("a", "x1", orjson.dumps(view("a")))])
    with pytest.raises(Unavailable):
        rig.processor.run_once()
    assert rig.log.committed(rig.processor.group, rig.log.partition_for("a")) == 0
    rig.sink.fail_with = None
    assert rig.processor.run_once() == 1
    assert [applied.duplicate for applied in rig.sink.batches[-1]] == [True]


def test_a_sink_bug_is_logged_and_skipped(rig: Rig) -> None:
    rig.sink.fail_with = RuntimeError("bug")
    rig.send(view("a"))
    assert rig.processor.sink_failures == 1 and rig.processor.processed == 1
