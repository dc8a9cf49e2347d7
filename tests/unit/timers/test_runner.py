"""The timer runner on a real (SQLite) store and a ManualClock: what it fires, when, and what
it does with failures, unknown kinds and leases that ran out."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import TEST_START
from touchpoint.core.clock import ManualClock
from touchpoint.timers.base import Timer, TimerStore
from touchpoint.timers.runner import TimerRunner
from touchpoint.timers.sqlite import SqliteTimerStore


@dataclass
class Recorder:
    """A handler that records what it fired; fails while `failures` is positive."""

    kind: str = "remind"
    fired: list[str] = field(default_factory=list)
    failures: int = 0
    on_fire: object = None

    def fire(self, timer: Timer) -> None:
        if callable(self.on_fire):
            self.on_fire(timer)
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("the mail server said no")
        self.fired.append(timer.key)


class RecordingEvent(threading.Event):
    """A stop event that records how long it was asked to wait, without waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return self.is_set()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(TEST_START)


@pytest.fixture
def store(tmp_path: Path, clock: ManualClock) -> Iterator[TimerStore]:
    opened = SqliteTimerStore(tmp_path / "timers.sqlite3", clock=clock, max_attempts=4)
    yield opened
    opened.close()


def later(seconds: float) -> datetime:
    return TEST_START + timedelta(seconds=seconds)


def runner_for(
    store: TimerStore, clock: ManualClock, *handlers: Recorder, **options: float
) -> TimerRunner:
    return TimerRunner(store, handlers, clock=clock, owner="runner-1", **options)  # type: ignore[arg-type]


def test_fires_due_timers_by_kind_and_completes_them(store: TimerStore, clock: ManualClock) -> None:
    remind, expire = Recorder("remind"), Recorder("expire")
    runner = runner_for(store, clock, remind, expire)
    store.schedule("r1", "remind", later(0))
    store.schedule("e1", "expire", later(-5))
    store.schedule("r2", "remind", later(60))
    assert runner.step() == 2
    assert remind.fired == ["r1"] and expire.fired == ["e1"]
    assert store.get("r1").state == "fired" and store.get("e1").state == "fired"  # type: ignore[union-attr]
    assert runner.step() == 0
    clock.advance(60)
    assert runner.step() == 1 and remind.fired == ["r1", "r2"]
    assert runner.fired == 3


def test_a_failing_handler_is_retried_with_exponential_backoff_then_fails(
    store: TimerStore, clock: ManualClock
) -> None:
    handler = Recorder(failures=100)
    runner = runner_for(store, clock, handler, first_retry_seconds=10, max_retry_seconds=25)
    store.schedule("k", "remind", later(0))
    retries = []
    for _ in range(3):
        assert runner.step() == 1
        timer = store.get("k")
        assert timer is not None and timer.state == "pending"
        assert timer.last_error == "RuntimeError: the mail server said no"
        retries.append((timer.due_at - clock.now()).total_seconds())
        assert runner.step() == 0, "not before its retry time"
        clock.set(timer.due_at)
    assert retries == [10, 20, 25]  # doubling, capped
    assert runner.step() == 1  # the fourth attempt, the store's last
    assert store.get("k").state == "failed"  # type: ignore[union-attr]
    assert handler.fired == [] and runner.failed_fires == 4


def test_a_handler_that_recovers_fires_once(store: TimerStore, clock: ManualClock) -> None:
    handler = Recorder(failures=1)
    runner = runner_for(store, clock, handler, first_retry_seconds=5)
    store.schedule("k", "remind", later(0))
    runner.step()
    clock.advance(5)
    runner.step()
    assert handler.fired == ["k"]
    timer = store.get("k")
    assert timer is not None and timer.state == "fired" and timer.attempts == 2


def test_an_unknown_kind_is_released_for_later_without_spending_attempts(
    store: TimerStore, clock: ManualClock
) -> None:
    old = runner_for(store, clock, Recorder("remind"), unknown_kind_retry_seconds=30)
    store.schedule("k", "new.kind", later(0))
    for _ in range(10):
        assert old.step() == 1
        timer = store.get("k")
        assert timer is not None and timer.state == "pending" and timer.attempts == 0
        assert timer.due_at == clock.now() + timedelta(seconds=30)
        assert timer.last_error is not None and "new.kind" in timer.last_error
        clock.advance(30)
    upgraded = Recorder("new.kind")
    assert runner_for(store, clock, upgraded).step() == 1
    assert upgraded.fired == ["k"] and store.get("k").state == "fired"  # type: ignore[union-attr]


