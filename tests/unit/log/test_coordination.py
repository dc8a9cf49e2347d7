"""Workers sharing partitions: membership, leases and the balanced assignment, on the
SQLite leases (fake clock) and the Redis ones (the server's clock, short TTLs)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.contract.conftest import FakeClock
from touchpoint.core.redis import RedisService
from touchpoint.log.coordination import PartitionCoordinator
from touchpoint.log.leases.base import Leases
from touchpoint.log.leases.redis import RedisLeases
from touchpoint.log.leases.sqlite import SqliteLeases

GROUP = "profiles"


@pytest.fixture(params=["sqlite", "redis"])
def leases_and_wait(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Leases, Callable[[float], None]]]:
    """Leases, and how to let `seconds` pass for them."""
    if request.param == "sqlite":
        clock = FakeClock()
        sqlite = SqliteLeases(tmp_path / "log.sqlite3", clock=clock)
        yield sqlite, clock.advance
        sqlite.close()
    else:
        service: RedisService = request.getfixturevalue("redis_service")
        yield RedisLeases(service), time.sleep


def _coordinator(leases: Leases, member: str, ttl: float = 0.4) -> PartitionCoordinator:
    return PartitionCoordinator(leases, group=GROUP, partitions=8, member=member, ttl=ttl)


def test_a_lone_member_owns_every_partition(leases_and_wait) -> None:
    leases, _ = leases_and_wait
    solo = _coordinator(leases, "a")
    gained, lost = solo.refresh(force=True)
    assert solo.owned == set(range(8)) == gained
    assert not lost
    assert leases.owners(GROUP) == dict.fromkeys(range(8), "a")


def test_two_members_split_the_partitions_without_overlap(leases_and_wait) -> None:
    leases, _ = leases_and_wait
    a, b = _coordinator(leases, "a"), _coordinator(leases, "b")
    a.refresh(force=True)
    b.refresh(force=True)  # b joins: a still holds everything, b gets nothing yet
    assert b.owned == set()
    a.refresh(force=True)  # a sees b and hands over b's half
    b.refresh(force=True)
    assert a.owned == {0, 2, 4, 6}
    assert b.owned == {1, 3, 5, 7}
    assert not a.owned & b.owned


def test_a_member_that_leaves_hands_over_at_once(leases_and_wait) -> None:
    leases, _ = leases_and_wait
    a, b = _coordinator(leases, "a"), _coordinator(leases, "b")
    for member in (a, b, a, b):
        member.refresh(force=True)
    b.leave()
    gained, _ = a.refresh(force=True)
    assert gained == {1, 3, 5, 7}
    assert a.owned == set(range(8))


def test_a_dead_member_s_partitions_move_after_the_ttl(leases_and_wait) -> None:
    leases, wait = leases_and_wait
    a, b = _coordinator(leases, "a"), _coordinator(leases, "b")
    for member in (a, b, a, b):
        member.refresh(force=True)
    # b dies: it stops heartbeating and renewing. Before its TTL runs out, a cannot take
    # b's partitions even though a now thinks it should.
    wait(0.2)
    a.refresh(force=True)
    assert a.owned == {0, 2, 4, 6}
    wait(0.5)
    a.refresh(force=True)
    assert a.owned == set(range(8))
    assert set(leases.owners(GROUP).values()) == {"a"}


def test_a_held_lease_is_refused_and_released_only_by_its_owner(leases_and_wait) -> None:
    leases, _ = leases_and_wait
    assert leases.acquire(GROUP, 3, "a", 5.0)
    assert leases.acquire(GROUP, 3, "a", 5.0)  # renewal
    assert not leases.acquire(GROUP, 3, "b", 5.0)
    leases.release(GROUP, 3, "b")  # not b's to release
    assert leases.owners(GROUP) == {3: "a"}
    leases.release(GROUP, 3, "a")
    assert leases.acquire(GROUP, 3, "b", 5.0)


def test_groups_are_independent(leases_and_wait) -> None:
    leases, _ = leases_and_wait
    assert leases.acquire("profiles", 0, "a", 5.0)
    assert leases.acquire("warehouse", 0, "b", 5.0)
    assert leases.heartbeat("profiles", "a", 5.0) == ["a"]
    assert leases.heartbeat("warehouse", "b", 5.0) == ["b"]


def test_refresh_waits_for_its_interval_unless_forced(tmp_path: Path) -> None:
    leases = SqliteLeases(tmp_path / "log.sqlite3", clock=FakeClock())
    coordinator = PartitionCoordinator(leases, group=GROUP, partitions=2, member="a", ttl=60)
    assert coordinator.refresh() == ({0, 1}, set())
    assert coordinator.refresh() == (set(), set())  # not due: nothing asked of the store
    leases.close()
