"""The DefinitionStore contract, run against every backend.

Backends: embedded SQLite and PostgreSQL (a schema of the test's own). An opener called
twice opens the same storage twice, which stands for a restart or for a second process
(each has its own connection; for PostgreSQL, its own pool).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.contract.openers import closing, postgres_opener
from touchpoint.core.config_stores import StoreConfig
from touchpoint.core.errors import InvalidInput
from touchpoint.definitions.model import Definitions
from touchpoint.definitions.store.base import (
    DEFAULT_DEFINITIONS_FILE,
    DefinitionStore,
    build_definition_store,
)
from touchpoint.definitions.store.postgres import PostgresDefinitionStore
from touchpoint.definitions.store.sqlite import SqliteDefinitionStore

Opener = Callable[[], DefinitionStore]


def _sqlite(request: pytest.FixtureRequest, directory: Path) -> Opener:
    return lambda: SqliteDefinitionStore(directory / "definitions.sqlite3")


def _postgres(request: pytest.FixtureRequest, directory: Path) -> Opener:
    return postgres_opener(request, PostgresDefinitionStore)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Opener]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
}


@pytest.fixture(params=sorted(BACKENDS))
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the backend on this test's storage; everything opened is closed afterwards."""
    yield from closing(BACKENDS[request.param](request, tmp_path))


@pytest.fixture
def store(opener: Opener) -> DefinitionStore:
    return opener()


def definitions(headline: str = "Welcome", *, extra: int = 0) -> Definitions:
    """A small valid set; `extra` adds that many content items to the hero placement."""
    return Definitions.model_validate(
        {
            "placements": [
                {"name": "home_hero", "fallback": "hero_default", "conversion_events": ["Buy"]}
            ],
            "content": [
                {
                    "id": "hero_default",
                    "placements": ["home_hero"],
                    "payload": {"headline": headline, "nested": {"ü": [1, None, 2.5]}},
                    "template": "<h1>{{ traits.name }}</h1>",
                    "start": "2026-01-01T00:00:00Z",
                    "caps": [{"max": 3, "per": "1d"}],
                },
                *(
                    {"id": f"item_{n}", "placements": ["home_hero"], "payload": {"n": n}}
                    for n in range(extra)
                ),
            ],
        }
    )


def test_an_empty_store_has_no_version(store: DefinitionStore) -> None:
    assert store.current() is None
    assert store.latest_version() == 0
    assert store.get(1) is None
    page = store.versions()
    assert page.items == [] and page.next_cursor is None


def test_apply_stores_version_one_with_every_field(store: DefinitionStore) -> None:
    wanted = definitions()
    version = store.apply(wanted, actor="cli:ann", note="first")
    assert version.version == 1
    assert version.definitions == wanted
    assert version.digest == wanted.digest()
    assert version.actor == "cli:ann" and version.note == "first"
    assert version.applied_at.endswith("Z") and len(version.applied_at) == 24
    assert store.latest_version() == 1
    assert store.current() == version
    assert store.get(1) == version


def test_versions_survive_a_restart(opener: Opener) -> None:
    first = opener()
    applied = first.apply(definitions(), actor="a", note="n")
    first.close()
    again = opener()
    assert again.latest_version() == 1
    assert again.current() == applied
    assert again.get(1) == applied


def test_an_unchanged_set_is_not_a_new_version(opener: Opener) -> None:
    store = opener()
    first = store.apply(definitions(), actor="a")
    assert store.apply(definitions(), actor="b", note="again") == first
    assert opener().apply(definitions(), actor="c") == first  # another process
    assert store.latest_version() == 1


def test_a_changed_set_is_the_next_version_and_old_ones_stay(store: DefinitionStore) -> None:
    first = store.apply(definitions("Hello"), actor="a")
    second = store.apply(definitions("Hi"), actor="b")
    assert second.version == 2 and second.digest != first.digest
    assert store.current() == second
    assert store.get(1) == first
    assert store.get(3) is None
    # Going back to an older set is a new version too: versions only move forward.
    third = store.apply(definitions("Hello"), actor="c")
    assert third.version == 3 and third.digest == first.digest


def test_versions_are_listed_newest_first_with_a_cursor(store: DefinitionStore) -> None:
    for n in range(7):
        store.apply(definitions(f"v{n}"), actor="a")
    seen: list[int] = []
    cursor: str | None = None
    while True:
        page = store.versions(cursor=cursor, limit=3)
        seen.extend(item.version for item in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [7, 6, 5, 4, 3, 2, 1]
    assert store.versions(limit=7).next_cursor is None


@pytest.mark.parametrize("cursor", ["abc", "-1", "1.5", "9" * 30, "\u0661\u0662"])
def test_a_bad_cursor_is_invalid_input(store: DefinitionStore, cursor: str) -> None:
    with pytest.raises(InvalidInput):
        store.versions(cursor=cursor)


@pytest.mark.parametrize("limit", [0, 100_000])
def test_a_limit_out_of_range_is_invalid_input(store: DefinitionStore, limit: int) -> None:
    with pytest.raises(InvalidInput):
        store.versions(limit=limit)


def test_another_process_sees_a_new_version_at_its_next_poll(opener: Opener) -> None:
    reader = opener()
    writer = opener()
    assert reader.current() is None
    writer.apply(definitions("one"), actor="a")
    assert reader.latest_version() == 1
    reader_current = reader.current()
    assert reader_current is not None and reader_current.definitions == definitions("one")
    writer.apply(definitions("two"), actor="a")
    assert reader.latest_version() == 2
    reader_current = reader.current()
    assert reader_current is not None and reader_current.definitions == definitions("two")


def test_concurrent_applies_get_distinct_consecutive_numbers(opener: Opener) -> None:
    stores = [opener() for _ in range(4)]
    barrier = threading.Barrier(8)
    results: list[int] = []
    failures: list[BaseException] = []
    guard = threading.Lock()

    def run(index: int) -> None:
        try:
            barrier.wait()
            for round_ in range(3):
                store = stores[index % len(stores)]
                version = store.apply(definitions(f"t{index}-{round_}"), actor=f"t{index}")
                with guard:
                    results.append(version.version)
        except BaseException as error:  # pragma: no cover - reported below
            failures.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sorted(results) == list(range(1, 25))
    assert stores[0].latest_version() == 24


def test_concurrent_applies_of_one_set_store_it_once(opener: Opener) -> None:
    stores = [opener() for _ in range(4)]
    barrier = threading.Barrier(4)
    versions: list[int] = []

    def run(store: DefinitionStore) -> None:
        barrier.wait()
        versions.append(store.apply(definitions("same"), actor="config").version)

    threads = [threading.Thread(target=run, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert versions == [1, 1, 1, 1]
    assert stores[0].latest_version() == 1


def test_a_large_set_round_trips(store: DefinitionStore) -> None:
    big = definitions(extra=500)
    store.apply(big, actor="a")
    loaded = store.get(1)
    assert loaded is not None and loaded.definitions == big
    assert loaded.definitions.digest() == big.digest()


def test_build_uses_the_data_dir_or_the_configured_path(tmp_path: Path) -> None:
    default = build_definition_store(StoreConfig(), tmp_path)
    default.apply(definitions(), actor="a")
    default.close()
    assert (tmp_path / DEFAULT_DEFINITIONS_FILE).exists()
    elsewhere = tmp_path / "other" / "defs.sqlite3"
    configured = build_definition_store(StoreConfig(path=str(elsewhere)), tmp_path)
    assert configured.latest_version() == 0
    configured.close()
    assert elsewhere.exists()
