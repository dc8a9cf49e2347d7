"""What the PostgreSQL decision log, definition store, audit log and rejected store promise
beyond their contract suites: a connection killed mid-write is `Unavailable` and leaves
nothing half-written, a reopen (a new process) keeps everything, applies from two
processes at once get consecutive versions, caps and reports run on their indexes, and
text PostgreSQL cannot hold (NUL) neither fails a call nor goes missing.

Connections are killed with `pg_terminate_backend` while their statement waits for a lock
this test holds, so the failure lands mid-transaction, deterministically.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests import servers
from touchpoint.audit.postgres import PostgresAuditLog
from touchpoint.collect.rejected.base import NewRejected, names_any
from touchpoint.collect.rejected.postgres import (
    PostgresRejectedStore,
    identity_digest,
    identity_digests,
)
from touchpoint.core.errors import Unavailable
from touchpoint.core.postgres import Postgres
from touchpoint.decide.decision_log.base import DecisionRecord, Outcome
from touchpoint.decide.decision_log.postgres import _REPORT, _SHOWN_COUNTS, PostgresDecisionLog
from touchpoint.definitions.model import Definitions
from touchpoint.definitions.store.postgres import PostgresDefinitionStore

T1 = "2026-01-01T01:00:00.000Z"


def decision(
    decision_id: str, placement: str = "home_hero", *, subject: str = "anonymous_id:a1"
) -> DecisionRecord:
    return DecisionRecord(
        decision_id=decision_id,
        placement=placement,
        content_id="hero_a",
        profile_id="p1",
        subject=subject,
        policy="priority",
        definitions_version=1,
        reason="eligible",
        propensity=1.0,
        at=T1,
    )


def outcome(message_id: str, decision_id: str) -> Outcome:
    return Outcome(
        message_id=message_id,
        decision_id=decision_id,
        placement="home_hero",
        content_id="hero_a",
        kind="view",
        event="Decision Viewed",
        profile_id="p1",
        at=T1,
    )


def definitions(headline: str) -> Definitions:
    return Definitions.model_validate(
        {
            "placements": [{"name": "home_hero", "fallback": "hero_default"}],
            "content": [
                {"id": "hero_default", "placements": ["home_hero"], "payload": {"h": headline}}
            ],
        }
    )


def rejected(message_id: str | None, event: Any = None) -> NewRejected:
    return NewRejected(
        source="web",
        message_id=message_id,
        received_at=T1,
        reason="invalid",
        errors=[{"field": "event", "reason": "is required"}],
        event=event if event is not None else {"messageId": message_id},
    )


def connect(schema: str) -> psycopg.Connection[tuple[Any, ...]]:
    """A connection of the test's own on the store's schema (not from its pool)."""
    return psycopg.connect(servers.POSTGRES_URL, options=f"-c search_path={schema}")


@contextmanager
def killing_what_waits_for(schema: str, lock_sql: str) -> Iterator[None]:
    """Run `lock_sql` in a transaction of our own and, while the block runs, terminate every
    backend that waits for that transaction's locks (each retry too), so a store's write is
    cut off mid-transaction. Our transaction is rolled back afterwards."""
    holder = connect(schema)
    holder.execute(lock_sql)
    holder_pid = holder.info.backend_pid
    done = threading.Event()

    def kill() -> None:
        with psycopg.connect(servers.POSTGRES_URL, autocommit=True) as killer:
            while not done.wait(0.005):
                killer.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE %s = ANY(pg_blocking_pids(pid))",
                    (holder_pid,),
                )

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        holder.rollback()
        holder.close()


def reopened(postgres: Postgres) -> Postgres:
    """A second service on the same schema: what another process (or a restart) opens."""
    return Postgres(servers.postgres_config(postgres.schema))


# -- a connection killed mid-write ---------------------------------------------------------------


def test_a_killed_decision_write_is_unavailable_and_stores_nothing(postgres: Postgres) -> None:
    log = PostgresDecisionLog(postgres)
    log.record([decision("d0")])
    with (
        killing_what_waits_for(postgres.schema, "LOCK TABLE decisions IN SHARE MODE"),
        pytest.raises(Unavailable),
    ):
        log.record([decision("d1"), decision("d1", "product_recs")])
    assert log.get("d1") == [] and log.count() == 1
    log.record([decision("d1"), decision("d1", "product_recs")])  # the pool recovered
    assert log.count() == 3


def test_a_killed_erasure_keeps_the_outcomes_it_had_deleted(postgres: Postgres) -> None:
    log = PostgresDecisionLog(postgres)
    log.record([decision("d1")])
    log.record_outcomes([outcome("m1", "d1")])
    # Outcomes go first (SHARE on decisions lets that through); the decisions' DELETE waits.
    with (
        killing_what_waits_for(postgres.schema, "LOCK TABLE decisions IN SHARE MODE"),
        pytest.raises(Unavailable),
    ):
        log.erase(profile_ids=["p1"], subjects=[])
    assert [item.message_id for item in log.outcomes("d1")] == ["m1"]
    assert log.count() == 1
    erased = log.erase(profile_ids=["p1"], subjects=[])
    assert (erased.decisions, erased.outcomes) == (1, 1)


def test_a_killed_apply_is_unavailable_and_adds_no_version(postgres: Postgres) -> None:
    store = PostgresDefinitionStore(postgres)
    store.apply(definitions("one"), actor="a")
    with (
        killing_what_waits_for(
            postgres.schema, "LOCK TABLE definition_versions IN SHARE ROW EXCLUSIVE MODE"
        ),
        pytest.raises(Unavailable),
    ):
        store.apply(definitions("two"), actor="a")
    assert store.latest_version() == 1
    assert store.apply(definitions("two"), actor="a").version == 2


def test_a_killed_audit_write_is_unavailable_and_records_nothing(postgres: Postgres) -> None:
    audit = PostgresAuditLog(postgres)
    with (
        killing_what_waits_for(postgres.schema, "LOCK TABLE audit IN SHARE MODE"),
        pytest.raises(Unavailable),
    ):
        audit.record(actor="a", action="x", target="t")
    assert audit.list().items == []
    assert audit.record(actor="a", action="x", target="t").id >= 1


def test_a_killed_rejected_batch_stores_none_of_its_items(postgres: Postgres) -> None:
    store = PostgresRejectedStore(postgres)
    # Our uncommitted copy of the batch's second item makes the store's insert of it wait,
    # after the first item is written in the same transaction.
    with (
        killing_what_waits_for(
            postgres.schema,
            "INSERT INTO rejected (source, message_id, received_at, reason, errors, event, "
            "identities, last_seen) VALUES ('web', 'm2', '', 'invalid', '[]', '{}', '{}', '')",
        ),
        pytest.raises(Unavailable),
    ):
        store.add([rejected("m1"), rejected("m2")])
    assert store.count() == 0
    first, second = store.add([rejected("m1"), rejected("m2")])
    assert second > first and store.count() == 2


# -- restart ------------------------------------------------------------------------------------


def test_a_reopened_workspace_keeps_every_store_and_migrates_nothing(postgres: Postgres) -> None:
    log = PostgresDecisionLog(postgres)
    log.record([decision("d1")])
    log.record_outcomes([outcome("m1", "d1")])
    version = PostgresDefinitionStore(postgres).apply(definitions("one"), actor="a")
    entry = PostgresAuditLog(postgres).record(actor="a", action="x", target="t")
    (rejected_id,) = PostgresRejectedStore(postgres).add([rejected("m1")])
    postgres.close()

    again = reopened(postgres)
    try:
        again_log = PostgresDecisionLog(again)
        assert again_log.get("d1") == [decision("d1")]
        assert again_log.outcomes("d1") == [outcome("m1", "d1")]
        assert PostgresDefinitionStore(again).current() == version
        assert PostgresAuditLog(again).get(entry.id) == entry
        again_rejected = PostgresRejectedStore(again)
        assert [item.id for item in again_rejected.list().items] == [rejected_id]
        assert again_rejected.add([rejected("m1")]) == [rejected_id]
        with connect(postgres.schema) as connection:
            applied = connection.execute(
                "SELECT component, version FROM touchpoint_migrations "
                "WHERE component IN ('decisions', 'definitions', 'audit', 'rejected')"
            ).fetchall()
        assert sorted(applied) == [
            ("audit", 1),
            ("decisions", 1),
            ("decisions", 2),
            ("definitions", 1),
            ("rejected", 1),
            ("rejected", 2),
        ]
    finally:
        again.close()


# -- concurrency across processes ---------------------------------------------------------------

_APPLIER = """
import json, sys, time
from pathlib import Path
from touchpoint.core.config_stores import PostgresConfig
from touchpoint.definitions.model import Definitions
from touchpoint.core.postgres import Postgres
from touchpoint.definitions.store.postgres import PostgresDefinitionStore

