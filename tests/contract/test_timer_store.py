"""The TimerStore contract, run against every backend.

Backends: embedded SQLite and PostgreSQL (a schema of the test's own). An opener called
twice opens the same storage twice (a restart, or a second process: for PostgreSQL, a new
connection pool). Every store of a test reads one `ManualClock`, so time moves only when
the test moves it.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.conftest import TEST_START
from tests.contract.openers import closing, postgres_opener
from touchpoint.core.clock import ManualClock
from touchpoint.core.config_stores import StoreConfig
from touchpoint.core.errors import InvalidInput
from touchpoint.timers.base import (
    DEFAULT_TIMERS_FILE,
    Timer,
    TimerStore,
    build_timer_store,
)
from touchpoint.timers.postgres import PostgresTimerStore
from touchpoint.timers.sqlite import SqliteTimerStore

Opener = Callable[[], TimerStore]
MAX_ATTEMPTS = 3


def _sqlite(request: pytest.FixtureRequest, directory: Path, clock: ManualClock) -> Opener:
    return lambda: SqliteTimerStore(
        directory / DEFAULT_TIMERS_FILE, clock=clock, max_attempts=MAX_ATTEMPTS
    )


def _postgres(request: pytest.FixtureRequest, directory: Path, clock: ManualClock) -> Opener:
    return postgres_opener(
        request,
        lambda postgres: PostgresTimerStore(postgres, clock=clock, max_attempts=MAX_ATTEMPTS),
    )


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path, ManualClock], Opener]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(TEST_START)


@pytest.fixture(params=sorted(BACKENDS))
def opener(request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock) -> Iterator[Opener]:
    """Opens the backend on this test's storage; everything opened is closed afterwards."""
    yield from closing(BACKENDS[request.param](request, tmp_path, clock))


@pytest.fixture
def store(opener: Opener) -> TimerStore:
    return opener()


def later(seconds: float) -> datetime:
    return TEST_START + timedelta(seconds=seconds)


def claim_one(store: TimerStore, owner: str = "a", lease: float = 30.0) -> Timer:
    claimed = store.claim_due(owner, lease, 10)
    assert len(claimed) == 1, claimed
    return claimed[0]


# -- schedule ---------------------------------------------------------------------------------


def test_schedule_stores_a_pending_timer(store: TimerStore) -> None:
    payload = {"step": 2, "nested": {"ü": [1, None, True]}, "text": "a\x00b"}
    due = datetime(2026, 11, 22, 8, 30, 15, 123456, tzinfo=UTC)
    timer = store.schedule("journey:p1:step2", "journey.step", due, payload, profile_id="p1")
    assert timer.key == "journey:p1:step2" and timer.kind == "journey.step"
    assert timer.due_at == due.replace(microsecond=123000)  # stored to the millisecond
    assert timer.payload == payload and timer.profile_id == "p1"
    assert timer.state == "pending" and timer.attempts == 0
    assert timer.lease_owner is None and timer.lease_until is None
    assert timer.scheduled_at == TEST_START and timer.finished_at is None
    assert store.get("journey:p1:step2") == timer
    assert store.get("unknown") is None


def test_due_times_in_any_zone_are_stored_as_utc(store: TimerStore) -> None:
    zone = datetime(2026, 11, 21, 16, 0, tzinfo=timezone(timedelta(hours=2)))
    timer = store.schedule("k", "kind", zone)
    assert timer.due_at == datetime(2026, 11, 21, 14, 0, tzinfo=UTC)
    assert timer.due_at.utcoffset() == timedelta(0)


def test_a_pending_key_keeps_its_first_schedule(store: TimerStore, clock: ManualClock) -> None:
    first = store.schedule("k", "remind", later(60), {"n": 1}, profile_id="p1")
    clock.advance(10)
    again = store.schedule("k", "other", later(3600), {"n": 2}, profile_id="p2")
    assert again == first
    assert store.get("k") == first


def test_a_replayed_schedule_does_not_fire_a_fired_key_again(
    store: TimerStore, clock: ManualClock
) -> None:
    store.schedule("k", "remind", later(0))
    assert store.complete(claim_one(store).key, "a")
    clock.advance(60)
    replayed = store.schedule("k", "remind", later(60))
    assert replayed.state == "fired" and replayed.due_at == later(0)
    assert store.claim_due("b", 30, 10) == []
    assert store.next_due() is None


def test_a_cancelled_key_is_remembered(store: TimerStore) -> None:
    store.schedule("k", "remind", later(0))
    assert store.cancel("k")
    assert store.schedule("k", "remind", later(0)).state == "cancelled"
    assert store.claim_due("a", 30, 10) == []


