"""A worker process for tests/e2e/test_timer_crash.py: the real timer store and the real
TimerRunner, with a handler whose effect is idempotent, keyed by the timer's key.

Every fire attempt is recorded first (table `attempts`), then the effect is written
(`effects`, one row per key: a second fire of the same key changes nothing). With
`--crash-after N` the process SIGKILLs itself right after the N-th effect, before the
runner completes that timer: the worst moment, an effect done and not acknowledged.
SIGTERM stops the runner cleanly.

    python timer_worker.py --effects effects.sqlite3 --start 2026-11-21T12:00:00Z \
        (--sqlite timers.sqlite3 | --postgres URL --schema NAME) [--crash-after N]
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

from touchpoint.core.clock import Clock, parse_timestamp
from touchpoint.core.config_stores import PostgresConfig
from touchpoint.core.postgres import Postgres
from touchpoint.timers.base import Timer, TimerStore
from touchpoint.timers.postgres import PostgresTimerStore
from touchpoint.timers.runner import TimerRunner
from touchpoint.timers.sqlite import SqliteTimerStore

EFFECTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (key TEXT NOT NULL, pid INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, pid INTEGER NOT NULL);
"""


def open_effects(path: Path) -> sqlite3.Connection:
    """The handler's world: attempts and effects, shared by every worker process."""
    connection = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.executescript(EFFECTS_SCHEMA)
    return connection


class EffectHandler:
    """Records the attempt, waits `delay`, writes the effect once per key."""

    kind = "effect"

    def __init__(self, effects: sqlite3.Connection, delay: float, crash_after: int) -> None:
        self.effects = effects
        self.delay = delay
        self.crash_after = crash_after
        self.count = 0

    def fire(self, timer: Timer) -> None:
        pid = os.getpid()
        self.effects.execute("INSERT INTO attempts (key, pid) VALUES (?, ?)", (timer.key, pid))
        time.sleep(self.delay)
        self.effects.execute(
            "INSERT INTO effects (key, pid) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
            (timer.key, pid),
        )
        self.count += 1
        if self.count == self.crash_after:
            os.kill(pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--effects", type=Path, required=True)
    parser.add_argument("--start", required=True)
    parser.add_argument("--sqlite", type=Path)
    parser.add_argument("--postgres")
    parser.add_argument("--schema")
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--delay", type=float, default=0.005)
    parser.add_argument("--crash-after", type=int, default=0)
    args = parser.parse_args()

    start = parse_timestamp(args.start)
    assert start is not None
    clock = Clock.starting_at(start)
    store: TimerStore
    if args.postgres:
        service = Postgres(
            PostgresConfig.model_validate({"url": args.postgres, "schema": args.schema})
        )
        store = PostgresTimerStore(service, clock=clock)
    else:
        store = SqliteTimerStore(args.sqlite, clock=clock)
    handler = EffectHandler(open_effects(args.effects), args.delay, args.crash_after)
    runner = TimerRunner(
        store, [handler], clock=clock, lease_seconds=args.lease, batch=5, max_wait_seconds=0.05
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runner.run_forever(stop)
    store.close()


if __name__ == "__main__":
    main()
