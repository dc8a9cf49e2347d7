"""The `Leases` contract (membership and partition leases of consumer groups), run against
every backend: SQLite (in the log's file; two instances on one file are two processes of
one machine, on one fake clock) and Redis (on the test's own key prefix; the server's
clock, so time passes by sleeping past short TTLs).

What a consumer runtime relies on: a lease is held by one member at a time; its holder
renews it; it expires `ttl` after the last renewal and is then free for another; only its
holder releases it; a member that stops heartbeating drops out of the group; leaving
releases everything the member held and nothing else; groups are independent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.contract.conftest import FakeClock
from touchpoint.core.redis import RedisService
from touchpoint.log.leases.base import Leases
from touchpoint.log.leases.redis import RedisLeases
from touchpoint.log.leases.sqlite import SqliteLeases

GROUP = "profiles"
TTL = 0.4  # seconds; `wait(TTL * 2)` is past any lease or membership taken before it


@dataclass
class Backend:
    """Two handles on one lease store (as two processes have), and how to let time pass."""

    first: Leases
    second: Leases
    wait: Callable[[float], None]


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    clock = FakeClock()
    path = tmp_path / "log.sqlite3"
    return Backend(SqliteLeases(path, clock=clock), SqliteLeases(path, clock=clock), clock.advance)


def _redis(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    service: RedisService = request.getfixturevalue("redis_service")
    return Backend(RedisLeases(service), RedisLeases(service), time.sleep)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Backend]] = {
    "sqlite": _sqlite,
    "redis": _redis,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    opened = BACKENDS[request.param](request, tmp_path)
    yield opened
    opened.first.close()
    opened.second.close()


def test_a_free_lease_is_acquired_and_renewed_by_its_holder(backend: Backend) -> None:
    leases = backend.first
    assert leases.acquire(GROUP, 0, "a", TTL)
    assert leases.acquire(GROUP, 0, "a", TTL)  # a renewal
    assert backend.second.owners(GROUP) == {0: "a"}


def test_a_held_lease_is_refused_to_another_member(backend: Backend) -> None:
    assert backend.first.acquire(GROUP, 3, "a", TTL)
    assert not backend.second.acquire(GROUP, 3, "b", TTL)
    assert backend.first.owners(GROUP) == {3: "a"}


def test_renewing_keeps_a_lease_past_its_first_ttl(backend: Backend) -> None:
    assert backend.first.acquire(GROUP, 1, "a", TTL)
    for _ in range(3):
        backend.wait(TTL / 2)
        assert backend.first.acquire(GROUP, 1, "a", TTL)
        assert not backend.second.acquire(GROUP, 1, "b", TTL)
    assert backend.second.owners(GROUP) == {1: "a"}


def test_an_expired_lease_is_free_for_another_member(backend: Backend) -> None:
    assert backend.first.acquire(GROUP, 2, "a", TTL)
    backend.wait(TTL * 2)
    assert backend.first.owners(GROUP) == {}  # expired: nobody holds it
    assert backend.second.acquire(GROUP, 2, "b", TTL)
    assert not backend.first.acquire(GROUP, 2, "a", TTL)  # the old holder cannot renew
    assert backend.first.owners(GROUP) == {2: "b"}


def test_only_the_holder_releases_a_lease(backend: Backend) -> None:
    assert backend.first.acquire(GROUP, 0, "a", TTL)
    backend.second.release(GROUP, 0, "b")
    assert backend.first.owners(GROUP) == {0: "a"}
    backend.first.release(GROUP, 0, "a")
    assert backend.first.owners(GROUP) == {}
    assert backend.second.acquire(GROUP, 0, "b", TTL)
    backend.first.release(GROUP, 0, "a")  # no longer its: nothing happens
    assert backend.second.owners(GROUP) == {0: "b"}


def test_members_are_the_live_ones_sorted(backend: Backend) -> None:
    assert backend.first.heartbeat(GROUP, "m-b", TTL) == ["m-b"]
    assert backend.second.heartbeat(GROUP, "m-a", TTL * 10) == ["m-a", "m-b"]
    backend.wait(TTL * 2)  # m-b stopped heartbeating
    assert backend.second.heartbeat(GROUP, "m-a", TTL * 10) == ["m-a"]
    assert backend.first.heartbeat(GROUP, "m-b", TTL) == ["m-a", "m-b"]  # back again


def test_leaving_releases_the_members_leases_and_nothing_else(backend: Backend) -> None:
    backend.first.heartbeat(GROUP, "a", TTL * 10)
    backend.second.heartbeat(GROUP, "b", TTL * 10)
    assert backend.first.acquire(GROUP, 0, "a", TTL * 10)
    assert backend.first.acquire(GROUP, 1, "a", TTL * 10)
    assert backend.second.acquire(GROUP, 2, "b", TTL * 10)
    backend.first.leave(GROUP, "a")
    assert backend.second.owners(GROUP) == {2: "b"}
    assert backend.second.heartbeat(GROUP, "b", TTL * 10) == ["b"]
    assert backend.second.acquire(GROUP, 0, "b", TTL)


def test_groups_are_independent(backend: Backend) -> None:
    assert backend.first.acquire("profiles", 0, "a", TTL)
    assert backend.second.acquire("warehouse", 0, "b", TTL)
    backend.first.heartbeat("profiles", "a", TTL)
    assert backend.second.heartbeat("warehouse", "b", TTL) == ["b"]
    assert backend.first.owners("profiles") == {0: "a"}
    assert backend.first.owners("warehouse") == {0: "b"}


def test_group_names_are_taken_literally(backend: Backend) -> None:
    """A group's name is data, not a pattern: `web[1]` and `web*` are not `web1`."""
    assert backend.first.acquire("web1", 0, "a", TTL)
    assert backend.second.acquire("web[1]", 1, "b", TTL)
    assert backend.second.acquire("web*", 2, "c", TTL)
    assert backend.first.owners("web[1]") == {1: "b"}
    assert backend.first.owners("web*") == {2: "c"}
    assert backend.first.owners("web1") == {0: "a"}


def test_two_members_racing_never_both_hold_a_partition(backend: Backend) -> None:
    rounds = 40
    won: dict[str, list[int]] = {"a": [], "b": []}
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def race(leases: Leases, member: str) -> None:
        try:
            for partition in range(rounds):
                start.wait()
                if leases.acquire(GROUP, partition, member, TTL * 100):
                    won[member].append(partition)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)
            start.abort()

    threads = [
        threading.Thread(target=race, args=(backend.first, "a")),
        threading.Thread(target=race, args=(backend.second, "b")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(won["a"] + won["b"]) == list(range(rounds))  # each exactly once
    owners = backend.first.owners(GROUP)
    assert owners == {p: ("a" if p in won["a"] else "b") for p in range(rounds)}
