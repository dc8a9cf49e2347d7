"""The profile pipeline's batching: one transaction per run, and what a batch remembers.

A run applies every owned partition's entries in one profile-store transaction and then
commits each partition's position; within it, an event whose identities all sit on one
profile skips the identity rules, until a merge moves identities between profiles.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from touchpoint.config.workspace import parse_config
from touchpoint.consumers.consumer import LogConsumer
from touchpoint.core.clock import isoformat
from touchpoint.core.errors import Unavailable
from touchpoint.log.base import LogRecord
from touchpoint.log.sqlite import SqliteEventLog
from touchpoint.profiles.model import Identity, Profile
from touchpoint.profiles.store.base import ProfileWriter
from touchpoint.profiles.store.sqlite import SqliteProfileStore
from touchpoint.stream.pipeline import ProfilePipeline

NOW = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
CONFIG: dict[str, Any] = {
    "features": [{"name": "pages", "type": "count", "event": "type:page"}],
    "segments": [{"name": "readers", "condition": "features.pages >= 2"}],
}
_ids = itertools.count()


def page(days: float, *, anonymous_id: str | None = None, user_id: str | None = None) -> bytes:
    when = isoformat(NOW - timedelta(days=days))
    body: dict[str, Any] = {
        "type": "page",
        "messageId": f"m{next(_ids)}",
        "anonymousId": anonymous_id,
        "userId": user_id,
        "properties": {},
        "traits": {},
        "context": {},
        "timestamp": when,
        "receivedAt": when,
        "source": "web",
        "violations": [],
    }
    return orjson.dumps(body)


class Rig:
    """A two-partition log, a store that counts its transactions, and the profile
    pipeline with its consumer."""

    def __init__(self, tmp_path: Path) -> None:
        self.log = SqliteEventLog(
            tmp_path / "log.sqlite3", partitions=2, dedup_window=timedelta(hours=1)
        )
        self.store = SqliteProfileStore(tmp_path / "profiles.sqlite3")
        self.transactions = 0
        opened = self.store.transaction

        def counted() -> AbstractContextManager[ProfileWriter]:
            self.transactions += 1
            return opened()

        setattr(self.store, "transaction", counted)  # noqa: B010 - count every transaction
        self.pipeline = ProfilePipeline(
            parse_config(CONFIG), self.log, self.store, clock=lambda: NOW
        )
        self.processor = LogConsumer(self.log, self.pipeline)
        keys = (f"k{index}" for index in itertools.count())
        self.keys: dict[int, str] = {}  # partition -> a key that maps to it
        while len(self.keys) < 2:
            key = next(keys)
            self.keys.setdefault(self.log.partition_for(key), key)

    def send(self, partition: int, *payloads: bytes) -> None:
        records = []
        for payload in payloads:
            message_id = str(orjson.loads(payload)["messageId"]) if payload[:1] == b"{" else "bad"
            records.append(LogRecord(self.keys[partition], message_id, payload))
        self.log.append(records)

    def profile(self, kind: str, value: str) -> Profile:
        profile_id = self.store.find(Identity(kind, value))
        assert profile_id is not None
        profile = self.store.get(profile_id)
        assert profile is not None
        return profile

    def positions(self) -> list[tuple[int, int]]:
        return [
            (self.log.committed("profiles", partition), self.log.end_offset(partition))
            for partition in range(self.log.partitions)
        ]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    opened = Rig(tmp_path)
    yield opened
    opened.log.close()
    opened.store.close()


def test_one_run_is_one_transaction_and_commits_every_partition(rig: Rig) -> None:
    rig.send(0, page(3, anonymous_id="a"), page(2, anonymous_id="a"))
    rig.send(1, page(1, anonymous_id="b"), page(1, anonymous_id="c"), page(0, anonymous_id="b"))
    assert rig.processor.run_once() == 5
    assert rig.transactions == 1
    assert rig.positions() == [(2, 2), (3, 3)]
    assert rig.pipeline.processed == 5
    assert rig.store.segment_sizes() == {"readers": 2}
    assert rig.processor.run_once() == 0
    assert rig.transactions == 1


def test_a_merge_sends_later_events_of_the_batch_to_the_survivor(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.send(
        0,
        page(5, anonymous_id="a1"),  # a profile of its own, remembered for ("a1",)
        page(4, user_id="u1", anonymous_id="a2"),
        page(3, user_id="u1", anonymous_id="a1"),  # merges a1's profile into u1's
        page(2, anonymous_id="a1"),  # must reach the survivor, not the merged profile
        page(1, anonymous_id="a2"),
    )
    assert rig.processor.run_once() == 5
    assert rig.transactions == 1  # no failed batch, no event-by-event re-run
    assert "failed" not in caplog.text
    assert (rig.pipeline.processed, rig.pipeline.merges, rig.processor.failed) == (5, 1, 0)
    assert rig.store.count() == 1
    profile = rig.profile("anonymous_id", "a1")
    assert profile.identity_values("user_id") == ["u1"]
    assert profile.features == {"pages": 5}
    assert len(rig.store.events(profile.profile_id).items) == 5


def test_the_same_people_in_later_runs_resolve_to_the_same_profiles(rig: Rig) -> None:
    rig.send(0, page(3, anonymous_id="a"), page(2, anonymous_id="a", user_id="u"))
    rig.processor.run_once()
    rig.send(0, page(1, user_id="u"), page(0, anonymous_id="a"))
    rig.send(1, page(0, anonymous_id="b"))
    assert rig.processor.run_once() == 3
    assert rig.store.count() == 2
    assert rig.profile("user_id", "u").features == {"pages": 4}


def test_a_poison_event_in_one_partition_spares_the_other(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.send(0, page(2, anonymous_id="a"), b"[1, 2]", page(1, anonymous_id="a"))
    rig.send(1, page(2, anonymous_id="b"), page(1, anonymous_id="b"))
    assert rig.processor.run_once() == 5
    assert (rig.pipeline.processed, rig.processor.failed) == (4, 1)
    # the whole run, then each partition, then partition 0 event by event; an event that
    # cannot be decoded fails before its transaction opens, so only the good ones open one
    assert rig.transactions == 1 + 2
    assert rig.positions() == [(3, 3), (2, 2)]
    assert rig.profile("anonymous_id", "a").features == {"pages": 2}
    assert rig.profile("anonymous_id", "b").features == {"pages": 2}
    assert "partition 0" in caplog.text and "partition 1 failed" not in caplog.text


def test_an_unavailable_store_commits_no_partition(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.send(0, page(1, anonymous_id="a"))
    rig.send(1, page(1, anonymous_id="b"))

    def refuse() -> AbstractContextManager[ProfileWriter]:
        raise Unavailable("disk full")

    monkeypatch.setattr(rig.store, "transaction", refuse)
    with pytest.raises(Unavailable):
        rig.processor.run_once()
    assert rig.positions() == [(0, 1), (0, 1)]
    monkeypatch.undo()
    assert rig.processor.run_once() == 2
    assert rig.store.count() == 2
