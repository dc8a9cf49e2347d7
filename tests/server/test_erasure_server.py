"""Erasure on the server backends: the PostgreSQL tables it deleted from are vacuumed at
once (their dead tuples removed, not left for autovacuum), and the job names exactly where
bytes may remain on PostgreSQL and Redis, and until when (see ADR 0005)."""

from __future__ import annotations

from typing import Any

import psycopg

from tests import servers
from tests.conftest import WRITE_KEY, drain
from touchpoint.profiles.store.postgres import ERASED_TABLES
from touchpoint.runtime import Workspace

USER = "srv-erased-user-41c2"


def vacuum_stats(schema: str, tables: tuple[str, ...]) -> dict[str, tuple[int, bool]]:
    """Per table: dead tuples, and whether it was ever vacuumed by hand."""
    with psycopg.connect(servers.POSTGRES_URL, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT relname, n_dead_tup, last_vacuum IS NOT NULL FROM pg_stat_user_tables "
            "WHERE schemaname = %s AND relname = ANY(%s)",
            (schema, list(tables)),
        ).fetchall()
    return {str(name): (int(dead), bool(vacuumed)) for name, dead, vacuumed in rows}


def test_an_erasure_vacuums_what_it_deleted_and_names_what_may_remain(
    server_workspace: Workspace, postgres_schema: str
) -> None:
    source = server_workspace.settings.config.source_by_key(WRITE_KEY)
    assert source is not None
    events: list[dict[str, Any]] = [
        {"type": "identify", "userId": USER, "traits": {"email": "srv@example.com"}},
        *({"type": "track", "userId": USER, "event": "Product Viewed"} for _ in range(5)),
    ]
    assert server_workspace.collector.collect(source, events).accepted == len(events)
    drain(server_workspace)
    tables = (*ERASED_TABLES, "decisions", "outcomes", "rejected")
    assert not any(vacuumed for _, vacuumed in vacuum_stats(postgres_schema, tables).values())

    job = server_workspace.eraser.erase("user_id", USER, actor="test").to_dict()

    after = vacuum_stats(postgres_schema, tables)
    assert set(after) == set(tables)
    # Vacuumed now, not whenever autovacuum comes by. (Dead tuples that a transaction of
    # another client of this server could still see stay until a later vacuum: the job's
    # leftovers say so; a count of zero cannot be asserted on a shared server.)
    assert all(vacuumed for _, vacuumed in after.values()), after
    where = {(item["store"], item["where"].split(" (")[0]) for item in job["leftovers"]}
    assert ("profile_store", f"PostgreSQL pages of {', '.join(ERASED_TABLES)}") in where
    assert ("decision_log", "PostgreSQL pages of decisions, outcomes") in where
    assert ("rejected_store", "PostgreSQL pages of rejected") in where
    assert ("profile_store", "PostgreSQL write-ahead log") in where
    stores = {item["store"] for item in job["leftovers"] if item["where"].startswith("Redis")}
    assert stores == {"event_log", "profile_store"}
    assert all(item["until"] for item in job["leftovers"])