def test_a_timer_whose_lease_ran_out_in_the_batch_is_given_back_unfired(
    store: TimerStore, clock: ManualClock
) -> None:
    handler = Recorder(on_fire=lambda timer: clock.advance(20))  # each fire takes 20 s
    runner = runner_for(store, clock, handler, lease_seconds=30)
    for key in ("a", "b", "c"):
        store.schedule(key, "remind", later(0))
    assert runner.step() == 3
    assert handler.fired == ["a", "b"], "c's lease had run out when its turn came"
    left = store.get("c")
    assert left is not None and left.state == "pending" and left.attempts == 0
    assert runner.step() == 1 and handler.fired == ["a", "b", "c"]


def test_a_timer_cancelled_while_it_fires_is_not_completed(
    store: TimerStore, clock: ManualClock
) -> None:
    handler = Recorder(on_fire=lambda timer: store.cancel(timer.key))
    runner = runner_for(store, clock, handler)
    store.schedule("k", "remind", later(0))
    runner.step()
    assert store.get("k").state == "cancelled" and runner.fired == 0  # type: ignore[union-attr]


def test_wait_sleeps_until_the_next_timer_at_most_the_cap(
    store: TimerStore, clock: ManualClock
) -> None:
    runner = runner_for(store, clock, Recorder(), max_wait_seconds=1.0)
    stop = RecordingEvent()
    runner.wait(stop)
    store.schedule("soon", "remind", later(0.3))
    runner.wait(stop)
    store.schedule("now", "remind", later(-1))
    runner.wait(stop)
    assert stop.waits == [1.0, pytest.approx(0.3), 0.0]
    store.cancel("now")
    store.cancel("soon")
    store.schedule("later", "remind", later(3600))
    runner.wait(stop)
    assert stop.waits[-1] == 1.0


def test_idle_means_nothing_due_now(store: TimerStore, clock: ManualClock) -> None:
    runner = runner_for(store, clock, Recorder())
    assert runner.idle()
    store.schedule("k", "remind", later(10))
    assert runner.idle()
    clock.advance(10)
    assert not runner.idle()
    runner.step()
    assert runner.idle()


def test_runs_in_its_thread_until_stopped(store: TimerStore, clock: ManualClock) -> None:
    handler = Recorder()
    runner = runner_for(store, clock, handler, max_wait_seconds=0.02)
    runner.start()
    try:
        for index in range(20):
            store.schedule(f"t{index:02d}", "remind", later(0))
        assert runner.wait_idle(10)
        assert sorted(handler.fired) == [f"t{index:02d}" for index in range(20)]
        store.schedule("later", "remind", later(60))
        clock.advance(60)
        assert runner.wait_idle(10) and handler.fired[-1] == "later"
        assert runner.running and not runner.failing
    finally:
        runner.stop()
    assert not runner.running


def test_a_store_failure_is_reported_and_the_loop_recovers(
    store: TimerStore, clock: ManualClock
) -> None:
    handler = Recorder()
    runner = runner_for(store, clock, handler, max_wait_seconds=0.02)
    real_claim = store.claim_due
    calls = {"n": 0}

    def flaky(owner: str, lease_seconds: float, limit: int) -> list[Timer]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk on fire")
        return real_claim(owner, lease_seconds, limit)

    store.claim_due = flaky  # type: ignore[method-assign]
    store.schedule("k", "remind", later(0))
    runner.start()
    try:
        assert runner.wait_idle(10)
        assert handler.fired == ["k"] and not runner.failing
    finally:
        runner.stop()


def test_two_handlers_for_one_kind_are_refused(store: TimerStore, clock: ManualClock) -> None:
    with pytest.raises(ValueError, match="remind"):
        runner_for(store, clock, Recorder("remind"), Recorder("remind"))


def test_an_owner_name_is_made_when_none_is_given(store: TimerStore, clock: ManualClock) -> None:
    first = TimerRunner(store, [], clock=clock)
    second = TimerRunner(store, [], clock=clock)
    assert first.owner and first.owner != second.owner
