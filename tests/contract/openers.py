"""How a contract suite opens the store it tests, on every backend: SQLite on the test's
directory, PostgreSQL on the test's schema. An opener called again reopens the same storage
with a new connection pool, as a restarted process would; `closing` closes whatever was
opened when the test ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

import pytest

from tests import servers
from touchpoint.core.postgres import Postgres


class Closable(Protocol):
    def close(self) -> None: ...


S = TypeVar("S", bound=Closable)


def postgres_opener(
    request: pytest.FixtureRequest, build: Callable[[Postgres], S]
) -> Callable[[], S]:
    """Opens `build(Postgres(...))` on the test's own schema, a new pool each time."""
    schema = request.getfixturevalue("postgres_schema")

    def open_store() -> S:
        service = Postgres(servers.postgres_config(schema))
        request.addfinalizer(service.close)
        return build(service)

    return open_store


def closing(make: Callable[[], S]) -> Iterator[Callable[[], S]]:
    """`make`, remembering what it opened; closes all of it afterwards (a fixture body)."""
    opened: list[S] = []

    def open_store() -> S:
        opened.append(make())
        return opened[-1]

    yield open_store
    for store in opened:
        store.close()