url, schema, tag, start = sys.argv[1:5]
postgres = Postgres(PostgresConfig.model_validate({"url": url, "schema": schema}))
store = PostgresDefinitionStore(postgres)
print("ready", flush=True)
while not Path(start).exists():
    time.sleep(0.005)
versions = []
for n in range(10):
    content = [{"id": "hero_default", "placements": ["home_hero"], "payload": {"h": f"{tag}{n}"}}]
    wanted = Definitions.model_validate(
        {"placements": [{"name": "home_hero", "fallback": "hero_default"}], "content": content}
    )
    versions.append(store.apply(wanted, actor=tag).version)
print(json.dumps(versions), flush=True)
postgres.close()
"""


def test_applies_from_two_processes_get_distinct_consecutive_versions(
    postgres_schema: str, tmp_path: Path
) -> None:
    start = tmp_path / "start"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _APPLIER, servers.POSTGRES_URL, postgres_schema, tag, start],
            stdout=subprocess.PIPE,
            text=True,
        )
        for tag in ("a", "b")
    ]
    try:
        for process in processes:  # both migrated and connected: now apply at once
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        start.touch()
        versions: list[int] = []
        for process in processes:
            out, _ = process.communicate(timeout=60)
            assert process.returncode == 0
            versions += json.loads(out)
    finally:
        for process in processes:
            process.kill()
            process.wait()
    assert sorted(versions) == list(range(1, 21))
    check = Postgres(servers.postgres_config(postgres_schema))
    try:
        store = PostgresDefinitionStore(check)
        assert store.latest_version() == 20
        assert [item.version for item in store.versions(limit=20).items] == list(range(20, 0, -1))
    finally:
        check.close()


# -- indexes ------------------------------------------------------------------------------------


def _plan(schema: str, sql: str, values: dict[str, Any] | tuple[Any, ...]) -> str:
    """The plan PostgreSQL would use when scans of whole tables are its last resort."""
    with connect(schema) as connection:
        connection.execute("SET enable_seqscan = off")
        rows = connection.execute(f"EXPLAIN {sql}", values).fetchall()
    return "\n".join(str(row[0]) for row in rows)


def test_caps_and_reports_read_their_indexes(postgres: Postgres) -> None:
    log = PostgresDecisionLog(postgres)
    log.record([decision(f"d{n}") for n in range(20)])
    caps = _plan(postgres.schema, _SHOWN_COUNTS, ("p1", ["anonymous_id:a1"], ["hero_a"], T1))
    assert "decisions_profile" in caps and "decisions_subject" in caps
    assert "Seq Scan" not in caps
    report = _plan(
        postgres.schema, _REPORT, {"placement": "home_hero", "since": T1, "until": "2027"}
    )
    assert "Seq Scan" not in report  # the window comes from (placement, at) or (at) indexes


# -- text PostgreSQL cannot hold -----------------------------------------------------------------


def test_nul_in_a_subject_or_id_neither_fails_nor_goes_missing(postgres: Postgres) -> None:
    log = PostgresDecisionLog(postgres)
    odd = "anonymous_id:a\x00b"
    log.record([decision("d1", subject=odd)])
    shown = log.shown_counts(profile_id=None, subjects=[odd], content_ids=["hero_a"], since=T1)
    assert shown == {"hero_a": 1}
    assert log.get("d1\x00") == [] and log.outcomes("d1\x00") == []
    assert log.record_outcomes([outcome("m\x00", "d1")]) == 1
    assert log.record_outcomes([outcome("m\x00", "d1")]) == 0
    assert log.erase(profile_ids=[], subjects=[odd]).decisions == 1

    store = PostgresRejectedStore(postgres)
    ids = store.add([rejected("m\x001", {"userId": "u\x00"})])
    assert store.add([rejected("m\x001")]) == ids
    assert store.list().items[0].event == {"userId": "u\x00"}
    assert store.erase_identities(["u\x00"]) == 1

    audit = PostgresAuditLog(postgres)
    entry = audit.record(actor="a", action="x", target="user_id:\x00", details={"v": "\x00"})
    assert audit.get(entry.id) == entry
    assert audit.list(target="user_id:\x00").items == [entry]


EVENTS: list[Any] = [
    {"userId": "u1"},
    {"userId": "  U1 "},
    {"userId": 42.0},
    {"userId": True},
    {"anonymousId": {"nested": "u1"}},
    {"previousId": "anon"},
    {"traits": {"email": "h1:abc", "n": 7}},
    {"context": {"traits": {"email": "h1:abc"}}},
    {"context": "u1", "traits": ["u1"]},
    {"properties": {"id": "u1"}},
    ["u1"],
    "u1",
    None,
]
WANTED = ["u1", "U1", "42", "42.0", "True", "true", "anon", "h1:abc", "7", " u1", ""]


@pytest.mark.parametrize("event", EVENTS)
def test_identity_digests_match_exactly_what_names_any_matches(event: Any) -> None:
    digests = set(identity_digests(event))
    for value in WANTED:
        by_digest = bool(value) and identity_digest(value) in digests
        assert by_digest == names_any(event, [value]), (event, value)
