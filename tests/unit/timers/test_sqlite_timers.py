"""What the SQLite timer store promises beyond the contract: claims and `next_due` read the
partial index of pending timers, and the embedded path loads no server client."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.conftest import TEST_START
from touchpoint.core.clock import ManualClock
from touchpoint.timers.sqlite import SqliteTimerStore


def plan(path: Path, sql: str) -> str:
    with sqlite3.connect(path) as connection:
        rows = connection.execute(f"EXPLAIN QUERY PLAN {sql}", ("2026-11-21T12:00:00.000Z", 5))
        return " ".join(str(row[-1]) for row in rows)


def test_claims_and_next_due_use_the_index_of_pending_timers(tmp_path: Path) -> None:
    path = tmp_path / "timers.sqlite3"
    SqliteTimerStore(path, clock=ManualClock(TEST_START)).close()
    claim = plan(
        path,
        "SELECT key, attempts FROM timers WHERE state = 'pending' AND ready_at <= ? "
        "ORDER BY ready_at, key LIMIT ?",
    )
    assert "USING INDEX timers_ready" in claim and "TEMP B-TREE" not in claim, claim
    with sqlite3.connect(path) as connection:
        next_due = " ".join(
            str(row[-1])
            for row in connection.execute(
                "EXPLAIN QUERY PLAN SELECT ready_at FROM timers WHERE state = 'pending' "
                "ORDER BY ready_at LIMIT 1"
            )
        )
    assert "timers_ready" in next_due and "TEMP B-TREE" not in next_due, next_due


def test_the_embedded_timer_path_loads_no_server_client() -> None:
    code = (
        "import sys, touchpoint.timers.base, touchpoint.timers.sqlite, touchpoint.timers.runner\n"
        "print(sorted(m for m in ('psycopg', 'psycopg_pool', 'redis') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
