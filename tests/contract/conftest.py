"""Backends for the event log and rejected-store contract suites.

Each backend knows how to open (and, called again, reopen: a restart) its event log
and its rejected store on storage private to one test. Backends: SQLite (files in the
test's directory), and Redis Streams on the test's own key prefix, with its dedup keys
in Redis ("redis") or in PostgreSQL on the test's own schema ("redis-pg"); the Redis
backends keep rejected events in SQLite (the rejected store has its own suites' backends).
A backend must honour `clock` (epoch seconds) for the dedup window.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import pytest

from touchpoint.collect.rejected.base import RejectedStore
from touchpoint.collect.rejected.sqlite import SqliteRejectedStore
from touchpoint.core.postgres import Postgres
from touchpoint.core.redis import RedisService
from touchpoint.log.base import EventLog
from touchpoint.log.redis import RedisEventLog
from touchpoint.log.sqlite import SqliteEventLog


class FakeClock:
    """A clock tests move by hand (epoch seconds)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Backend(Protocol):
    """What the suites need of a backend: open its stores, again after a restart."""

    name: str

    def event_log(
        self,
        *,
        partitions: int = 4,
        dedup_window: timedelta = timedelta(hours=1),
        clock: Callable[[], float] = time.time,
    ) -> EventLog: ...

    def rejected_store(self) -> RejectedStore: ...

    def close(self) -> None: ...


class SqliteBackend:
    """The embedded backend: files in the test's temporary directory."""

    name = "sqlite"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._opened: list[EventLog | RejectedStore] = []

    def event_log(
        self,
        *,
        partitions: int = 4,
        dedup_window: timedelta = timedelta(hours=1),
        clock: Callable[[], float] = time.time,
    ) -> EventLog:
        log = SqliteEventLog(
            self.directory / "log.sqlite3",
            partitions=partitions,
            dedup_window=dedup_window,
            clock=clock,
        )
        self._opened.append(log)
        return log

    def rejected_store(self) -> RejectedStore:
        store = SqliteRejectedStore(self.directory / "rejected.sqlite3")
        self._opened.append(store)
        return store

    def close(self) -> None:
        for opened in self._opened:
            opened.close()


class RedisBackend(SqliteBackend):
    """The Redis Streams log on this test's key prefix (reopening shares the prefix, as a
    restarted process would), dedup keys in Redis or, given `postgres`, in PostgreSQL."""

    name = "redis"

    def __init__(
        self, directory: Path, redis: RedisService, postgres: Postgres | None = None
    ) -> None:
        super().__init__(directory)
        self.redis = redis
        self.postgres = postgres
        self.name = "redis-pg" if postgres is not None else "redis"

    def event_log(
        self,
        *,
        partitions: int = 4,
        dedup_window: timedelta = timedelta(hours=1),
        clock: Callable[[], float] = time.time,
    ) -> EventLog:
        log = RedisEventLog(
            self.redis,
            partitions=partitions,
            dedup_window=dedup_window,
            postgres=self.postgres,
            clock=clock,
        )
        self._opened.append(log)
        return log


def _sqlite(request: pytest.FixtureRequest, directory: Path) -> Backend:
    return SqliteBackend(directory)


def _redis(request: pytest.FixtureRequest, directory: Path) -> Backend:
    return RedisBackend(directory, request.getfixturevalue("redis_service"))


def _redis_postgres(request: pytest.FixtureRequest, directory: Path) -> Backend:
    redis = request.getfixturevalue("redis_service")
    return RedisBackend(directory, redis, request.getfixturevalue("postgres"))


# Openers: (the test's request, for server fixtures; its temporary directory) -> backend.
BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Backend]] = {
    "sqlite": _sqlite,
    "redis": _redis,
    "redis-pg": _redis_postgres,
}


@pytest.fixture(params=sorted(BACKENDS))
def backends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each backend in turn, on fresh storage; everything it opened is closed afterwards."""
    backend = BACKENDS[request.param](request, tmp_path)
    yield backend
    backend.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
