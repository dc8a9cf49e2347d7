"""The RejectedStore contract, run against every backend: embedded SQLite and PostgreSQL
(a schema of the test's own).

The `backends` fixture here overrides the one of conftest.py (shared with the event log
suite, whose backends have no PostgreSQL store): these suites need only a backend's
rejected store, opened again on the same storage for a restart (for PostgreSQL, with a
new connection pool, as a new process has). test_rejected_erasure.py uses it too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.openers import postgres_opener
from touchpoint.collect.rejected.base import (
    NewRejected,
    RejectedEvent,
    RejectedStore,
    build_rejected_store,
)
from touchpoint.collect.rejected.postgres import PostgresRejectedStore
from touchpoint.collect.rejected.sqlite import SqliteRejectedStore
from touchpoint.core.config_stores import StoreConfig
from touchpoint.core.errors import InvalidInput

StoreOpener = Callable[[], RejectedStore]


class Backend:
    """A backend's rejected store on storage private to one test; `rejected_store()` called
    again reopens it (a restart)."""

    def __init__(self, name: str, open_store: StoreOpener) -> None:
        self.name = name
        self._open_store = open_store
        self._opened: list[RejectedStore] = []

    def rejected_store(self) -> RejectedStore:
        self._opened.append(self._open_store())
        return self._opened[-1]

    def close(self) -> None:
        for store in self._opened:
            store.close()


def _sqlite(request: pytest.FixtureRequest, directory: Path) -> StoreOpener:
    return lambda: SqliteRejectedStore(directory / "rejected.sqlite3")


def _postgres(request: pytest.FixtureRequest, directory: Path) -> StoreOpener:
    return postgres_opener(request, PostgresRejectedStore)


REJECTED_BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], StoreOpener]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
}


def open_backend(request: pytest.FixtureRequest, directory: Path) -> Backend:
    """The backend `request.param` names, on `directory` (SQLite) or a fresh schema."""
    return Backend(request.param, REJECTED_BACKENDS[request.param](request, directory))


@pytest.fixture(params=sorted(REJECTED_BACKENDS))
def backends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each backend in turn, on fresh storage; everything it opened is closed afterwards."""
    backend = open_backend(request, tmp_path)
    yield backend
    backend.close()


RECEIVED = "2024-05-01T10:00:00.000Z"
LATER = "2024-05-02T10:00:00.000Z"


def rejected(
    message_id: str | None,
    *,
    reason: str = "invalid",
    source: str = "web",
    event: Any = None,
) -> NewRejected:
    return NewRejected(
        source=source,
        message_id=message_id,
        received_at=RECEIVED,
        reason=reason,
        errors=[{"field": "properties.price", "reason": "must be a number"}],
        event=event if event is not None else {"messageId": message_id, "event": "Bought"},
    )


def everything(store: RejectedStore, **filters: Any) -> list[RejectedEvent]:
    items: list[RejectedEvent] = []
    cursor: str | None = None
    while True:
        page = store.list(cursor=cursor, limit=7, **filters)
        items.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return items


def test_add_then_list_round_trips_every_field(backends: Backend) -> None:
    store = backends.rejected_store()
    event = {
        "type": "track",
        "event": "Bestellung",
        "properties": {"price": "zwölf", "n": [1, None]},
    }
    (item_id,) = store.add([rejected("m1", reason="tracking_plan", event=event)])
    page = store.list()
    assert page.next_cursor is None
    assert page.items == [
        RejectedEvent(
            id=item_id,
            source="web",
            message_id="m1",
            received_at=RECEIVED,
            reason="tracking_plan",
            errors=[{"field": "properties.price", "reason": "must be a number"}],
            event=event,
            occurrences=1,
            last_seen=RECEIVED,
        )
    ]


def test_list_is_newest_first_and_paginates_without_gaps_or_repeats(backends: Backend) -> None:
    store = backends.rejected_store()
    ids = store.add([rejected(f"m{i}") for i in range(25)])
    assert len(set(ids)) == 25
    first = store.list(limit=10)
    assert [item.message_id for item in first.items] == [f"m{i}" for i in range(24, 14, -1)]
    assert first.next_cursor is not None
    second = store.list(cursor=first.next_cursor, limit=10)
    third = store.list(cursor=second.next_cursor, limit=10)
    assert len(second.items) == 10 and len(third.items) == 5 and third.next_cursor is None
    listed = [item.id for page in (first, second, third) for item in page.items]
    assert sorted(listed) == sorted(ids)


def test_a_full_last_page_has_no_next_cursor(backends: Backend) -> None:
    store = backends.rejected_store()
    store.add([rejected(f"m{i}") for i in range(4)])
    page = store.list(limit=4)
    assert len(page.items) == 4 and page.next_cursor is None


def test_filters_count_and_counts_by_reason(backends: Backend) -> None:
    store = backends.rejected_store()
    store.add(
        [
            rejected("a", reason="invalid", source="web"),
            rejected("b", reason="invalid", source="ios"),
            rejected("c", reason="too_large", source="web"),
            rejected("d", reason="tracking_plan", source="web"),
            rejected("e", reason="tracking_plan", source="web"),
        ]
    )
    assert store.count() == 5
    assert store.count(reason="tracking_plan") == 2
    assert store.count(source="web") == 4
    assert store.count(reason="invalid", source="ios") == 1
    assert store.counts_by_reason() == {"invalid": 2, "too_large": 1, "tracking_plan": 2}
    assert {item.message_id for item in everything(store, source="web")} == {"a", "c", "d", "e"}
    assert [item.message_id for item in everything(store, reason="invalid", source="web")] == ["a"]
    assert store.list(reason="nothing").items == []


