"""Redis-specific behaviour of the event log: stream layout, consumer groups (pending
entries, claims, acknowledgements), dedup in Redis and in PostgreSQL, a resent append,
chunked erasure, and a private `redis-server` killed and restarted under the log."""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests import servers
from touchpoint.core.config_stores import RedisConfig
from touchpoint.core.errors import DefinitionError, Unavailable
from touchpoint.core.postgres import Postgres
from touchpoint.core.redis import RedisService
from touchpoint.log import redis as module
from touchpoint.log.base import LogRecord, LogRewrite, partition_for
from touchpoint.log.redis import RedisEventLog
from touchpoint.testing import RedisServer

HOUR = timedelta(hours=1)
REDIS_SERVER = "/usr/bin/redis-server"


def record(message_id: str, key: str = "alice", payload: bytes | None = None) -> LogRecord:
    return LogRecord(key=key, message_id=message_id, payload=payload or message_id.encode())


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def log(redis_service: RedisService) -> Iterator[RedisEventLog]:
    opened = RedisEventLog(redis_service, partitions=2, dedup_window=HOUR)
    yield opened
    opened.close()


def pending(log: RedisEventLog, group: str, partition: int) -> dict[str, int]:
    """XPENDING's summary: pending entries per consumer."""
    summary = log.redis.client.xpending(log.redis.key("log", partition), group)
    return {item["name"].decode(): int(item["pending"]) for item in summary["consumers"]}


# -- layout --------------------------------------------------------------------------------


def test_offsets_are_the_stream_ids_and_count_from_one(log: RedisEventLog) -> None:
    result = log.append([record(f"m{i}") for i in range(3)])
    partition = partition_for("alice", 2)
    assert [position for position in result.positions] == [(partition, n) for n in (1, 2, 3)]
    raw = log.redis.client.xrange(log.redis.key("log", partition))
    assert [entry_id for entry_id, _ in raw] == [b"1-0", b"2-0", b"3-0"]
    assert set(raw[0][1]) == {b"key", b"message_id", b"payload", b"appended_at"}
    assert log.end_offset(partition) == 4 and log.end_offset(1 - partition) == 1


def test_reopening_with_another_partition_count_is_refused(
    log: RedisEventLog, redis_service: RedisService
) -> None:
    with pytest.raises(DefinitionError):
        RedisEventLog(redis_service, partitions=3, dedup_window=HOUR)


def test_a_server_without_aof_is_named_in_a_warning(
    redis_service: RedisService, caplog: pytest.LogCaptureFixture
) -> None:
    appendonly = redis_service.client.config_get("appendonly")["appendonly"]
    with caplog.at_level(logging.WARNING, logger=module.__name__):
        RedisEventLog(redis_service, partitions=1, dedup_window=HOUR)
    warned = any("appendonly no" in message for message in caplog.messages)
    assert warned == (appendonly == "no")