def test_schedule_refuses_bad_input(store: TimerStore) -> None:
    with pytest.raises(InvalidInput):
        store.schedule("", "kind", later(0))
    with pytest.raises(InvalidInput):
        store.schedule("k\x00", "kind", later(0))
    with pytest.raises(InvalidInput):
        store.schedule("k", "", later(0))
    with pytest.raises(InvalidInput):
        store.schedule("k", "kind", datetime(2026, 1, 1))  # no timezone
    with pytest.raises(InvalidInput):
        store.schedule("k", "kind", later(0), {"when": object()})
    with pytest.raises(InvalidInput):
        store.schedule("k", "kind", later(0), ["not", "an", "object"])  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        store.schedule("k" * 513, "kind", later(0))
    assert store.get("k") is None
    assert store.get("k\x00") is None


# -- claims and leases ------------------------------------------------------------------------


def test_claim_takes_due_timers_earliest_first(store: TimerStore) -> None:
    for key, seconds in (("c", 30), ("a", -10), ("future", 120), ("b", 0), ("d", 5)):
        store.schedule(key, "kind", later(seconds))
    claimed = store.claim_due("owner-1", 45, 10)
    assert [timer.key for timer in claimed] == ["a", "b"]
    for timer in claimed:
        assert timer.lease_owner == "owner-1" and timer.attempts == 1
        assert timer.lease_until == later(45)
        assert store.get(timer.key) == timer
    assert store.get("c") is not None and store.get("c").lease_owner is None  # type: ignore[union-attr]


def test_claims_are_limited_and_ordered(store: TimerStore) -> None:
    for index in range(7):
        store.schedule(f"t{index}", "kind", later(-index))
    first = store.claim_due("a", 30, 3)
    second = store.claim_due("a", 30, 3)
    third = store.claim_due("a", 30, 3)
    assert [t.key for t in first] == ["t6", "t5", "t4"]
    assert [t.key for t in second] == ["t3", "t2", "t1"]
    assert [t.key for t in third] == ["t0"]
    assert store.claim_due("a", 30, 3) == []


def test_claim_is_driven_by_the_clock(store: TimerStore, clock: ManualClock) -> None:
    store.schedule("k", "kind", later(3600))
    assert store.claim_due("a", 30, 10) == []
    clock.advance(3599.999)
    assert store.claim_due("a", 30, 10) == []
    clock.advance(0.001)
    assert claim_one(store).key == "k"


def test_a_leased_timer_is_not_claimed_again_until_its_lease_expires(
    store: TimerStore, clock: ManualClock
) -> None:
    store.schedule("k", "kind", later(0))
    claim_one(store, "a", lease=30)
    assert store.claim_due("b", 30, 10) == []
    clock.advance(29.999)
    assert store.claim_due("b", 30, 10) == []
    clock.advance(0.001)
    retaken = claim_one(store, "b", lease=30)
    assert retaken.lease_owner == "b" and retaken.attempts == 2
    assert not store.complete("k", "a"), "the first holder lost its lease to b"
    assert store.complete("k", "b")
    assert store.get("k").state == "fired"  # type: ignore[union-attr]