def test_add_is_idempotent_for_a_retried_batch(backends: Backend) -> None:
    store = backends.rejected_store()
    batch = [rejected("a"), rejected("b", reason="too_large")]
    ids = store.add(batch)
    assert store.add(batch) == ids
    assert store.add([rejected("a"), rejected("a")]) == [ids[0], ids[0]]
    assert store.count() == 2


def test_same_message_with_another_reason_or_source_is_a_new_entry(backends: Backend) -> None:
    store = backends.rejected_store()
    first = store.add([rejected("a")])
    others = store.add([rejected("a", reason="tracking_plan"), rejected("a", source="ios")])
    assert len(set(first + others)) == 3
    assert store.count() == 3


def test_identical_events_without_message_id_share_one_counted_row(backends: Backend) -> None:
    store = backends.rejected_store()
    ids = store.add([rejected(None, event="not an object"), rejected(None, event="not an object")])
    assert ids[0] == ids[1]
    later = NewRejected("web", None, LATER, "invalid", [], "not an object")
    assert store.add([later]) == [ids[0]]
    (item,) = store.list().items
    assert (item.event, item.occurrences) == ("not an object", 3)
    assert (item.received_at, item.last_seen) == (RECEIVED, LATER)
    # Same content counts as the same whatever its key order; another content, reason or
    # source is another row.
    first = store.add([rejected(None, event={"a": 1, "b": [1, {"c": 2, "d": 3}]})])
    again = store.add([rejected(None, event={"b": [1, {"d": 3, "c": 2}], "a": 1})])
    assert first == again
    others = store.add(
        [
            rejected(None, event="another"),
            rejected(None, event="not an object", reason="too_large"),
            rejected(None, event="not an object", source="ios"),
        ]
    )
    assert len({*others, ids[0], first[0]}) == 5
    assert store.count() == 5


def test_a_retried_named_event_is_not_counted_again(backends: Backend) -> None:
    store = backends.rejected_store()
    store.add([rejected("a")])
    store.add([rejected("a")])
    (item,) = store.list().items
    assert item.occurrences == 1


def test_a_source_at_its_cap_stores_no_new_events_but_still_counts_known_ones(
    backends: Backend,
) -> None:
    store = backends.rejected_store()
    store.max_per_source = 3
    ids = store.add([rejected(f"m{i}") for i in range(5)] + [rejected(None, event="x")])
    assert all(item_id is not None for item_id in ids[:3])
    assert ids[3:] == [None, None, None]
    assert store.count(source="web") == 3
    assert store.add([rejected("m1")]) == [ids[1]]  # known: still found
    # Other sources have their own room.
    assert store.add([rejected("m9", source="ios")])[0] is not None
    # Room again once some are replayed (removed).
    store.remove([item_id for item_id in ids[:2] if item_id is not None])
    (x_id,) = store.add([rejected(None, event="x")])
    assert x_id is not None
    assert store.add([rejected(None, event="x")]) == [x_id]  # known, counted at the cap
    (x,) = [item for item in store.list(source="web").items if item.id == x_id]
    assert x.occurrences == 2


def test_purge_deletes_what_was_not_seen_since(backends: Backend) -> None:
    store = backends.rejected_store()
    (old,) = store.add([rejected("old")])
    (seen_again,) = store.add([rejected(None, event="again")])
    store.add([NewRejected("web", None, LATER, "invalid", [], "again")])
    (recent,) = store.add([NewRejected("web", "new", LATER, "invalid", [], {})])
    assert store.purge("2024-05-01T12:00:00.000Z") == 1
    assert sorted(item.id for item in store.list().items) == sorted([seen_again, recent])
    assert old not in [item.id for item in store.list().items]
    assert store.purge("2024-05-01T12:00:00.000Z") == 0


def test_remove_after_replay_and_a_new_rejection_is_stored_again(backends: Backend) -> None:
    store = backends.rejected_store()
    ids = store.add([rejected(f"m{i}") for i in range(5)])
    assert store.remove([ids[0], ids[2], ids[2], 999_999]) == 2
    assert sorted(item.message_id or "" for item in everything(store)) == ["m1", "m3", "m4"]
    assert store.remove([]) == 0
    (again,) = store.add([rejected("m0")])  # replayed, then rejected once more
    assert again not in ids
    assert store.count() == 4


def test_erase_message_ids(backends: Backend) -> None:
    store = backends.rejected_store()
    store.add([rejected("a"), rejected("a", reason="too_large"), rejected("b")])
    assert store.erase_message_ids(["a", "zzz"]) == 2
    assert [item.message_id for item in store.list().items] == ["b"]


def test_rejected_events_survive_reopen(backends: Backend) -> None:
    store = backends.rejected_store()
    ids = store.add([rejected("a"), rejected("b")])
    store.close()
    reopened = backends.rejected_store()
    assert sorted(item.id for item in reopened.list().items) == sorted(ids)
    assert reopened.add([rejected("a")]) == [ids[0]]


def test_bad_cursor_and_limit_are_refused(backends: Backend) -> None:
    store = backends.rejected_store()
    with pytest.raises(InvalidInput):
        store.list(cursor="not-a-cursor")
    with pytest.raises(InvalidInput):
        store.list(limit=0)


def test_build_rejected_store_default_and_configured_paths(tmp_path: Path) -> None:
    default = build_rejected_store(StoreConfig(), tmp_path / "data")
    configured = build_rejected_store(
        StoreConfig(path=str(tmp_path / "elsewhere" / "r.db")), tmp_path
    )
    try:
        assert isinstance(default, SqliteRejectedStore)
        assert default.path == tmp_path / "data" / "rejected.sqlite3" and default.path.exists()
        assert isinstance(configured, SqliteRejectedStore)
        assert configured.path == tmp_path / "elsewhere" / "r.db" and configured.path.exists()
    finally:
        default.close()
        configured.close()