def test_a_resent_append_call_returns_its_first_answer(
    log: RedisEventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py resends a command once when the connection drops: the same token must not
    append twice, nor call the records duplicates."""
    monkeypatch.setattr(module.secrets, "token_hex", lambda size: "same-call")
    batch = [record("a"), record("b", key="bob")]
    first = log._run_append(batch, 1.0, dedup=False)
    assert log._run_append(batch, 1.0, dedup=False) == first
    assert log.count() == 2


def test_redis_dedup_keys_expire_with_the_window(log: RedisEventLog) -> None:
    log.append([record("a")])
    ttl = log.redis.client.pttl(log.redis.key("dedup", "a"))
    assert 0 < ttl <= HOUR.total_seconds() * 1000


def test_erase_scans_streams_and_side_records_in_chunks(
    log: RedisEventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(module, "_ERASE_CHUNK", 3)
    log.append([record(f"m{i}", key=f"k{i % 4}") for i in range(20)])
    entries = [entry for part in range(2) for entry in log.read(part, 0, limit=100)]
    log.rewrite([LogRewrite(e.partition, e.offset, e.key, b"{}") for e in entries[::2]])
    assert log.erase(keys=["k1", "k2"], message_ids=["m0", "m4"]) == 12
    left = sorted(e.message_id for part in range(2) for e in log.read(part, 0, limit=100))
    assert left == sorted(f"m{i}" for i in range(20) if i % 4 == 3 or i in (8, 12, 16))
    assert log.count() == 8


def test_a_read_during_rewrites_sees_every_record_once(log: RedisEventLog) -> None:
    """A rewrite moves an entry from the stream to the side structure in one script, and a
    read takes the stream and the side offsets in one MULTI: never neither, never both."""
    log.append([record(f"m{i}") for i in range(200)])
    partition = partition_for("alice", 2)
    offsets = [entry.offset for entry in log.read(partition, 0, limit=1000)]
    done = threading.Event()

    def rewriter() -> None:
        for start in range(0, len(offsets), 5):
            log.rewrite([LogRewrite(partition, o, "", b"{}") for o in offsets[start : start + 5]])
        done.set()

    worker = threading.Thread(target=rewriter)
    worker.start()
    reads = 0
    while not done.is_set() or reads == 0:
        assert [entry.offset for entry in log.read(partition, 0, limit=1000)] == offsets
        reads += 1
    worker.join()
    assert all(entry.payload == b"{}" for entry in log.read(partition, 0, limit=1000))


# -- consumer groups ---------------------------------------------------------------------


def test_a_failed_batch_stays_pending_and_a_commit_acknowledges_it(log: RedisEventLog) -> None:
    log.append([record(f"m{i}") for i in range(5)])
    partition = partition_for("alice", 2)
    batch = log.poll("processor", "c1", partition, limit=3)
    assert pending(log, "processor", partition) == {"c1": 3}
    assert log.poll("processor", "c1", partition, limit=3) == batch
    log.commit("processor", partition, batch[-1].offset + 1)
    assert pending(log, "processor", partition) == {}
    assert [e.message_id for e in log.poll("processor", "c1", partition)] == ["m3", "m4"]


def test_claim_moves_a_dead_consumers_entries_then_new_ones_follow(log: RedisEventLog) -> None:
    log.append([record(f"m{i}") for i in range(4)])
    partition = partition_for("alice", 2)
    died_with = log.poll("processor", "c1", partition, limit=3)
    assert log.claim("processor", "c2", partition) == 3
    assert pending(log, "processor", partition) == {"c2": 3}
    assert log.claim("processor", "c2", partition) == 0  # its own entries do not count
    log.append([record("m4")])
    first = log.poll("processor", "c2", partition, limit=3)
    assert first == died_with
    log.commit("processor", partition, first[-1].offset + 1)
    after = log.poll("processor", "c2", partition, limit=10)
    assert [entry.message_id for entry in after] == ["m3", "m4"]
    log.commit("processor", partition, after[-1].offset + 1)
    assert pending(log, "processor", partition) == {}
    assert log.redis.client.xpending(log.redis.key("log", partition), "processor")["pending"] == 0


def test_rewritten_entries_survive_a_claim_and_are_acknowledged(log: RedisEventLog) -> None:
    """XCLAIM drops deleted entries from the PEL: a rewritten one must still move."""
    log.append([record(f"m{i}") for i in range(3)])
    partition = partition_for("alice", 2)
    died_with = log.poll("processor", "c1", partition, limit=3)
    log.rewrite([LogRewrite(partition, died_with[1].offset, "", b"anon")])
    assert log.claim("processor", "c2", partition) == 3
    taken = log.poll("processor", "c2", partition, limit=10)
    assert [(entry.message_id, entry.payload) for entry in taken] == [
        ("m0", b"m0"),
        ("m1", b"anon"),
        ("m2", b"m2"),
    ]
    side_pending = log.redis.key("log", partition, "side-pending", "processor")
    assert log.redis.client.hgetall(side_pending) == {str(taken[1].offset).encode(): b"c2"}
    log.commit("processor", partition, taken[-1].offset + 1)
    assert log.redis.client.exists(side_pending) == 0
    assert pending(log, "processor", partition) == {}


def test_a_group_starts_at_its_committed_position(log: RedisEventLog) -> None:
    log.append([record(f"m{i}") for i in range(5)])
    partition = partition_for("alice", 2)
    log.commit("processor", partition, 3)  # a read-based consumer got this far
    assert [e.message_id for e in log.poll("processor", "c1", partition)] == ["m2", "m3", "m4"]


def test_wait_for_append_hears_another_process(
    log: RedisEventLog, redis_service: RedisService
) -> None:
    other = RedisEventLog(redis_service, partitions=2, dedup_window=HOUR)
    assert log.wait_for_append(0.01) is False
    other.append([record("a")])
    assert log.wait_for_append(5.0) is True
    assert log.wait_for_append(0.01) is False


# -- dedup in PostgreSQL -----------------------------------------------------------------


def dedup_keys(postgres: Postgres) -> dict[str, float]:
    with postgres.connection("test") as connection:
        rows = connection.execute("SELECT message_id, seen_at FROM dedup_keys").fetchall()
    return {str(row[0]): float(str(row[1])) for row in rows}


def test_postgres_dedup_keeps_keys_there_and_prunes_expired_ones(
    redis_service: RedisService, postgres: Postgres
) -> None:
    clock = FakeClock()
    log = RedisEventLog(
        redis_service,
        partitions=2,
        dedup_window=timedelta(seconds=10),
        postgres=postgres,
        clock=clock,
        prune_interval=3600,
    )
    assert log.append([record("a"), record("b"), record("a")]).duplicates == 1
    assert dedup_keys(postgres) == {"a": clock.now, "b": clock.now}
    assert redis_service.client.exists(redis_service.key("dedup", "a")) == 0
    clock.now += 11
    assert log.append([record("b")]).appended == 1  # expired: a new window
    assert dedup_keys(postgres) == {"a": clock.now - 11, "b": clock.now}
    assert log.prune_dedup() == 1
    assert set(dedup_keys(postgres)) == {"b"}


def test_postgres_dedup_prunes_now_and_then_on_append(
    redis_service: RedisService, postgres: Postgres
) -> None:
    clock = FakeClock()
    log = RedisEventLog(
        redis_service,
        partitions=1,
        dedup_window=timedelta(seconds=10),
        postgres=postgres,
        clock=clock,
        prune_interval=60,
    )
    log.append([record("old")])
    clock.now += 30
    log.append([record("young")])
    assert set(dedup_keys(postgres)) == {"old", "young"}  # not pruned on every call
    clock.now += 31
    log.append([record("new")])
    assert set(dedup_keys(postgres)) == {"new"}


# -- a private redis-server, killed and restarted ---------------------------------------


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A `redis-server` of this test's own, with AOF, in its temporary directory."""
    if shutil.which(REDIS_SERVER) is None:
        if servers.in_ci():
            pytest.fail(f"{REDIS_SERVER} is missing")
        pytest.skip(f"{REDIS_SERVER} is missing")
    server = RedisServer(tmp_path, binary=REDIS_SERVER).start()
    yield server
    server.stop()


@pytest.mark.parametrize("dedup", ["redis", "postgres"])
def test_redis_down_is_unavailable_and_a_restart_keeps_what_was_acknowledged(
    private_redis: RedisServer, request: pytest.FixtureRequest, dedup: str
) -> None:
    postgres = request.getfixturevalue("postgres") if dedup == "postgres" else None
    service = RedisService(RedisConfig(url=private_redis.url, prefix="h3"))
    log = RedisEventLog(service, partitions=2, dedup_window=HOUR, postgres=postgres)
    acknowledged = [record(f"m{i}", key=f"k{i % 3}") for i in range(30)]
    for start in range(0, 30, 10):
        assert log.append(acknowledged[start : start + 10]).appended == 10
    log.rewrite([LogRewrite(partition_for("k0", 2), 1, "", b"anon")])

    private_redis.kill()
    with pytest.raises(Unavailable):
        log.append([record("while-down")])
    with pytest.raises(Unavailable):
        log.read(0, 0)
    assert log.wait_for_append(0.01) is False  # a hint: Redis down reads as "nothing"
    if postgres is not None:
        assert "while-down" not in dedup_keys(postgres)  # rolled back with the append

    private_redis.start()
    stored = {e.message_id for part in range(2) for e in log.read(part, 0, limit=100)}
    assert stored == {item.message_id for item in acknowledged}
    assert log.count() == 30
    again = log.append([record("while-down"), record("m3")])
    assert [position is None for position in again.positions] == [False, True]
    service.close()
