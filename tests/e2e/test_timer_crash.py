"""SIGKILL timer workers while timers fire; after restarts every timer fired exactly once in
effect, though some fired more than once in attempts.

The worker (tests/e2e/timer_worker.py) runs the real store and the real TimerRunner; its
handler records every attempt, then writes its effect idempotently, keyed by the timer's
key. Three rounds on the same storage: a worker that kills itself right after an effect and
before completing that timer; a worker killed from outside at an arbitrary moment; then two
workers at once, which take over the dead workers' timers once their leases expire and
finish everything.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from tests import servers
from tests.conftest import TEST_START
from touchpoint.core.clock import Clock, isoformat
from touchpoint.core.postgres import Postgres
from touchpoint.timers.base import TimerStore
from touchpoint.timers.postgres import PostgresTimerStore
from touchpoint.timers.sqlite import SqliteTimerStore

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("timer_worker.py")
TIMERS = 150
LEASE_SECONDS = 1.0


class Backend:
    """Where the timers live, for the test and for the worker's command line."""

    def __init__(self, store: TimerStore, worker_args: list[str]) -> None:
        self.store = store
        self.worker_args = worker_args


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    clock = Clock.starting_at(TEST_START)
    if request.param == "sqlite":
        path = tmp_path / "timers.sqlite3"
        store: TimerStore = SqliteTimerStore(path, clock=clock)
        yield Backend(store, ["--sqlite", str(path)])
        store.close()
        return
    schema = request.getfixturevalue("postgres_schema")
    service = Postgres(servers.postgres_config(schema))
    store = PostgresTimerStore(service, clock=clock)
    yield Backend(store, ["--postgres", servers.POSTGRES_URL, "--schema", schema])
    service.close()


@dataclass
class Worker:
    """A worker process and the file its stderr goes to (a pipe nobody reads could fill up
    and block it)."""

    process: subprocess.Popen[bytes]
    errors: Path

    def stderr(self) -> str:
        return self.errors.read_text(errors="replace")[-3000:]


STARTED: list[Worker] = []


@pytest.fixture(autouse=True)
def kill_leftover_workers() -> Iterator[None]:
    """Whatever a failed test left running is killed."""
    yield
    while STARTED:
        worker = STARTED.pop()
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(30)


def start_worker(backend: Backend, effects: Path, *extra: str) -> Worker:
    errors = effects.with_name(f"worker-{len(list(effects.parent.glob('worker-*')))}.err")
    with errors.open("wb") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                "--effects",
                str(effects),
                "--start",
                isoformat(TEST_START),
                "--lease",
                str(LEASE_SECONDS),
                *backend.worker_args,
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    STARTED.append(Worker(process, errors))
    return STARTED[-1]


def rows(effects: Path, table: str) -> list[str]:
    if not effects.exists():
        return []
    with sqlite3.connect(effects, timeout=30) as connection:
        try:
            return [row[0] for row in connection.execute(f"SELECT key FROM {table}")]
        except sqlite3.OperationalError:  # the worker has not created its tables yet
            return []


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_killed_workers_fire_every_timer_exactly_once_in_effect(
    backend: Backend, tmp_path: Path
) -> None:
    store = backend.store
    effects = tmp_path / "effects.sqlite3"
    now = Clock.starting_at(TEST_START).now()
    keys = [f"timer-{index:03d}" for index in range(TIMERS)]
    for index, key in enumerate(keys):
        # Due over the next 1.5 s: some are due when a worker starts, others come due later.
        store.schedule(key, "effect", now + timedelta(milliseconds=10 * index), {"n": index})

    # 1. A worker that dies right after its 10th effect, before completing that timer.
    crashing = start_worker(backend, effects, "--crash-after", "10")
    assert crashing.process.wait(60) == -signal.SIGKILL, crashing.stderr()
    assert len(rows(effects, "effects")) == 10

    # 2. A worker killed from outside at whatever moment it has reached.
    killed = start_worker(backend, effects)
    wait_for(lambda: len(rows(effects, "attempts")) >= 40, 60, "the second worker to fire")
    killed.process.send_signal(signal.SIGKILL)
    assert killed.process.wait(30) == -signal.SIGKILL
    assert len(rows(effects, "effects")) < TIMERS, "the kill came too late to test anything"

    # 3. Two workers at once finish the rest, the dead workers' timers once their leases end.
    finishers = [start_worker(backend, effects) for _ in range(2)]
    try:
        wait_for(lambda: all(store.get(k).state == "fired" for k in keys), 90, "every timer")  # type: ignore[union-attr]
    finally:
        for worker in finishers:
            worker.process.send_signal(signal.SIGTERM)
        codes = [worker.process.wait(30) for worker in finishers]
    assert codes == [0, 0], [worker.stderr() for worker in finishers]

    effect_keys = Counter(rows(effects, "effects"))
    attempts = Counter(rows(effects, "attempts"))
    assert sorted(effect_keys) == keys, "every scheduled timer has its effect, once"
    assert set(attempts) == set(keys)
    assert sum(attempts.values()) > TIMERS, "some timer fired more than once in attempts"
    assert max(attempts.values()) >= 2
    # The store counts claims: a timer claimed in a batch whose worker died before its turn
    # counts an attempt its handler never saw.
    assert all(store.get(key).attempts >= attempts[key] for key in keys)  # type: ignore[union-attr]

    # A replayed schedule (a consumer re-reading its log) fires nothing again.
    for index, key in enumerate(keys):
        assert store.schedule(key, "effect", now, {"n": index}).state == "fired"
    assert store.next_due() is None
