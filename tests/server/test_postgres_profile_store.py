"""What the PostgreSQL profile store promises beyond the contract suite: a connection lost
mid-transaction is `Unavailable` and leaves nothing half-written, a reopen keeps
everything, concurrent writers neither lose updates nor turn a race into a poison event,
erasure and stream batches exclude each other, the segment change log grows in commit
order, and values PostgreSQL text cannot hold neither fail a read nor get stored mangled.

Interleavings are made deterministic by waiting (with a bound, never asserting on time)
until PostgreSQL shows the second transaction blocked on the first.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from tests import servers
from touchpoint.config.workspace import parse_config
from touchpoint.consumers.consumer import LogConsumer
from touchpoint.core.errors import BadRequest, InvalidInput, Unavailable
from touchpoint.core.postgres import Postgres
from touchpoint.log.base import LogRecord
from touchpoint.log.sqlite import SqliteEventLog
from touchpoint.profiles.identity import IdentityResolver
from touchpoint.profiles.model import Identity, Profile
from touchpoint.profiles.store.base import ProfileStore, TimelineEvent
from touchpoint.profiles.store.postgres import MIGRATIONS, PostgresProfileStore
from touchpoint.profiles.store.sqlite import SqliteProfileStore
from touchpoint.stream.pipeline import ProfilePipeline

T0 = "2024-01-01T00:00:00.000Z"
T1 = "2024-01-02T00:00:00.000Z"
ANON_A = Identity("anonymous_id", "a")
ANON_B = Identity("anonymous_id", "b")
USER_1 = Identity("user_id", "u1")


def event(message_id: str, timestamp: str = T0, name: str = "Viewed") -> TimelineEvent:
    body = {"type": "track", "messageId": message_id, "event": name, "timestamp": timestamp}
    return TimelineEvent(message_id, timestamp, "track", name, body)


def create(store: ProfileStore, profile_id: str, *identities: Identity) -> None:
    with store.transaction() as writer:
        writer.create(Profile(profile_id=profile_id, created_at=T0))
        for identity in identities:
            writer.link(profile_id, identity, message_id=f"m-{profile_id}", at=T0)


@pytest.fixture
def store(postgres: Postgres) -> Iterator[PostgresProfileStore]:
    opened = PostgresProfileStore(postgres)
    yield opened
    opened.close()


@pytest.fixture
def reopen(postgres_schema: str) -> Iterator[Callable[[], PostgresProfileStore]]:
    """Open the store again on the same schema with a pool of its own (a restart)."""
    opened: list[Postgres] = []

    def open_again() -> PostgresProfileStore:
        service = Postgres(servers.postgres_config(postgres_schema))
        opened.append(service)
        return PostgresProfileStore(service)

    yield open_again
    for service in opened:
        service.close()


def blocked(schema: str) -> int:
    """How many backends wait for a lock held by a backend that holds a lock on one of the
    schema's tables (so other tests' schemas never count)."""
    with psycopg.connect(servers.POSTGRES_URL, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity AS w WHERE w.wait_event_type = 'Lock' "
            "AND EXISTS (SELECT 1 FROM pg_locks AS l JOIN pg_class AS c ON c.oid = l.relation "
            "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND l.pid = ANY(pg_blocking_pids(w.pid)))",
            (schema,),
        ).fetchone()
    return int(row[0]) if row else 0


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting until {what}")
        time.sleep(0.01)


class Background:
    """Run `work` in a thread; `result()` joins it and returns its value or raises."""

    def __init__(self, work: Callable[[], Any]) -> None:
        self._outcome: list[Any] = []
        self._error: list[BaseException] = []

        def run() -> None:
            try:
                self._outcome.append(work())
            except BaseException as error:  # handed to the test thread
                self._error.append(error)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def result(self) -> Any:
        self._thread.join(30)
        assert not self._thread.is_alive(), "the background transaction never finished"
        if self._error:
            raise self._error[0]
        return self._outcome[0]


# -- migrations and restarts ----------------------------------------------------------------


def test_reopening_the_schema_applies_nothing_and_keeps_everything(
    store: PostgresProfileStore, postgres: Postgres, reopen: Callable[[], PostgresProfileStore]
) -> None:
    assert postgres.pending(MIGRATIONS) == []
    create(store, "p1", ANON_A)
    with store.transaction() as writer:
        writer.record_event("p1", event("m1"))
        writer.set_segment("p1", "active", member=True, at=T0)
    store.close()
    postgres.close()  # the first process is gone

    again = reopen()
    assert again.find(ANON_A) == "p1"
    profile = again.get("p1")
    assert profile is not None and profile.segments == {"active": T0}
    assert [item.message_id for item in again.events("p1").items] == ["m1"]
    with again.transaction() as writer:
        assert writer.record_event("p1", event("m1")) is False  # still applied


def test_an_uncompressed_redirect_chain_is_still_followed_to_its_end(
    store: PostgresProfileStore, postgres_schema: str
) -> None:
    create(store, "a", USER_1)
    with psycopg.connect(servers.POSTGRES_URL, options=f"-c search_path={postgres_schema}") as db:
        # As if a merge had failed to compress the chain: c -> b -> a.
        db.execute("INSERT INTO profile_redirects VALUES ('c', 'b'), ('b', 'a')")
    got = store.get("c")
    assert got is not None and got.profile_id == "a"
    with store.transaction() as writer:
        writer.record_event("a", event("m1"))
    assert [item.message_id for item in store.events("c").items] == ["m1"]


# -- lost connections ---------------------------------------------------------------------


def kill_backends_blocked_by(holder_pid: int, stop: threading.Event) -> None:
    with psycopg.connect(servers.POSTGRES_URL, autocommit=True) as killer:
        while not stop.wait(0.005):
            killer.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE %s = ANY(pg_blocking_pids(pid))",
                (holder_pid,),
            )


def test_a_connection_killed_mid_transaction_is_unavailable_and_nothing_is_applied(
    store: PostgresProfileStore, postgres_schema: str, reopen: Callable[[], PostgresProfileStore]
) -> None:
    create(store, "keep")
    holder = psycopg.connect(servers.POSTGRES_URL, options=f"-c search_path={postgres_schema}")
    holder.execute("SELECT 1 FROM profiles WHERE profile_id = 'keep' FOR UPDATE")
    stop = threading.Event()
    killer = threading.Thread(
        target=kill_backends_blocked_by, args=(holder.info.backend_pid, stop), daemon=True
    )
    killer.start()
    try:
        with pytest.raises(Unavailable), store.transaction() as writer:
            writer.create(Profile(profile_id="gone", created_at=T0))
            writer.link("gone", ANON_A, message_id="m1", at=T0)
            writer.record_event("gone", event("m1"))
            writer.set_segment("gone", "active", member=True, at=T0)
            writer.load("keep")  # waits for the holder's lock, and is killed there
    finally:
        stop.set()
        killer.join()
        holder.rollback()
        holder.close()

    for view in (store, reopen()):
        assert view.get("gone") is None
        assert view.find(ANON_A) is None
        assert view.segment_changes() == []
        assert view.count() == 1
    with store.transaction() as writer:  # the pool replaced the dead connection
        assert writer.record_event("keep", event("m1")) is True


def test_a_read_on_a_connection_the_server_dropped_is_answered_on_a_fresh_one(
    store: PostgresProfileStore, postgres_schema: str
) -> None:
    create(store, "p1", ANON_A)
    service = Postgres(servers.postgres_config(postgres_schema, pool_min=1, pool_max=1))
    try:
        reader = PostgresProfileStore(service)
        assert reader.find(ANON_A) == "p1"
        with psycopg.connect(servers.POSTGRES_URL, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND state = 'idle'",
                (f"touchpoint:{postgres_schema}",),
            ).fetchall()
        assert killed  # the reader's idle connection is dead now (as after a restart)
        assert reader.find(ANON_A) == "p1"
        assert reader.get("p1") is not None
    finally:
        service.close()


def test_a_connection_lost_at_commit_commits_nothing(
    store: PostgresProfileStore, postgres_schema: str
) -> None:
    create(store, "keep")
    with pytest.raises(Unavailable), store.transaction() as writer:
        writer.record_event("keep", event("m1"))
        profile = writer.load("keep")
        assert profile is not None
        profile.traits["plan"] = "pro"
        writer.save(profile)  # buffered: written by the flush at commit, which finds no server
        with psycopg.connect(servers.POSTGRES_URL, autocommit=True) as killer:
            killer.execute(
                "SELECT pg_terminate_backend(l.pid) FROM pg_locks AS l "
                "JOIN pg_class AS c ON c.oid = l.relation "
                "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = 'timeline' AND l.mode = 'RowExclusiveLock'",
                (postgres_schema,),
            )
    got = store.get("keep")
    assert got is not None and got.traits == {} and got.version == 0
    assert store.events("keep").items == []


# -- concurrent writers -------------------------------------------------------------------


def test_two_transactions_racing_to_create_one_identity_end_with_one_profile(
    store: PostgresProfileStore,
) -> None:
    resolver = IdentityResolver(parse_config({}).identity)
    both_looked = threading.Barrier(2)
    retries: list[str] = []

    def apply(name: str) -> str:
        first = True
        while True:
            try:
                with store.transaction() as writer:
                    writer.find_many([USER_1])
                    if first:  # both saw the identity unknown before either linked it
                        first = False
                        both_looked.wait(20)
                    identities = [USER_1, Identity("anonymous_id", name)]
                    resolution = resolver.resolve(writer, identities, message_id=f"m-{name}", at=T0)
                    writer.record_event(resolution.profile_id, event(f"e-{name}"))
                    return resolution.profile_id
            except Unavailable:  # what the stream processor does: retry the whole batch
                retries.append(name)

    first, second = Background(lambda: apply("x")), Background(lambda: apply("y"))
    assert first.result() == second.result()
    assert len(retries) == 1
    profile_id = store.find(USER_1)
    assert profile_id is not None and store.count() == 1
    profile = store.get(profile_id)
    assert profile is not None
    assert {identity.value for identity in profile.identities} == {"u1", "x", "y"}
    assert sorted(item.message_id for item in store.events(profile_id).items) == ["e-x", "e-y"]


def test_linking_an_identity_another_transaction_linked_meanwhile_is_unavailable(
    store: PostgresProfileStore,
) -> None:
    with pytest.raises(Unavailable), store.transaction() as late:
        assert late.find_many([USER_1]) == {}
        create(store, "early", USER_1)  # another transaction commits the identity
        late.create(Profile(profile_id="late", created_at=T0))
        late.link("late", USER_1, message_id="m", at=T0)
    assert store.find(USER_1) == "early" and store.count() == 1


def test_a_profile_merged_away_by_another_transaction_is_unavailable_on_load(
    store: PostgresProfileStore,
) -> None:
    create(store, "survivor", USER_1)
    create(store, "merged", ANON_A)
    with pytest.raises(Unavailable), store.transaction() as late:
        assert late.find_many([ANON_A]) == {ANON_A: "merged"}
        with store.transaction() as early:
            early.merge("survivor", "merged", identity=ANON_A, message_id="m", at=T1)
        late.load("merged")
    with store.transaction() as writer:  # an id nobody resolved to is simply absent
        assert writer.load("merged") is None


def test_load_waits_for_the_holder_and_then_sees_what_it_committed(
    store: PostgresProfileStore, postgres_schema: str
) -> None:
    create(store, "p1", ANON_A)

    def increment() -> list[Identity]:
        with store.transaction() as writer:
            profile = writer.load("p1")  # blocks until the first transaction commits
            assert profile is not None
            profile.traits["count"] = profile.traits.get("count", 0) + 1
            writer.save(profile)
            return profile.identities

    with store.transaction() as first:
        profile = first.load("p1")
        assert profile is not None
        second = Background(increment)
        wait_until(lambda: blocked(postgres_schema) == 1, "the second load waits")
        first.link("p1", ANON_B, message_id="m2", at=T1)
        profile.traits["count"] = 1
        first.save(profile)
    assert second.result() == [ANON_A, ANON_B]  # read after the lock, not before
    got = store.get("p1")
    assert got is not None and got.traits == {"count": 2} and got.version == 2


def test_a_deadlock_between_two_writers_is_unavailable_for_one_of_them(
    store: PostgresProfileStore, postgres_schema: str
) -> None:
    create(store, "p1")
    create(store, "p2")
    second_holds_p2 = threading.Event()

    def opposite_order() -> bool:
        try:
            with store.transaction() as writer:
                writer.load("p2")
                second_holds_p2.set()
                writer.load("p1")
            return True
        except Unavailable:
            return False

    committed = []
    try:
        with store.transaction() as first:
            first.load("p1")
            second = Background(opposite_order)
            assert second_holds_p2.wait(20)
            wait_until(lambda: blocked(postgres_schema) == 1, "the second waits for p1")
            first.load("p2")  # a cycle: PostgreSQL aborts one of the two after 1 s
        committed.append("first")
    except Unavailable:
        pass
    if second.result():
        committed.append("second")
    assert len(committed) == 1


@pytest.mark.parametrize("first_commits", [True, False])
def test_the_same_message_id_recorded_by_two_transactions_is_applied_once(
    store: PostgresProfileStore, postgres_schema: str, first_commits: bool
) -> None:
    create(store, "p1")
    create(store, "p2")

    def record_again() -> bool:
        with store.transaction() as writer:
            return writer.record_event("p2", event("m1"))

    rolled_back = contextlib.nullcontext() if first_commits else pytest.raises(RuntimeError)
    with rolled_back, store.transaction() as first:
        assert first.record_event("p1", event("m1")) is True
        second = Background(record_again)
        wait_until(lambda: blocked(postgres_schema) == 1, "the second insert waits")
        if not first_commits:
            raise RuntimeError("roll back")
    assert second.result() is (not first_commits)
    owner = "p1" if first_commits else "p2"
    assert [item.message_id for item in store.events(owner).items] == ["m1"]


def test_segment_changes_get_their_ids_in_commit_order(
    store: PostgresProfileStore, postgres_schema: str
) -> None:
    create(store, "p1")
    create(store, "p2")

    def enter_later() -> None:
        with store.transaction() as writer:
            writer.set_segment("p2", "vip", member=True, at=T1)

    with store.transaction() as first:
        first.set_segment("p1", "vip", member=True, at=T0)
        first.load("p1")  # writes what is buffered: the change takes its id, uncommitted
        second = Background(enter_later)
        # Without the change-log lock the second would take a larger id and could commit
        # first: a reader paging by id would then skip the first change for good.
        wait_until(lambda: blocked(postgres_schema) == 1, "the second change waits")
    second.result()
    assert [change.profile_id for _, change in store.segment_changes()] == ["p1", "p2"]


# -- erasure against stream batches -------------------------------------------------------


def key(identity: Identity) -> str:
    return f"ts:{identity.kind}:{identity.value}"


def test_an_erasure_waits_for_the_batch_in_flight_and_erases_what_it_applied(
    store: PostgresProfileStore, postgres_schema: str
) -> None:
    create(store, "p1", USER_1)
    with store.transaction() as batch:
        assert batch.tombstoned([key(USER_1)]) == set()
        erasure = Background(lambda: store.erase("p1", tombstone_key=key, job_id="j", at=T1))
        wait_until(lambda: blocked(postgres_schema) == 1, "the erasure waits")
        assert batch.find_many([USER_1]) == {USER_1: "p1"}
        batch.record_event("p1", event("late"))
    erased = erasure.result()
    assert erased is not None and erased.message_ids == ("late",)
    assert store.find(USER_1) is None and store.tombstone(key(USER_1)) == "j"


def test_a_batch_waits_for_the_erasure_in_flight_and_sees_its_tombstones(
    store: PostgresProfileStore, postgres_schema: str
) -> None:
    create(store, "p1", USER_1)
    erasing, release = threading.Event(), threading.Event()

    def slow_key(identity: Identity) -> str:
        erasing.set()  # called inside the erase transaction, with the lock held
        release.wait(20)
        return key(identity)

    erasure = Background(lambda: store.erase("p1", tombstone_key=slow_key, job_id="j", at=T1))
    assert erasing.wait(20)

    def batch() -> set[str]:
        with store.transaction() as writer:
            return writer.tombstoned([key(USER_1)])

    checked = Background(batch)
    wait_until(lambda: blocked(postgres_schema) == 1, "the batch waits")
    release.set()
    assert erasure.result() is not None
    assert checked.result() == {key(USER_1)}


# -- values and documents -----------------------------------------------------------------


def test_profile_documents_round_trip_exactly(store: PostgresProfileStore) -> None:
    create(store, "p1")
    traits = {"zeta": 1, "alpha": "nul \x00 inside", "big": 1e16, "nested": {"b": [1.5], "a": {}}}
    with store.transaction() as writer:
        profile = writer.load("p1")
        assert profile is not None
        profile.traits = dict(traits)
        writer.save(profile)
        writer.record_event("p1", event("m1"))
    got = store.get("p1")
    assert got is not None
    assert list(got.traits) == ["zeta", "alpha", "big", "nested"]  # key order kept
    assert got.traits == traits and isinstance(got.traits["big"], float)
    payload = store.events("p1").items[0]
    assert payload.encoded == orjson.dumps(payload.event)  # the stored bytes, as given


def test_text_postgresql_cannot_hold_is_not_found_on_read_and_refused_on_write(
    store: PostgresProfileStore,
) -> None:
    create(store, "p1", ANON_A)
    nul = "a\x00b"
    assert store.find(Identity("user_id", nul)) is None
    assert store.get(nul) is None
    assert store.events(nul).items == []
    assert store.lineage(nul) == [] and store.segment_history(nul) == []
    assert store.segment_members(nul).items == []
    assert store.tombstone(nul) is None
    assert store.erase(nul, tombstone_key=key, job_id="j", at=T1) is None
    with pytest.raises(InvalidInput), store.transaction() as writer:
        writer.link("p1", Identity("user_id", nul), message_id="m", at=T0)
    with pytest.raises(InvalidInput), store.transaction() as writer:
        writer.record_event("p1", event(nul))
    assert store.find(ANON_A) == "p1"


def test_forged_cursors_are_bad_requests(store: PostgresProfileStore) -> None:
    def forged(*parts: object) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(list(parts))).decode()

    for cursor in (forged(1, 2), forged("t", "x"), forged("t", -1), forged("t", 2**63)):
        with pytest.raises(BadRequest):
            store.events("p1", cursor=cursor)
    with pytest.raises(BadRequest):
        store.profile_ids(cursor=forged("a\x00"))
    assert store.profile_ids(cursor=forged(5)).items == []  # any text resumes somewhere


# -- the stream processor with two workers ------------------------------------------------

NOW = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
PROCESSOR_CONFIG = {
    "features": [
        {"name": "views", "type": "count", "event": "Product Viewed"},
        {"name": "revenue", "type": "sum", "event": "Order Completed", "property": "revenue"},
    ],
    "segments": [{"name": "buyers", "condition": "features.revenue > 0"}],
}


def person_events(index: int) -> list[tuple[str, dict[str, Any]]]:
    """One person's events, keyed as the collector routes them: two devices (anonymous
    ids, each its own partition key) and the user id once they log in on both."""
    user, phone, laptop = f"user-{index}", f"phone-{index}", f"laptop-{index}"
    at = [
        (NOW - timedelta(hours=10 - step)).isoformat().replace("+00:00", "Z") for step in range(6)
    ]

    def message(step: int, kind: str, **fields: Any) -> dict[str, Any]:
        body = {"type": kind, "messageId": f"m-{index}-{step}", "timestamp": at[step]}
        return {**body, "receivedAt": at[step], **fields}

    return [
        (phone, message(0, "track", anonymousId=phone, event="Product Viewed")),
        (laptop, message(1, "track", anonymousId=laptop, event="Product Viewed")),
        (phone, message(2, "identify", anonymousId=phone, userId=user, traits={"plan": "pro"})),
        (laptop, message(3, "identify", anonymousId=laptop, userId=user, traits={"plan": "max"})),
        (
            user,
            message(4, "track", userId=user, event="Order Completed", properties={"revenue": 5}),
        ),
        (laptop, message(5, "track", anonymousId=laptop, event="Product Viewed")),
    ]


def people(store: ProfileStore, count: int) -> list[tuple[Any, ...]]:
    """Every person as comparable data, whatever their profile ids."""
    seen = []
    for index in range(count):
        profile_id = store.find(Identity("user_id", f"user-{index}"))
        assert profile_id is not None
        profile = store.get(profile_id)
        assert profile is not None
        seen.append(
            (
                sorted(identity.value for identity in profile.identities),
                profile.traits,
                profile.features,
                sorted(profile.segments),
                sorted(item.message_id for item in store.events(profile_id, limit=100).items),
            )
        )
    return seen


def test_two_workers_on_one_persons_partitions_build_what_one_worker_builds(
    store: PostgresProfileStore, tmp_path: Path
) -> None:
    config = parse_config(PROCESSOR_CONFIG)
    log = SqliteEventLog(tmp_path / "log.sqlite3", partitions=4, dedup_window=timedelta(hours=1))
    count = 12
    records = [
        LogRecord(routing_key, body["messageId"], orjson.dumps(body))
        for index in range(count)
        for routing_key, body in person_events(index)
    ]
    log.append(records)

    def drain(processor: LogConsumer) -> None:
        while True:
            try:
                if processor.run_once(max_records=3) == 0:
                    return
            except Unavailable:  # a race or a deadlock: the batch comes back
                continue

    owned = ([0, 1], [2, 3])
    pipelines = [ProfilePipeline(config, log, store, clock=lambda: NOW) for _ in owned]
    workers = [
        LogConsumer(log, pipeline, partitions=partitions)
        for pipeline, partitions in zip(pipelines, owned, strict=True)
    ]
    running = [Background(functools.partial(drain, worker)) for worker in workers]
    for thread in running:
        thread.result()

    embedded = SqliteProfileStore(tmp_path / "profiles.sqlite3")
    try:
        single = LogConsumer(
            log, ProfilePipeline(config, log, embedded, group="single", clock=lambda: NOW)
        )
        while single.run_once():
            pass
        assert store.count() == embedded.count() == count
        assert people(store, count) == people(embedded, count)
        assert sum(pipeline.processed for pipeline in pipelines) == len(records)
        assert sum(worker.failed for worker in workers) == 0
    finally:
        embedded.close()
        log.close()


def test_an_expected_event_applied_by_another_transaction_meanwhile_retries_the_batch(
    store: PostgresProfileStore,
) -> None:
    create(store, "p1")
    with pytest.raises(Unavailable, match="applied concurrently"):  # noqa: SIM117
        with store.transaction() as slow:
            slow.expect_events(["m1"])  # not applied yet, as far as this transaction sees
            assert slow.record_event("p1", event("m1")) is True
            with store.transaction() as fast:
                fast.expect_events(["m1"])
                assert fast.record_event("p1", event("m1")) is True
    assert [item.message_id for item in store.events("p1").items] == ["m1"]
