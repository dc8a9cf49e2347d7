"""A data directory (or PostgreSQL schema) made before rejected events were counted and
bounded opens with its rows intact and the new columns filled: no migration step to run."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from touchpoint.collect.rejected.base import NewRejected
from touchpoint.collect.rejected.postgres import MIGRATIONS, PostgresRejectedStore
from touchpoint.collect.rejected.sqlite import SqliteRejectedStore
from touchpoint.core.postgres import Postgres

RECEIVED = "2024-05-01T10:00:00.000Z"
LATER = "2024-05-03T10:00:00.000Z"

# The schema of the first version, as a data directory of that version holds it.
OLD_SQLITE_SCHEMA = """
CREATE TABLE rejected (
    id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, message_id TEXT,
    received_at TEXT NOT NULL, reason TEXT NOT NULL, errors TEXT NOT NULL, event TEXT NOT NULL);
CREATE UNIQUE INDEX rejected_once
    ON rejected (source, message_id, reason) WHERE message_id IS NOT NULL;
"""


def test_an_old_sqlite_file_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "rejected.sqlite3"
    connection = sqlite3.connect(path)
    connection.executescript(OLD_SQLITE_SCHEMA)
    connection.execute(
        "INSERT INTO rejected (source, message_id, received_at, reason, errors, event) "
        "VALUES ('web', 'm1', ?, 'invalid', '[]', ?)",
        (RECEIVED, json.dumps({"messageId": "m1"})),
    )
    connection.commit()
    connection.close()
    store = SqliteRejectedStore(path)
    try:
        (old,) = store.list().items
        assert (old.message_id, old.occurrences, old.last_seen) == ("m1", 1, RECEIVED)
        assert store.add([NewRejected("web", "m1", LATER, "invalid", [], {})]) == [old.id]
        ids = store.add([NewRejected("web", None, LATER, "invalid", [], 1)] * 2)
        assert ids[0] == ids[1] and store.list().items[0].occurrences == 2
        assert store.purge("2024-05-02T00:00:00.000Z") == 1
        before = store.list().items
    finally:
        store.close()
    again = SqliteRejectedStore(path)  # opening an upgraded file again changes nothing
    try:
        assert again.list().items == before
    finally:
        again.close()


def test_an_old_postgres_schema_is_migrated(postgres: Postgres) -> None:
    postgres.migrate(MIGRATIONS[:1])
    with postgres.connection("test") as connection:
        connection.execute(
            "INSERT INTO rejected (source, message_id, received_at, reason, errors, event, "
            "identities) VALUES ('web', 'm1', %s, 'invalid', '[]', '{}', '{}')",
            (RECEIVED,),
        )
    store = PostgresRejectedStore(postgres)
    (old,) = store.list().items
    assert (old.message_id, old.occurrences, old.last_seen) == ("m1", 1, RECEIVED)
    ids = store.add([NewRejected("web", None, LATER, "invalid", [], 1)] * 2)
    assert ids[0] == ids[1] and store.list().items[0].occurrences == 2
    assert store.purge("2024-05-02T00:00:00.000Z") == 1
