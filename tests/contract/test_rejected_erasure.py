"""RejectedStore erasure (`erase_identities`, `erase_message_ids`), run against every
backend (the backends of test_rejected_store.py: SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.test_rejected_store import REJECTED_BACKENDS, Backend, open_backend
from touchpoint.collect.rejected.base import NewRejected, RejectedStore, names_any


@pytest.fixture(params=sorted(REJECTED_BACKENDS))
def backends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each backend in turn, on fresh storage; everything it opened is closed afterwards."""
    backend = open_backend(request, tmp_path)
    yield backend
    backend.close()


EMAIL_HASH = "h1:" + "a" * 64
OTHER_HASH = "h1:" + "b" * 64


def item(message_id: str | None, event: Any) -> NewRejected:
    return NewRejected(
        source="web",
        message_id=message_id,
        received_at="2024-05-01T10:00:00.000Z",
        reason="tracking_plan",
        errors=[{"field": "properties.revenue", "reason": "is required"}],
        event=event,
    )


def remaining(store: RejectedStore) -> set[str | None]:
    return {event.message_id for event in store.list(limit=1000).items}


def test_erase_identities_matches_every_identifying_field(backends: Backend) -> None:
    store = backends.rejected_store()
    store.add(
        [
            item("by-user", {"type": "track", "userId": "u1", "event": "X"}),
            item("by-anon", {"type": "track", "anonymousId": "anon-1", "event": "X"}),
            item("by-previous", {"type": "alias", "previousId": "anon-1", "userId": "u9"}),
            item("by-trait", {"type": "identify", "userId": "u9", "traits": {"email": EMAIL_HASH}}),
            item(
                "by-context-trait",
                {"type": "track", "anonymousId": "z", "context": {"traits": {"email": EMAIL_HASH}}},
            ),
            item("padded", {"type": "track", "userId": "  u1 ", "event": "X"}),
            item("numeric", {"type": "track", "userId": 42, "event": "X"}),
            item("other", {"type": "identify", "userId": "u2", "traits": {"email": OTHER_HASH}}),
            item("in-properties", {"type": "track", "userId": "u2", "properties": {"id": "u1"}}),
            item(None, ["not", "an", "object"]),
            item(None, "u1"),
        ]
    )
    assert store.erase_identities(["u1", "anon-1", EMAIL_HASH, "42"]) == 7
    assert remaining(store) == {"other", "in-properties", None}
    assert store.count() == 4
    assert store.erase_identities(["u1", "anon-1", EMAIL_HASH, "42"]) == 0  # idempotent


def test_erase_identities_of_nothing_deletes_nothing(backends: Backend) -> None:
    store = backends.rejected_store()
    store.add([item("a", {"type": "track", "userId": "u1"})])
    assert store.erase_identities([]) == 0
    assert store.erase_identities([""]) == 0
    assert store.count() == 1


def test_erase_message_ids(backends: Backend) -> None:
    store = backends.rejected_store()
    store.add([item(f"m{n}", {"type": "track", "userId": f"u{n}"}) for n in range(3)])
    assert store.erase_message_ids(["m0", "m2", "m9", "m0"]) == 2
    assert remaining(store) == {"m1"}


def test_erased_events_stay_erased_after_reopening(backends: Backend) -> None:
    store = backends.rejected_store()
    store.add([item("a", {"type": "track", "userId": "u1"}), item("b", {"userId": "u2"})])
    store.erase_identities(["u1"])
    store.close()
    assert remaining(backends.rejected_store()) == {"b"}


def test_names_any_agrees_with_the_store() -> None:
    assert names_any({"userId": "u1"}, ["u1"])
    assert names_any({"context": {"traits": {"email": EMAIL_HASH}}}, [EMAIL_HASH])
    assert names_any({"previousId": " anon-1 "}, ["anon-1"])
    assert not names_any({"properties": {"x": "u1"}}, ["u1"])
    assert not names_any(["u1"], ["u1"])
    assert not names_any({"userId": {"nested": "u1"}}, ["u1"])
