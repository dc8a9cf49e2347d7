"""Backends for the event log and rejected-store contract suites.

Each backend knows how to open (and, called again, reopen: a restart) its event log
and its rejected store on storage private to one test. Only SQLite exists today; a
Redis Streams backend joins `BACKENDS` when it lands and must pass the same suites.
A backend must honour `clock` (epoch seconds) for the dedup window.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import pytest

from touchpoint.collect.rejected import RejectedStore, SqliteRejectedStore
from touchpoint.log import EventLog, SqliteEventLog


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


BACKENDS: dict[str, Callable[[Path], Backend]] = {"sqlite": SqliteBackend}


@pytest.fixture(params=sorted(BACKENDS))
def backends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each backend in turn, on fresh storage; everything it opened is closed afterwards."""
    backend = BACKENDS[request.param](tmp_path)
    yield backend
    backend.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
