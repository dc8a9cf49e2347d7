"""The generic consumer runtime with test handlers on a real SQLite event log: commit after
handle, retries that skip nothing, poison isolation, the follow bound, accumulation,
periodic work, partition sharing, and groups that never wait for each other."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from touchpoint.consumers.consumer import LogConsumer
from touchpoint.consumers.handler import Accumulate, Handler
from touchpoint.consumers.host import LoopHost
from touchpoint.core.errors import Unavailable
from touchpoint.log.base import LogEntry, LogRecord
from touchpoint.log.coordination import PartitionCoordinator
from touchpoint.log.leases.sqlite import SqliteLeases
from touchpoint.log.sqlite import SqliteEventLog


class Recorder:
    """Records what it is handed; raises on the payloads it is told are poison, or
    `Unavailable` while `refuse` is set; checks its group had not committed them yet."""

    def __init__(
        self, log: SqliteEventLog, group: str = "test", follows: str | None = None
    ) -> None:
        self.log = log
        self.name = group
        self.group = group
        self.follows = follows
        self.seen: list[str] = []
        self.calls = 0
        self.poison: set[bytes] = set()
        self.refuse = False

    def handle(self, entries: Sequence[LogEntry]) -> None:
        self.calls += 1
        for entry in entries:
            assert entry.offset >= self.log.committed(self.group, entry.partition)
        if self.refuse:
            raise Unavailable("store down")
        if any(entry.payload in self.poison for entry in entries):
            raise ValueError("poison")
        self.seen += [entry.message_id for entry in entries]


@pytest.fixture
def log(tmp_path: Path) -> Iterator[SqliteEventLog]:
    opened = SqliteEventLog(tmp_path / "log.sqlite3", partitions=2, dedup_window=timedelta(hours=1))
    yield opened
    opened.close()


def send(log: SqliteEventLog, *message_ids: str, key: str = "k") -> None:
    log.append([LogRecord(key, message_id, message_id.encode()) for message_id in message_ids])


def keys_per_partition(log: SqliteEventLog) -> dict[int, str]:
    found: dict[int, str] = {}
    index = 0
    while len(found) < log.partitions:
        found.setdefault(log.partition_for(f"k{index}"), f"k{index}")
        index += 1
    return found


def test_a_handled_batch_is_committed_after_handle_returns(log: SqliteEventLog) -> None:
    handler = Recorder(log)
    consumer = LogConsumer(log, handler)
    assert isinstance(handler, Handler)
    send(log, "m1", "m2", "m3")
    assert consumer.run_once() == 3 and handler.seen == ["m1", "m2", "m3"]
    assert sum(consumer.lag().values()) == 0 and consumer.idle()
    assert consumer.run_once() == 0 and handler.calls == 1
    assert consumer.handled == 3 and consumer.last_handled_at > 0


def test_unavailable_retries_the_whole_batch_and_skips_nothing(log: SqliteEventLog) -> None:
    handler = Recorder(log)
    consumer = LogConsumer(log, handler)
    send(log, "m1", "m2")
    handler.refuse = True
    with pytest.raises(Unavailable):
        consumer.run_once()
    assert handler.seen == [] and not consumer.idle() and consumer.failed == 0
    handler.refuse = False
    assert consumer.run_once() == 2 and handler.seen == ["m1", "m2"]


def test_poison_isolation_skips_exactly_the_bad_entry(log: SqliteEventLog) -> None:
    keys = keys_per_partition(log)
    handler = Recorder(log)
    handler.poison = {b"bad"}
    consumer = LogConsumer(log, handler)
    send(log, "a1", "bad", "a2", key=keys[0])
    send(log, "b1", "b2", key=keys[1])
    assert consumer.run_once() == 5
    assert sorted(handler.seen) == ["a1", "a2", "b1", "b2"]
    assert consumer.failed == 1 and consumer.idle()


def test_a_follower_reads_only_below_the_followed_group_s_position(log: SqliteEventLog) -> None:
    leader = LogConsumer(log, Recorder(log, "leader"))
    follower_handler = Recorder(log, "follower", follows="leader")
    follower = LogConsumer(log, follower_handler)
    send(log, "m1", "m2", "m3")
    assert follower.run_once() == 0 and follower.idle()
    partition = log.partition_for("k")
    second = log.read(partition, 0, 10)[1]
    log.commit("leader", partition, second.offset)  # the leader handled one entry only
    assert follower.run_once() == 1 and follower_handler.seen == ["m1"]
    assert leader.run_once() == 2  # from the leader's position: m2, m3
    assert follower.run_once() == 2 and follower_handler.seen == ["m1", "m2", "m3"]
    with pytest.raises(ValueError):
        LogConsumer(log, Recorder(log, "self", follows="self"))


class Batched(Recorder):
    """A recorder that wants its entries in batches of 4, or once the oldest is 60 s old."""

    accumulate = Accumulate(min_entries=4, max_age_seconds=60.0)


def test_an_accumulating_handler_waits_for_enough_or_old_enough_entries(
    log: SqliteEventLog,
) -> None:
    now = [time.time()]
    handler = Batched(log)
    consumer = LogConsumer(log, handler, time=lambda: now[0])
    send(log, "m1", "m2")
    assert consumer.run_once() == 0 and handler.calls == 0 and not consumer.idle()
    send(log, "m3", "m4")
    assert consumer.run_once() == 4 and handler.calls == 1
    send(log, "m5")
    assert consumer.run_once() == 0
    now[0] += 61
    assert consumer.run_once() == 1 and handler.seen[-1] == "m5"


class Periodic(Recorder):
    tick_seconds = 0.05

    def __init__(self, log: SqliteEventLog) -> None:
        super().__init__(log)
        self.ticks = 0

    def tick(self) -> int:
        self.ticks += 1
        return 1


def test_periodic_work_runs_between_batches_in_the_consumer_s_thread(
    log: SqliteEventLog,
) -> None:
    handler = Periodic(log)
    consumer = LogConsumer(log, handler, idle_wait_seconds=0.01)
    consumer.start()
    try:
        deadline = time.monotonic() + 10
        while handler.ticks < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        consumer.stop()
    assert handler.ticks >= 2
    assert LogConsumer(log, Recorder(log, "plain")).tick() == 0


def test_two_consumers_of_one_group_share_the_partitions(
    log: SqliteEventLog, tmp_path: Path
) -> None:
    leases = SqliteLeases(log.path)
    try:
        handlers = [Recorder(log), Recorder(log)]
        consumers = [LogConsumer(log, handler) for handler in handlers]
        coordinators = [
            PartitionCoordinator(leases, group="test", partitions=2, member=name, ttl=5)
            for name in ("a", "b")
        ]
        for consumer, coordinator in zip(consumers, coordinators, strict=True):
            consumer.coordinate(coordinator)
        for coordinator in (*coordinators, *coordinators):
            coordinator.refresh(force=True)
        keys = keys_per_partition(log)
        send(log, "x1", "x2", key=keys[0])
        send(log, "y1", key=keys[1])
        for _ in range(3):
            for consumer in consumers:
                consumer.run_once()
        assert {len(consumer.partitions) for consumer in consumers} == {1}
        assert sorted(handlers[0].seen + handlers[1].seen) == ["x1", "x2", "y1"]
        assert handlers[0].seen and handlers[1].seen
        with pytest.raises(ValueError):
            consumers[0].coordinate(
                PartitionCoordinator(leases, group="other", partitions=2, member="c")
            )
    finally:
        leases.close()


class Blocking(Recorder):
    """A slow handler (an SMTP server that hangs): blocks until released."""

    def __init__(self, log: SqliteEventLog, group: str) -> None:
        super().__init__(log, group)
        self.release = threading.Event()
        self.entered = threading.Event()

    def handle(self, entries: Sequence[LogEntry]) -> None:
        self.entered.set()
        self.release.wait(30)
        super().handle(entries)


def test_a_blocked_group_does_not_delay_another(log: SqliteEventLog) -> None:
    fast = Recorder(log, "profiles")
    slow = Blocking(log, "email")
    host = LoopHost(
        [
            LogConsumer(log, fast, idle_wait_seconds=0.01),
            LogConsumer(log, slow, idle_wait_seconds=0.01),
        ]
    )
    host.start()
    try:
        send(log, "m1")
        assert slow.entered.wait(10)
        assert host.consumer("profiles").wait_idle(10) and fast.seen == ["m1"]
        send(log, "m2", "m3")
        assert host.consumer("profiles").wait_idle(10) and fast.seen == ["m1", "m2", "m3"]
        assert slow.seen == [] and not host.consumer("email").idle()
        slow.release.set()
        assert host.wait_idle(10)
        assert slow.seen == ["m1", "m2", "m3"]
        assert host.failing() == [] and host.running
    finally:
        slow.release.set()
        host.stop()
    assert not host.running


def test_the_host_reports_a_failing_loop_and_refuses_two_of_a_name(log: SqliteEventLog) -> None:
    broken = Recorder(log, "broken")
    broken.refuse = True
    consumer = LogConsumer(log, broken, idle_wait_seconds=0.01)
    host = LoopHost([consumer])
    with pytest.raises(ValueError):
        host.add(LogConsumer(log, Recorder(log, "broken")))
    send(log, "m1")
    host.start()
    try:
        deadline = time.monotonic() + 10
        while not host.failing() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert host.failing() == [consumer]
        assert consumer.failure is not None and "store down" in consumer.failure
        broken.refuse = False
        assert consumer.wait_idle(10) and broken.seen == ["m1"]
    finally:
        host.stop()
    assert host.failing() == []
    with pytest.raises(KeyError):
        host.consumer("nobody")


class Slow(Recorder):
    """Takes 5 ms a batch, whatever its size (a round trip to a server)."""

    def handle(self, entries: Sequence[LogEntry]) -> None:
        time.sleep(0.005)
        super().handle(entries)


def test_a_running_follower_rests_between_small_batches_instead_of_chasing_each_commit(
    log: SqliteEventLog,
) -> None:
    """The followed group commits an entry every 2 ms, faster than the follower's 5 ms
    batches: the follower reads at most about once per `idle_wait_seconds`, each time what
    gathered meanwhile (without the rest it would read every few entries, a hundred times a
    second)."""
    leader = LogConsumer(log, Recorder(log, "leader"))
    follower_handler = Slow(log, "follower", follows="leader")
    follower = LogConsumer(log, follower_handler, idle_wait_seconds=0.2)
    follower.start()
    try:
        started = time.monotonic()
        sent = 0
        while time.monotonic() - started < 1.0:
            send(log, f"m{sent}")
            sent += 1
            leader.run_once()
            time.sleep(0.002)
        assert follower.wait_idle(5)
    finally:
        follower.stop()
    assert len(follower_handler.seen) == sent > 100
    assert follower_handler.calls <= 12  # 1 s of commits, read in a handful of batches
