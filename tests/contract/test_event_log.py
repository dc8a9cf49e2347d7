"""The EventLog contract, run against every backend (see conftest.BACKENDS).

Only what `touchpoint.log.base` promises is asserted here: offsets strictly
increase per partition (not that they are contiguous or start at 0), dedup is
atomic and durable, positions are per group. Backend details live in tests/unit/log.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from touchpoint.log.base import EventLog, LogEntry, LogRecord, LogRewrite, partition_for

if TYPE_CHECKING:
    from conftest import Backend, FakeClock


def record(message_id: str, key: str = "person-1", body: str | None = None) -> LogRecord:
    payload = (body or f'{{"messageId": "{message_id}"}}').encode()
    return LogRecord(key=key, message_id=message_id, payload=payload)


def read_all(log: EventLog, partition: int) -> list[LogEntry]:
    return log.read(partition, 0, limit=1_000_000)


def all_entries(log: EventLog) -> list[LogEntry]:
    return [entry for part in range(log.partitions) for entry in read_all(log, part)]


def test_append_then_read_returns_records_in_order_with_their_payloads(backends: Backend) -> None:
    log = backends.event_log()
    records = [record(f"m{i}", key="alice", body=f'{{"n": {i}}}') for i in range(5)]
    result = log.append(records)
    partition = partition_for("alice", log.partitions)
    assert result.appended == 5 and result.duplicates == 0
    assert all(position is not None and position[0] == partition for position in result.positions)
    entries = read_all(log, partition)
    assert [entry.message_id for entry in entries] == ["m0", "m1", "m2", "m3", "m4"]
    assert [entry.payload for entry in entries] == [f'{{"n": {i}}}'.encode() for i in range(5)]
    assert all(entry.key == "alice" and entry.partition == partition for entry in entries)
    assert [(entry.partition, entry.offset) for entry in entries] == list(result.positions)
    assert all(entry.appended_at > 0 for entry in entries)


def test_offsets_strictly_increase_per_partition_across_calls(backends: Backend) -> None:
    log = backends.event_log(partitions=3)
    for batch in range(4):
        log.append([record(f"b{batch}-{i}", key=f"k{i}") for i in range(10)])
    for partition in range(log.partitions):
        offsets = [entry.offset for entry in read_all(log, partition)]
        assert offsets == sorted(set(offsets))
        if offsets:
            assert log.end_offset(partition) > offsets[-1]
    assert sum(len(read_all(log, part)) for part in range(log.partitions)) == 40


def test_same_key_same_partition_and_keys_spread(backends: Backend) -> None:
    log = backends.event_log(partitions=4)
    result = log.append([record(f"m{i}", key=f"user-{i % 20}") for i in range(100)])
    by_key: defaultdict[str, set[int]] = defaultdict(set)
    for index, position in enumerate(result.positions):
        assert position is not None
        by_key[f"user-{index % 20}"].add(position[0])
    assert all(len(partitions) == 1 for partitions in by_key.values())
    for key, partitions in by_key.items():
        assert partitions == {log.partition_for(key)} == {partition_for(key, 4)}
    assert len({next(iter(partitions)) for partitions in by_key.values()}) > 1


def test_read_from_offset_and_limit(backends: Backend) -> None:
    log = backends.event_log(partitions=1)
    log.append([record(f"m{i}") for i in range(10)])
    entries = read_all(log, 0)
    middle = log.read(0, entries[4].offset, limit=3)
    assert [entry.message_id for entry in middle] == ["m4", "m5", "m6"]
    assert log.read(0, log.end_offset(0), limit=10) == []


def test_read_rejects_a_partition_out_of_range(backends: Backend) -> None:
    log = backends.event_log(partitions=2)
    with pytest.raises(ValueError):
        log.read(2, 0)


def test_dedup_within_one_call(backends: Backend) -> None:
    log = backends.event_log()
    result = log.append([record("a"), record("b"), record("a", body='{"retry": true}')])
    assert result.appended == 2 and result.duplicates == 1
    assert result.positions[2] is None and result.positions[0] is not None
    (entry,) = [entry for entry in all_entries(log) if entry.message_id == "a"]
    assert entry.payload == b'{"messageId": "a"}'


def test_dedup_across_calls(backends: Backend) -> None:
    log = backends.event_log()
    log.append([record("a"), record("b")])
    again = log.append([record("b"), record("c"), record("a")])
    assert [position is None for position in again.positions] == [True, False, True]
    assert log.count() == 3
    assert sorted(entry.message_id for entry in all_entries(log)) == ["a", "b", "c"]


def test_dedup_survives_reopen(backends: Backend) -> None:
    first = backends.event_log()
    first.append([record("a"), record("b")])
    first.close()
    reopened = backends.event_log()
    result = reopened.append([record("a"), record("c")])
    assert result.positions[0] is None and result.positions[1] is not None
    assert sorted(entry.message_id for entry in all_entries(reopened)) == ["a", "b", "c"]


def test_dedup_window_expires_and_a_reappend_starts_a_new_window(
    backends: Backend, clock: FakeClock
) -> None:
    log = backends.event_log(dedup_window=timedelta(seconds=10), clock=clock)
    assert log.append([record("a")]).appended == 1
    clock.advance(5)
    assert log.append([record("a")]).duplicates == 1
    clock.advance(6)  # 11 s after the first append: outside the window
    assert log.append([record("a")]).appended == 1
    clock.advance(5)  # within the window of the second append
    assert log.append([record("a")]).duplicates == 1
    assert log.count() == 2


def test_commit_and_committed_per_group(backends: Backend) -> None:
    log = backends.event_log(partitions=2)
    log.append([record(f"m{i}", key=f"k{i}") for i in range(10)])
    assert log.committed("processor", 0) == 0
    entries = read_all(log, 0)
    position = entries[-1].offset + 1
    log.commit("processor", 0, position)
    assert log.committed("processor", 0) == position
    assert log.committed("processor", 1) == 0
    assert log.committed("warehouse", 0) == 0
    log.commit("warehouse", 0, entries[0].offset + 1)
    assert log.committed("processor", 0) == position
    assert log.read(0, log.committed("warehouse", 0)) == entries[1:]


def test_commit_many_records_every_partition_at_once(backends: Backend) -> None:
    log = backends.event_log(partitions=3)
    log.commit_many("processor", {0: 4, 2: 9})
    assert [log.committed("processor", p) for p in range(3)] == [4, 0, 9]
    log.commit_many("processor", {})
    with pytest.raises(ValueError):
        log.commit_many("processor", {1: -1})
    assert log.committed("processor", 1) == 0


def test_commit_may_move_back_for_a_replay(backends: Backend) -> None:
    log = backends.event_log(partitions=1)
    log.append([record(f"m{i}") for i in range(3)])
    log.commit("processor", 0, log.end_offset(0))
    log.commit("processor", 0, 0)
    assert log.committed("processor", 0) == 0


def test_commits_survive_reopen(backends: Backend) -> None:
    log = backends.event_log(partitions=2)
    log.append([record("a", key="x")])
    log.commit("processor", 1, 7)
    log.close()
    assert backends.event_log(partitions=2).committed("processor", 1) == 7


def test_lag_is_what_a_group_has_not_committed(backends: Backend) -> None:
    log = backends.event_log(partitions=2)
    log.append([record(f"m{i}", key=f"k{i}") for i in range(20)])
    sizes = {part: len(read_all(log, part)) for part in range(2)}
    assert log.lag("processor") == sizes
    assert log.lag("never-committed") == sizes
    for part in range(2):
        log.commit("processor", part, log.end_offset(part))
    assert log.lag("processor") == {0: 0, 1: 0}
    log.append([record("late", key="k0")])
    assert log.lag("processor")[partition_for("k0", 2)] == 1


def test_an_empty_partition_is_no_lag(backends: Backend) -> None:
    log = backends.event_log(partitions=4)
    assert log.lag("processor") == {0: 0, 1: 0, 2: 0, 3: 0}
    log.append([record("only", key="k0")])
    assert sum(log.lag("processor").values()) == 1


def test_count(backends: Backend) -> None:
    log = backends.event_log()
    assert log.count() == 0
    log.append([record(f"m{i}", key=f"k{i}") for i in range(7)])
    log.append([record("m1"), record("m8")])
    assert log.count() == 8
    assert log.append([]).positions == ()


def test_concurrent_appends_lose_nothing_and_duplicate_nothing(backends: Backend) -> None:
    log = backends.event_log(partitions=4)
    threads, calls, size = 8, 15, 20
    shared = [f"shared-{i}" for i in range(30)]  # every thread "retries" these
    results: dict[int, list[tuple[str, tuple[int, int] | None]]] = defaultdict(list)
    errors: list[BaseException] = []

    def work(thread: int) -> None:
        try:
            for call in range(calls):
                ids = [f"t{thread}-c{call}-{i}" for i in range(size)]
                ids += shared[call * 2 : call * 2 + 2]
                batch = [record(mid, key=f"person-{n % 13}") for n, mid in enumerate(ids)]
                result = log.append(batch)
                results[thread].extend(zip(ids, result.positions, strict=True))
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=work, args=(number,)) for number in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors
    expected = threads * calls * size + len(shared)
    assert log.count() == expected
    logged = Counter(entry.message_id for entry in all_entries(log))
    assert len(logged) == expected and set(logged.values()) == {1}
    placed = Counter(mid for outcome in results.values() for mid, pos in outcome if pos is not None)
    assert placed == logged  # each message accepted by exactly one caller
    positions = [pos for outcome in results.values() for _, pos in outcome if pos is not None]
    assert len(set(positions)) == len(positions)
    for partition in range(log.partitions):
        entries = read_all(log, partition)
        assert [entry.offset for entry in entries] == sorted({entry.offset for entry in entries})
        assert all(log.partition_for(entry.key) == partition for entry in entries)


def test_wait_for_append_wakes_on_an_append_and_times_out_otherwise(backends: Backend) -> None:
    log = backends.event_log()
    started = time.monotonic()
    assert log.wait_for_append(0.05) is False
    assert time.monotonic() - started >= 0.04
    woke: list[bool] = []
    ready = threading.Event()

    def consumer() -> None:
        ready.set()
        woke.append(log.wait_for_append(5.0))

    waiter = threading.Thread(target=consumer)
    waiter.start()
    ready.wait()
    time.sleep(0.02)
    started = time.monotonic()
    log.append([record("a")])
    waiter.join(5.0)
    assert woke == [True]
    assert time.monotonic() - started < 2.0


def test_erase_by_message_id_and_by_key_keeps_dedup(backends: Backend) -> None:
    log = backends.event_log(partitions=2)
    log.append([record("a1", key="alice"), record("a2", key="alice"), record("b1", key="bob")])
    log.append([record("c1", key="carol")])
    assert log.erase(message_ids=["c1", "unknown"], keys=["alice"]) == 3
    assert [entry.message_id for entry in all_entries(log)] == ["b1"]
    assert log.count() == 1
    assert log.append([record("a1", key="alice")]).duplicates == 1  # a retry stays erased
    assert log.erase(message_ids=["a1"], keys=["alice"]) == 0


def test_rewrite_replaces_key_and_payload_in_place(backends: Backend) -> None:
    log = backends.event_log(partitions=2)
    log.append([record("a1", key="alice"), record("a2", key="alice")])
    first = all_entries(log)[0]
    changed = log.rewrite(
        [
            LogRewrite(first.partition, first.offset, "", b'{"anonymized": true}'),
            LogRewrite(first.partition, first.offset + 10_000, "", b"{}"),
        ]
    )
    assert changed == 1
    entries = all_entries(log)
    assert (entries[0].key, entries[0].payload, entries[0].message_id) == (
        "",
        b'{"anonymized": true}',
        "a1",
    )
    assert (entries[0].partition, entries[0].offset) == (first.partition, first.offset)
    assert entries[1].key == "alice"


def test_rewrite_then_read_merges_rewritten_records_in_offset_order(backends: Backend) -> None:
    log = backends.event_log(partitions=1)
    log.append([record(f"m{i}") for i in range(10)])
    entries = read_all(log, 0)
    changes = [LogRewrite(0, entries[i].offset, "", f"anon-{i}".encode()) for i in (2, 3, 7)]
    assert log.rewrite(changes) == 3
    assert log.rewrite(changes[:1]) == 1  # a rewritten record can be rewritten again
    window = log.read(0, entries[1].offset, limit=4)
    assert [entry.message_id for entry in window] == ["m1", "m2", "m3", "m4"]
    assert [entry.payload for entry in window][1:3] == [b"anon-2", b"anon-3"]
    after = read_all(log, 0)
    assert [entry.offset for entry in after] == [entry.offset for entry in entries]
    assert [entry.appended_at for entry in after] == [entry.appended_at for entry in entries]
    assert log.count() == 10


def test_erase_reaches_rewritten_records(backends: Backend) -> None:
    log = backends.event_log(partitions=1)
    log.append([record("a1", key="alice"), record("a2", key="alice"), record("b1", key="bob")])
    first, second, _ = read_all(log, 0)
    log.rewrite([LogRewrite(0, first.offset, "", b"{}"), LogRewrite(0, second.offset, "x", b"")])
    assert log.erase(keys=["alice"]) == 0  # rewritten away from that key
    assert log.erase(message_ids=["a1"], keys=["x"]) == 2
    assert [entry.message_id for entry in read_all(log, 0)] == ["b1"]
    assert log.count() == 1
    assert log.rewrite([LogRewrite(0, first.offset, "", b"{}")]) == 0


def test_poll_returns_uncommitted_entries_again_until_committed(backends: Backend) -> None:
    log = backends.event_log(partitions=1)
    log.append([record(f"m{i}") for i in range(5)])
    batch = log.poll("processor", "c1", 0, limit=3)
    assert [entry.message_id for entry in batch] == ["m0", "m1", "m2"]
    assert log.poll("processor", "c1", 0, limit=3) == batch  # failed: not committed
    log.commit("processor", 0, batch[-1].offset + 1)
    assert log.committed("processor", 0) == batch[-1].offset + 1
    rest = log.poll("processor", "c1", 0, limit=10)
    assert [entry.message_id for entry in rest] == ["m3", "m4"]
    log.commit("processor", 0, rest[-1].offset + 1)
    assert log.poll("processor", "c1", 0) == []
    assert log.poll("warehouse", "w1", 0, limit=10) == batch + rest  # groups are independent


def test_claim_hands_a_dead_consumers_entries_to_the_next_owner_first(backends: Backend) -> None:
    log = backends.event_log(partitions=1)
    log.append([record(f"m{i}") for i in range(5)])
    died_with = log.poll("processor", "c1", 0, limit=3)
    log.claim("processor", "c2", 0)
    log.append([record("late")])
    taken = log.poll("processor", "c2", 0, limit=10)
    assert taken[:3] == died_with
    assert [entry.message_id for entry in taken] == ["m0", "m1", "m2", "m3", "m4", "late"]
    log.commit("processor", 0, taken[-1].offset + 1)
    assert log.poll("processor", "c2", 0) == []
    assert log.lag("processor") == {0: 0}


def test_poll_sees_rewrites_and_not_erased_entries(backends: Backend) -> None:
    log = backends.event_log(partitions=1)
    log.append([record(f"m{i}") for i in range(6)])
    entries = read_all(log, 0)
    delivered = log.poll("processor", "c1", 0, limit=2)
    assert [entry.message_id for entry in delivered] == ["m0", "m1"]
    log.rewrite([LogRewrite(0, entries[i].offset, "", f"anon-{i}".encode()) for i in (1, 3)])
    assert log.erase(message_ids=["m0", "m4"]) == 2
    again = log.poll("processor", "c1", 0, limit=10)
    assert [(entry.message_id, entry.payload) for entry in again] == [
        ("m1", b"anon-1"),
        ("m2", entries[2].payload),
        ("m3", b"anon-3"),
        ("m5", entries[5].payload),
    ]
    assert again == log.read(0, 0, limit=10)
    log.commit("processor", 0, again[-1].offset + 1)
    assert log.poll("processor", "c1", 0) == []


def test_poll_merges_rewritten_records_not_delivered_yet_within_the_limit(
    backends: Backend,
) -> None:
    log = backends.event_log(partitions=1)
    log.append([record(f"m{i}") for i in range(8)])
    entries = read_all(log, 0)
    log.rewrite([LogRewrite(0, entries[i].offset, "", b"{}") for i in (0, 2, 3, 6, 7)])

    def consume() -> list[str]:
        seen: list[str] = []
        for _ in range(10):
            batch = log.poll("processor", "c1", 0, limit=3)
            if not batch:
                return seen
            assert len(batch) <= 3
            seen += [entry.message_id for entry in batch]
            log.commit("processor", 0, batch[-1].offset + 1)
        raise AssertionError("poll never ran dry")

    assert consume() == [f"m{i}" for i in range(8)]
    log.append([record("m8"), record("m9")])  # after a tail of rewritten records
    log.rewrite([LogRewrite(0, read_all(log, 0)[-1].offset, "", b"{}")])
    assert consume() == ["m8", "m9"]


def test_a_commit_back_replays_through_poll(backends: Backend) -> None:
    log = backends.event_log(partitions=1)
    log.append([record(f"m{i}") for i in range(4)])
    entries = read_all(log, 0)
    log.rewrite([LogRewrite(0, entries[1].offset, "", b"{}")])
    everything = log.poll("processor", "c1", 0, limit=10)
    log.commit("processor", 0, everything[-1].offset + 1)
    log.commit("processor", 0, 0)
    assert log.poll("processor", "c1", 0, limit=10) == everything
    log.commit("processor", 0, everything[2].offset)  # skip ahead: the rest only
    log.commit("processor", 0, everything[-1].offset + 1)
    log.commit("processor", 0, everything[2].offset)
    assert log.poll("processor", "c1", 0, limit=10) == everything[2:]
