"""The collector's two halves: `prepare` (CPU only) and `commit` (the durable writes)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
import pytest

from tests.conftest import STRICT_KEY, TEST_CONFIG, WRITE_KEY
from touchpoint.collect.ingest import Collector
from touchpoint.collect.rejected.base import NewRejected
from touchpoint.config.workspace import parse_config
from touchpoint.core.config_sources import IdentityVerificationConfig, SourceConfig
from touchpoint.core.identity_verification import user_hash
from touchpoint.log.base import AppendResult, LogRecord
from touchpoint.profiles.pii import IdentityHasher

NOW = datetime(2026, 11, 24, 12, 0, 0, 123_456, tzinfo=UTC)
HASHER = IdentityHasher("test-hash-secret-0123456789")


class RecordingLog:
    """Takes appends (the first of each message id) once `open`; refuses them before."""

    def __init__(self) -> None:
        self.open = False
        self.records: list[LogRecord] = []

    def append(self, records: Sequence[LogRecord]) -> AppendResult:
        assert self.open, "prepare must not write"
        known = {record.message_id for record in self.records}
        positions: list[tuple[int, int] | None] = []
        for record in records:
            if record.message_id in known:
                positions.append(None)
                continue
            known.add(record.message_id)
            self.records.append(record)
            positions.append((0, len(self.records) - 1))
        return AppendResult(tuple(positions))


class RecordingRejected:
    def __init__(self) -> None:
        self.open = False
        self.items: list[NewRejected] = []

    def add(self, items: Sequence[NewRejected]) -> list[int]:
        assert self.open, "prepare must not write"
        self.items.extend(items)
        return list(range(len(items)))


def collector() -> tuple[Collector, RecordingLog, RecordingRejected]:
    log, rejected = RecordingLog(), RecordingRejected()
    built = Collector(
        parse_config(TEST_CONFIG),
        log,  # type: ignore[arg-type]
        rejected,  # type: ignore[arg-type]
        HASHER,
        clock=lambda: NOW,
    )
    return built, log, rejected


def built_source(name: str) -> SourceConfig:
    """The test config's source `web` (tracking plan: flag) or `strict` (enforce)."""
    source = parse_config(TEST_CONFIG).source_by_key({"web": WRITE_KEY, "strict": STRICT_KEY}[name])
    assert source is not None
    return source


MESSAGES = [
    {"type": "track", "messageId": "m1", "anonymousId": "a1", "event": "Clicked"},
    {"type": "launch", "userId": "u"},
    {"type": "identify", "messageId": "m2", "userId": "u", "traits": {"email": "A@B.c"}},
    {"type": "track", "messageId": "m3", "userId": "u", "event": "Order Completed"},
    {"type": "track", "messageId": "m1", "anonymousId": "a1", "event": "Clicked"},
]


def test_prepare_builds_records_and_rejections_without_writing() -> None:
    built, log, rejected = collector()
    source = built_source("web")
    prepared = built.prepare(source, MESSAGES, batch_context={"ip": "1.2.3.4"})
    assert (log.records, rejected.items) == ([], [])
    assert prepared.record_indexes == [0, 2, 3, 4]
    assert [record.message_id for record in prepared.records] == ["m1", "m2", "m3", "m1"]
    assert [record.key for record in prepared.records] == ["a1", "u", "u", "a1"]
    stored = [orjson.loads(record.payload) for record in prepared.records]
    assert {event["receivedAt"] for event in stored} == {"2026-11-24T12:00:00.123Z"}
    assert all(event["context"] == {"ip": "1.2.3.0"} for event in stored)  # truncated /24
    assert stored[1]["traits"]["email"] == HASHER.hash("email", "a@b.c")
    assert [problem.index for problem in prepared.rejected] == [1]
    assert [problem.index for problem in prepared.flagged] == [3]  # revenue is required
    assert [item.received_at for item in prepared.to_store] == ["2026-11-24T12:00:00.123Z"]


def test_commit_writes_what_prepare_built_and_reports_it() -> None:
    built, log, rejected = collector()
    prepared = built.prepare(built_source("web"), MESSAGES)
    log.open = rejected.open = True
    result = built.commit(prepared)
    assert (result.accepted, result.duplicates) == (3, 1)
    assert result.accepted_indexes == (0, 2, 3)
    assert [record.message_id for record in log.records] == ["m1", "m2", "m3"]
    assert [item.reason for item in rejected.items] == ["invalid"]
    assert result.to_dict()["rejected"][0]["errors"][0]["field"] == "type"


def test_collect_is_prepare_then_commit() -> None:
    first, first_log, first_rejected = collector()
    second, second_log, second_rejected = collector()
    for log, rejected in ((first_log, first_rejected), (second_log, second_rejected)):
        log.open = rejected.open = True
    source = built_source("strict")
    direct = first.collect(source, MESSAGES)
    split = second.commit(second.prepare(source, MESSAGES))
    assert direct == split
    assert first_log.records == second_log.records
    assert first_rejected.items == second_rejected.items
    assert [item.reason for item in first_rejected.items] == ["invalid", "tracking_plan"]


@pytest.mark.parametrize("store", [True, False])
def test_commit_stores_rejections_only_when_asked(store: bool) -> None:
    built, log, rejected = collector()
    log.open = rejected.open = True
    built.commit(built.prepare(built_source("web"), MESSAGES), store_rejections=store)
    assert len(rejected.items) == (1 if store else 0)


def test_a_source_verifying_identities_rejects_unsigned_user_ids_and_marks_what_it_keeps() -> None:
    built, _, _ = collector()
    secret = "site-identity-secret-0123"
    site = SourceConfig(
        name="site",
        write_key="wk_site_0123456",
        allow_client_decisions=True,
        identity_verification=IdentityVerificationConfig(secret=secret),
    )
    messages = [
        {"type": "identify", "messageId": "s1", "anonymousId": "a1", "userId": "u1"},
        {"type": "identify", "messageId": "s2", "userId": "u1", "context": {"user_hash": "00"}},
        {"type": "track", "messageId": "s3", "anonymousId": "a1", "event": "Clicked"},
        {
            "type": "identify",
            "messageId": "s4",
            "userId": "u1",
            "identityVerified": False,
            "context": {"user_hash": user_hash(secret, "u1"), "ip": "1.2.3.4"},
        },
    ]
    prepared = built.prepare(site, messages)
    assert [(p.index, p.reason) for p in prepared.rejected] == [
        (0, "identity_not_verified"),
        (1, "identity_not_verified"),
    ]
    assert {p.errors[0]["field"] for p in prepared.rejected} == {"context.user_hash"}
    kept = [orjson.loads(record.payload) for record in prepared.records]
    assert [event["identityVerified"] for event in kept] == [True, True]
    assert kept[1]["context"] == {"ip": "1.2.3.0"}  # the signature is not stored; ip /24
    # A source that opts out (or never lets pages decide) takes them unsigned, unmarked.
    opted_out = site.model_copy(
        update={"identity_verification": IdentityVerificationConfig(secret=secret, events=False)}
    )
    for source in (opted_out, built_source("web")):
        plain = built.prepare(source, messages)
        assert not plain.rejected
        assert all("identityVerified" not in orjson.loads(r.payload) for r in plain.records)