def test_two_owners_never_hold_one_timer(opener: Opener) -> None:
    first, second = opener(), opener()  # two connections / pools: two processes
    keys = [f"t{index:03d}" for index in range(150)]
    for key in keys:
        first.schedule(key, "kind", later(0))
    claims: Counter[str] = Counter()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def claimer(store: TimerStore, owner: str) -> None:
        try:
            while True:
                claimed = store.claim_due(owner, 300, 7)
                if not claimed:
                    return
                with lock:
                    claims.update(timer.key for timer in claimed)
                for timer in claimed:
                    assert timer.lease_owner == owner
                    assert store.complete(timer.key, owner)
        except BaseException as error:  # reported by the test below
            errors.append(error)

    threads = [
        threading.Thread(target=claimer, args=(store, f"owner-{index}"))
        for index, store in enumerate([first, second, first, second])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert sorted(claims) == keys
    assert set(claims.values()) == {1}, "a timer was claimed by two owners"
    assert all(first.get(key).state == "fired" for key in keys)  # type: ignore[union-attr]


def test_claim_refuses_bad_arguments(store: TimerStore) -> None:
    for owner, lease, limit in (("", 30, 1), ("a", 0, 1), ("a", -1, 1), ("a", 30, 0)):
        with pytest.raises(InvalidInput):
            store.claim_due(owner, lease, limit)
    with pytest.raises(InvalidInput):
        store.claim_due("a", float("inf"), 1)


# -- complete and release ---------------------------------------------------------------------


def test_only_the_holder_completes(store: TimerStore, clock: ManualClock) -> None:
    store.schedule("k", "kind", later(0))
    assert not store.complete("k", "a"), "nobody holds it yet"
    claim_one(store, "a")
    assert not store.complete("k", "b")
    assert not store.complete("unknown", "a")
    clock.advance(5)
    assert store.complete("k", "a")
    assert not store.complete("k", "a"), "a timer completes once"
    done = store.get("k")
    assert done is not None and done.state == "fired" and done.finished_at == later(5)
    assert done.lease_owner is None and done.lease_until is None


def test_a_holder_whose_lease_ran_out_may_still_complete_if_nobody_took_it(
    store: TimerStore, clock: ManualClock
) -> None:
    store.schedule("k", "kind", later(0))
    claim_one(store, "a", lease=10)
    clock.advance(60)
    assert store.complete("k", "a")


def test_release_retries_later_then_fails_after_max_attempts(
    store: TimerStore, clock: ManualClock
) -> None:
    store.schedule("k", "kind", later(0))
    for attempt in range(1, MAX_ATTEMPTS):
        timer = claim_one(store, "a")
        assert timer.attempts == attempt
        assert not store.release("k", "b", later(0)), "only the holder releases"
        retry_at = clock.now() + timedelta(seconds=10 * attempt)
        assert store.release("k", "a", retry_at, error=f"boom {attempt}")
        released = store.get("k")
        assert released is not None and released.state == "pending"
        assert released.due_at == retry_at and released.lease_owner is None
        assert released.attempts == attempt and released.last_error == f"boom {attempt}"
        assert store.next_due() == retry_at
        assert store.claim_due("a", 30, 10) == []
        clock.set(retry_at)
    claim_one(store, "a")
    assert store.release("k", "a", clock.now() + timedelta(seconds=60), error="x" * 5000)
    failed = store.get("k")
    assert failed is not None and failed.state == "failed" and failed.attempts == MAX_ATTEMPTS
    assert failed.last_error == "x" * 1000 and failed.finished_at == clock.now()
    clock.advance(3600)
    assert store.claim_due("a", 30, 10) == [] and store.next_due() is None
    assert not store.release("k", "a", clock.now())


def test_a_release_without_a_failed_attempt_gives_the_attempt_back(
    store: TimerStore, clock: ManualClock
) -> None:
    store.schedule("k", "unknown.kind", later(0))
    for _ in range(MAX_ATTEMPTS * 2):
        timer = claim_one(store, "old-worker")
        assert timer.attempts == 1
        assert store.release("k", "old-worker", clock.now(), attempt_failed=False)
    assert store.get("k").state == "pending"  # type: ignore[union-attr]


def test_a_timer_whose_holders_keep_dying_fails(store: TimerStore, clock: ManualClock) -> None:
    store.schedule("k", "kind", later(0))
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert claim_one(store, f"worker-{attempt}", lease=10).attempts == attempt
        clock.advance(10)  # the worker died: its lease runs out
    assert store.claim_due("next", 10, 10) == []
    failed = store.get("k")
    assert failed is not None and failed.state == "failed"
    assert failed.last_error is not None and "3 times" in failed.last_error


# -- cancel, next_due, purge, erase -----------------------------------------------------------


def test_cancel(store: TimerStore, clock: ManualClock) -> None:
    store.schedule("pending", "kind", later(60))
    store.schedule("leased", "kind", later(0))
    store.schedule("fired", "kind", later(0))
    assert not store.cancel("unknown")
    claimed = store.claim_due("a", 30, 10)
    assert {t.key for t in claimed} == {"leased", "fired"}
    assert store.complete("fired", "a")
    assert store.cancel("pending") and store.cancel("leased")
    assert not store.cancel("fired") and not store.cancel("pending")
    assert not store.complete("leased", "a"), "a cancelled timer does not complete"
    assert store.get("leased").state == "cancelled"  # type: ignore[union-attr]
    clock.advance(3600)
    assert store.claim_due("a", 30, 10) == [] and store.next_due() is None


def test_a_failed_timer_can_be_cancelled(store: TimerStore) -> None:
    store.schedule("k", "kind", later(0))
    for _ in range(MAX_ATTEMPTS):
        claim_one(store, "a")
        store.release("k", "a", later(0))
    assert store.get("k").state == "failed"  # type: ignore[union-attr]
    assert store.cancel("k") and store.get("k").state == "cancelled"  # type: ignore[union-attr]


def test_next_due(store: TimerStore, clock: ManualClock) -> None:
    assert store.next_due() is None
    store.schedule("late", "kind", later(300))
    store.schedule("soon", "kind", later(20))
    assert store.next_due() == later(20)
    clock.advance(20)
    claim_one(store, "a", lease=100)
    assert store.next_due() == later(120), "a leased timer is next due when its lease ends"
    assert store.complete("soon", "a")
    assert store.next_due() == later(300)
    assert store.cancel("late")
    assert store.next_due() is None


def test_purge_forgets_finished_keys(store: TimerStore, clock: ManualClock) -> None:
    store.schedule("fired", "kind", later(0))
    store.schedule("cancelled", "kind", later(0))
    store.schedule("failed", "kind", later(0))
    store.schedule("pending", "kind", later(10_000))
    claimed = {t.key: t for t in store.claim_due("a", 30, 10)}
    assert set(claimed) == {"fired", "cancelled", "failed"}
    assert store.complete("fired", "a") and store.cancel("cancelled")
    store.release("failed", "a", clock.now())
    for _ in range(MAX_ATTEMPTS - 1):
        claim_one(store, "a")
        store.release("failed", "a", clock.now())
    assert store.get("failed").state == "failed"  # type: ignore[union-attr]
    clock.advance(60)
    store.schedule("recent", "kind", later(0))
    assert store.complete(claim_one(store, "a").key, "a")

    assert store.purge(later(60)) == 2  # fired and cancelled before that; not "recent"
    assert store.get("fired") is None and store.get("cancelled") is None
    assert store.get("recent") is not None and store.get("failed") is not None
    assert store.get("pending") is not None
    assert store.purge(later(60)) == 0
    again = store.schedule("fired", "kind", later(60))
    assert again.state == "pending", "a purged key can be scheduled anew"


def test_erase_profiles_deletes_a_persons_timers_in_every_state(
    store: TimerStore, clock: ManualClock
) -> None:
    store.schedule("p1-pending", "kind", later(60), {"email": "x@example.com"}, profile_id="p1")
    store.schedule("p1-fired", "kind", later(0), profile_id="p1")
    store.schedule("p1-leased", "kind", later(0), profile_id="p1")
    store.schedule("p2", "kind", later(60), profile_id="p2")
    store.schedule("nobody", "kind", later(60))
    assert store.complete(store.claim_due("a", 30, 1)[0].key, "a")
    assert len(store.claim_due("a", 30, 1)) == 1
    assert store.erase_profiles([]) == 0
    assert store.erase_profiles(["p1", "p3"]) == 3
    assert [store.get(k) for k in ("p1-pending", "p1-fired", "p1-leased")] == [None] * 3
    assert store.get("p2") is not None and store.get("nobody") is not None
    assert store.erase_profiles(["p1"]) == 0
    assert isinstance(store.scrub(), list)


def test_timers_survive_a_restart(opener: Opener, clock: ManualClock) -> None:
    first = opener()
    first.schedule("k", "kind", later(30), {"a": 1}, profile_id="p")
    first.schedule("leased", "kind", later(0))
    claim_one(first, "dead-worker", lease=10)
    first.close()
    reopened = opener()
    stored = reopened.get("k")
    assert stored is not None and stored.payload == {"a": 1} and stored.profile_id == "p"
    assert reopened.next_due() == later(10)
    clock.advance(30)
    assert [t.key for t in reopened.claim_due("new-worker", 10, 10)] == ["leased", "k"]


def test_build_timer_store_picks_sqlite_without_postgres(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = build_timer_store(StoreConfig(), tmp_path, clock=clock)
    try:
        assert isinstance(store, SqliteTimerStore)
        assert store.path == tmp_path / DEFAULT_TIMERS_FILE
    finally:
        store.close()
    custom = build_timer_store(StoreConfig(path=str(tmp_path / "x.db")), tmp_path, clock=clock)
    try:
        assert isinstance(custom, SqliteTimerStore) and custom.path == tmp_path / "x.db"
    finally:
        custom.close()


def test_build_timer_store_picks_postgres_when_given(
    postgres: object, tmp_path: Path, clock: ManualClock
) -> None:
    from touchpoint.core.postgres import Postgres

    assert isinstance(postgres, Postgres)
    store = build_timer_store(StoreConfig(type="postgres"), tmp_path, postgres, clock=clock)
    assert isinstance(store, PostgresTimerStore)
    assert store.schedule("k", "kind", later(0)).state == "pending"
