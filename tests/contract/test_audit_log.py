"""The AuditLog contract, run against every backend.

Backends: embedded SQLite and PostgreSQL (a schema of the test's own). An opener called
twice opens the same storage twice (a restart, or a second process: for PostgreSQL, a
new connection pool).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.contract.openers import closing, postgres_opener
from touchpoint.audit.base import DEFAULT_AUDIT_FILE, AuditEntry, AuditLog, build_audit_log
from touchpoint.audit.postgres import PostgresAuditLog
from touchpoint.audit.sqlite import SqliteAuditLog
from touchpoint.core.config_stores import StoreConfig
from touchpoint.core.errors import InvalidInput

Opener = Callable[[], AuditLog]


def _sqlite(request: pytest.FixtureRequest, directory: Path) -> Opener:
    return lambda: SqliteAuditLog(directory / "audit.sqlite3")


def _postgres(request: pytest.FixtureRequest, directory: Path) -> Opener:
    return postgres_opener(request, PostgresAuditLog)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Opener]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
}


@pytest.fixture(params=sorted(BACKENDS))
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the backend on this test's storage; everything opened is closed afterwards."""
    yield from closing(BACKENDS[request.param](request, tmp_path))


@pytest.fixture
def audit(opener: Opener) -> AuditLog:
    return opener()


def everything(audit: AuditLog, **filters: str) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    cursor: str | None = None
    while True:
        page = audit.list(cursor=cursor, limit=3, **filters)
        entries.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return entries


def test_record_returns_the_stored_entry(audit: AuditLog) -> None:
    details = {"version": 3, "diff": {"added": ["a"], "ü": None}, "ok": True}
    entry = audit.record(
        actor="secret_key", action="definitions.apply", target="definitions", details=details
    )
    assert entry.id >= 1
    assert entry.actor == "secret_key" and entry.action == "definitions.apply"
    assert entry.target == "definitions" and entry.details == details
    assert entry.at.endswith("Z") and len(entry.at) == 24
    assert audit.get(entry.id) == entry


def test_details_default_to_empty_and_odd_values_are_kept_as_text(audit: AuditLog) -> None:
    plain = audit.record(actor="a", action="x", target="t")
    assert plain.details == {}
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    odd = audit.record(
        actor="a", action="x", target="t", details={"when": moment, "path": Path("/x")}
    )
    assert odd.details == {"when": "2026-01-02T03:04:05+00:00", "path": "/x"}
    assert audit.get(odd.id) == odd


def test_ids_grow_and_entries_list_newest_first(audit: AuditLog) -> None:
    ids = [audit.record(actor="a", action="x", target=f"t{n}").id for n in range(8)]
    assert ids == sorted(ids) and len(set(ids)) == 8
    assert [entry.id for entry in everything(audit)] == ids[::-1]
    assert audit.list(limit=8).next_cursor is None


def test_filters_by_action_and_target(audit: AuditLog) -> None:
    audit.record(actor="a", action="definitions.apply", target="definitions")
    erase = audit.record(actor="a", action="profile.erase", target="user_id:h1")
    audit.record(actor="a", action="profile.export", target="user_id:h1")
    later = audit.record(actor="a", action="profile.erase", target="user_id:h2")
    assert [e.id for e in everything(audit, action="profile.erase")] == [later.id, erase.id]
    assert [e.action for e in everything(audit, target="user_id:h1")] == [
        "profile.export",
        "profile.erase",
    ]
    assert [e.id for e in everything(audit, action="profile.erase", target="user_id:h1")] == [
        erase.id
    ]
    assert everything(audit, action="nothing") == []


def test_unknown_ids_are_none(audit: AuditLog) -> None:
    assert audit.get(1) is None
    entry = audit.record(actor="a", action="x", target="t")
    assert audit.get(entry.id + 1) is None


@pytest.mark.parametrize("cursor", ["abc", "-3", "", "9" * 30, "\u0661\u0662"])
def test_a_bad_cursor_is_invalid_input(audit: AuditLog, cursor: str) -> None:
    with pytest.raises(InvalidInput):
        audit.list(cursor=cursor)


@pytest.mark.parametrize("limit", [0, 100_000])
def test_a_limit_out_of_range_is_invalid_input(audit: AuditLog, limit: int) -> None:
    with pytest.raises(InvalidInput):
        audit.list(limit=limit)


def test_entries_survive_a_restart_and_ids_keep_growing(opener: Opener) -> None:
    first = opener()
    kept = first.record(actor="a", action="x", target="t", details={"n": 1})
    first.close()
    again = opener()
    assert again.get(kept.id) == kept
    assert again.record(actor="a", action="x", target="t").id > kept.id


def test_concurrent_writers_across_threads_and_processes_lose_nothing(opener: Opener) -> None:
    logs = [opener() for _ in range(3)]
    barrier = threading.Barrier(6)
    ids: list[int] = []
    guard = threading.Lock()

    def run(index: int) -> None:
        barrier.wait()
        for n in range(20):
            entry = logs[index % 3].record(actor=f"t{index}", action="x", target=str(n))
            with guard:
                ids.append(entry.id)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 120
    assert len(everything(logs[0])) == 120


def test_build_uses_the_data_dir_or_the_configured_path(tmp_path: Path) -> None:
    default = build_audit_log(StoreConfig(), tmp_path)
    default.record(actor="a", action="x", target="t")
    default.close()
    assert (tmp_path / DEFAULT_AUDIT_FILE).exists()
    elsewhere = tmp_path / "nested" / "audit.sqlite3"
    configured = build_audit_log(StoreConfig(path=str(elsewhere)), tmp_path)
    assert configured.list().items == []
    configured.close()
    assert elsewhere.exists()
