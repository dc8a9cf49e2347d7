"""SQLite-specific behaviour of the event log: durability settings, group commit,
failure and rollback, restart, contiguous offsets, pruning and erasure."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from touchpoint.core.config_stores import LogConfig
from touchpoint.core.errors import DefinitionError, Unavailable
from touchpoint.log.base import LogRecord, build_event_log
from touchpoint.log.sqlite import SqliteEventLog
from touchpoint.log.sqlite_transaction import WriteTransaction

HOUR = timedelta(hours=1)


def record(message_id: str, key: str = "alice") -> LogRecord:
    return LogRecord(key=key, message_id=message_id, payload=message_id.encode())


def writer_pragma(log: SqliteEventLog, name: str) -> Any:
    """A pragma as the writer connection sees it, read on the writer thread."""
    return log._submit(lambda tx: tx.connection.execute(f"PRAGMA {name}").fetchone()[0])


class ControlledLog(SqliteEventLog):
    """A log whose writer can be held on a record named "hold" and made to fail on one
    named "boom", so tests can line callers up in the queue deterministically."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.holding = threading.Event()
        self.release = threading.Event()
        self.batches: list[int] = []
        super().__init__(*args, **kwargs)

    def _execute(self, batch: list[Any]) -> None:
        self.batches.append(len(batch))
        super()._execute(batch)

    def _insert(self, tx: WriteTransaction, records: Sequence[LogRecord]) -> Any:
        result = super()._insert(tx, records)
        ids = {item.message_id for item in records}
        if "hold" in ids:
            self.holding.set()
            assert self.release.wait(10)
        if "boom" in ids:
            raise RuntimeError("injected failure")
        return result

    def queued(self) -> int:
        return self._queue.qsize()


@pytest.fixture
def controlled(tmp_path: Path) -> Iterator[ControlledLog]:
    log = ControlledLog(tmp_path / "log.sqlite3", partitions=2, dedup_window=HOUR)
    yield log
    log.release.set()
    log.close()


def in_threads(
    count: int, target: Callable[[int], Any]
) -> tuple[list[Any], list[threading.Thread]]:
    outcomes: list[Any] = [None] * count

    def run(index: int) -> None:
        try:
            outcomes[index] = target(index)
        except BaseException as error:
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    return outcomes, threads


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def hold_writer(log: ControlledLog) -> threading.Thread:
    holder = threading.Thread(target=log.append, args=([record("hold")],))
    holder.start()
    assert log.holding.wait(5)
    return holder


def test_wal_and_durability_settings(tmp_path: Path) -> None:
    full = SqliteEventLog(tmp_path / "full.sqlite3", partitions=2, dedup_window=HOUR)
    normal = SqliteEventLog(
        tmp_path / "normal.sqlite3", partitions=2, dedup_window=HOUR, synchronous="normal"
    )
    try:
        assert writer_pragma(full, "journal_mode") == "wal"
        assert writer_pragma(full, "synchronous") == 2  # FULL
        assert writer_pragma(normal, "synchronous") == 1  # NORMAL
        assert writer_pragma(full, "busy_timeout") == 5000
    finally:
        full.close()
        normal.close()
    with pytest.raises(ValueError):
        SqliteEventLog(tmp_path / "x.sqlite3", partitions=2, dedup_window=HOUR, synchronous="off")


def test_offsets_are_contiguous_from_zero(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "log.sqlite3", partitions=1, dedup_window=HOUR)
    try:
        first = log.append([record("a"), record("b"), record("a")])
        second = log.append([record("c")])
        assert first.positions == ((0, 0), (0, 1), None)
        assert second.positions == ((0, 2),)
        assert log.end_offset(0) == 3
    finally:
        log.close()


def test_reopen_keeps_entries_offsets_commits_and_dedup(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    log = SqliteEventLog(path, partitions=3, dedup_window=HOUR)
    log.append([record(f"m{i}", key=f"k{i}") for i in range(30)])
    log.commit("processor", 1, 4)
    before = {part: log.read(part, 0, limit=100) for part in range(3)}
    ends = {part: log.end_offset(part) for part in range(3)}
    log.close()

    reopened = SqliteEventLog(path, partitions=3, dedup_window=HOUR)
    try:
        assert {part: reopened.read(part, 0, limit=100) for part in range(3)} == before
        assert reopened.committed("processor", 1) == 4
        assert reopened.count() == 30
        assert reopened.append([record("m3", key="k3")]).positions == (None,)
        (position,) = reopened.append([record("new", key="k3")]).positions
        assert position == (reopened.partition_for("k3"), ends[reopened.partition_for("k3")])
    finally:
        reopened.close()


def test_reopening_with_another_partition_count_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    SqliteEventLog(path, partitions=4, dedup_window=HOUR).close()
    with pytest.raises(DefinitionError) as raised:
        SqliteEventLog(path, partitions=8, dedup_window=HOUR)
    assert raised.value.path == "log.partitions"
    assert "4 partitions, not 8" in raised.value.reason


def test_group_commit_coalesces_waiting_callers_into_one_transaction(
    controlled: ControlledLog,
) -> None:
    holder = hold_writer(controlled)
    outcomes, threads = in_threads(
        8, lambda n: controlled.append([record(f"t{n}-{i}", key=f"k{i}") for i in range(5)])
    )
    wait_until(lambda: controlled.queued() == 8)
    controlled.release.set()
    for thread in [holder, *threads]:
        thread.join(5)
    assert controlled.batches[-1] == 8  # the 8 callers shared one transaction
    assert all(outcome.appended == 5 for outcome in outcomes)
    assert controlled.count() == 41


def test_dedup_across_callers_coalesced_into_one_transaction(controlled: ControlledLog) -> None:
    holder = hold_writer(controlled)
    outcomes, threads = in_threads(
        6, lambda n: controlled.append([record("same"), record(f"u{n}")])
    )
    wait_until(lambda: controlled.queued() == 6)
    controlled.release.set()
    for thread in [holder, *threads]:
        thread.join(5)
    assert controlled.batches[-1] == 6
    assert sum(outcome.positions[0] is not None for outcome in outcomes) == 1
    assert controlled.count() == 1 + 1 + 6


def test_a_failing_transaction_rolls_back_and_fails_every_caller_in_it(
    controlled: ControlledLog,
) -> None:
    holder = hold_writer(controlled)
    outcomes, threads = in_threads(
        5, lambda n: controlled.append([record(f"v{n}"), record("boom" if n == 3 else f"w{n}")])
    )
    wait_until(lambda: controlled.queued() == 5)
    controlled.release.set()
    for thread in [holder, *threads]:
        thread.join(5)
    assert controlled.batches[-1] == 5
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)
    assert controlled.count() == 1  # only "hold"
    assert [controlled.end_offset(part) for part in range(2)] == [
        int(controlled.partition_for("alice") == part) for part in range(2)
    ]
    retried = controlled.append([record("v0"), record("w0")])  # dedup keys rolled back too
    assert retried.appended == 2


def test_a_broken_connection_fails_the_callers_instead_of_hanging(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "log.sqlite3", partitions=2, dedup_window=HOUR)
    log.append([record("a")])
    log._writer_connection.close()
    with pytest.raises(sqlite3.ProgrammingError):
        log.append([record("b")])
    log.close()
    reopened = SqliteEventLog(tmp_path / "log.sqlite3", partitions=2, dedup_window=HOUR)
    try:
        assert [
            entry.message_id for entry in reopened.read(reopened.partition_for("alice"), 0)
        ] == ["a"]
    finally:
        reopened.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_callers_do_not_hang_when_the_writer_thread_dies(tmp_path: Path) -> None:
    class DyingLog(SqliteEventLog):
        def _execute(self, batch: list[Any]) -> None:
            raise SystemExit  # ends the writer thread without resolving the batch

    log = DyingLog(tmp_path / "log.sqlite3", partitions=2, dedup_window=HOUR)
    try:
        with pytest.raises(Unavailable):
            log.append([record("a")])
    finally:
        log.close()


def test_close_flushes_what_is_queued_then_refuses(controlled: ControlledLog) -> None:
    holder = hold_writer(controlled)
    outcomes, threads = in_threads(4, lambda n: controlled.append([record(f"q{n}")]))
    wait_until(lambda: controlled.queued() == 4)
    closer = threading.Thread(target=controlled.close)
    closer.start()
    wait_until(lambda: controlled._closed)
    controlled.release.set()
    for thread in [holder, *threads, closer]:
        thread.join(5)
    assert all(outcome.appended == 1 for outcome in outcomes)
    with pytest.raises(Unavailable):
        controlled.append([record("late")])
    with pytest.raises(Unavailable):
        controlled.read(0, 0)
    reopened = SqliteEventLog(controlled.path, partitions=2, dedup_window=HOUR)
    try:
        assert reopened.count() == 5
    finally:
        reopened.close()


def test_two_instances_on_one_file_share_offsets_and_dedup(tmp_path: Path) -> None:
    """Like two processes: SQLite's lock serialises their writer threads."""
    path = tmp_path / "log.sqlite3"
    logs = [SqliteEventLog(path, partitions=1, dedup_window=HOUR) for _ in range(2)]
    try:
        outcomes, threads = in_threads(
            4,
            lambda n: [
                logs[n % 2].append([record(f"n{n}-{i}"), record(f"shared-{i}")]) for i in range(25)
            ],
        )
        for thread in threads:
            thread.join(10)
        assert not any(isinstance(outcome, BaseException) for outcome in outcomes)
        entries = logs[0].read(0, 0, limit=1000)
        assert [entry.offset for entry in entries] == list(range(125))
        assert len({entry.message_id for entry in entries}) == 125
    finally:
        for log in logs:
            log.close()


def test_read_is_a_primary_key_range_scan(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "log.sqlite3", partitions=2, dedup_window=HOUR)
    try:
        log.append([record("a")])
        statements: list[str] = []
        reader = log._reader()
        reader.set_trace_callback(statements.append)
        log.read(1, 5, limit=10)
        reader.set_trace_callback(None)
        (sql,) = [text for text in statements if "FROM events" in text]
        plan = " ".join(row[3] for row in reader.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "USING PRIMARY KEY (partition=? AND offset>?)" in plan
        assert "TEMP B-TREE" not in plan  # no sort step
    finally:
        log.close()


def test_prune_dedup_forgets_only_expired_keys(tmp_path: Path) -> None:
    now = [1000.0]
    log = SqliteEventLog(
        tmp_path / "log.sqlite3",
        partitions=2,
        dedup_window=timedelta(seconds=10),
        clock=lambda: now[0],
    )
    try:
        log.append([record("old")])
        now[0] = 1008.0
        log.append([record("recent")])
        assert log.prune_dedup(now=1012.0) == 1
        assert log.prune_dedup(now=1012.0) == 0
        assert log.append([record("recent")]).duplicates == 1
    finally:
        log.close()


def test_the_writer_prunes_by_itself_every_interval(tmp_path: Path) -> None:
    now = [1000.0]
    path = tmp_path / "log.sqlite3"
    log = SqliteEventLog(
        path,
        partitions=2,
        dedup_window=timedelta(seconds=10),
        prune_interval=60,
        clock=lambda: now[0],
    )
    try:
        log.append([record("a"), record("b")])
        now[0] = 1070.0
        log.append([record("c")])  # the writer prunes after this batch...
        writer_pragma(log, "synchronous")  # ...so before it runs this next request
        with sqlite3.connect(path) as connection:
            keys = [row[0] for row in connection.execute("SELECT message_id FROM dedup_keys")]
        assert keys == ["c"]
    finally:
        log.close()


def test_wait_for_append_reports_an_append_since_this_threads_last_call(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "log.sqlite3", partitions=2, dedup_window=HOUR)
    try:
        log.append([record("a")])
        assert log.wait_for_append(5.0) is True  # happened before the call: no wait
        assert log.wait_for_append(0.01) is False
        log.append([record("a")])  # a duplicate appends nothing
        assert log.wait_for_append(0.01) is False
    finally:
        log.close()


def test_erase_messages_and_keys_keep_offsets_and_count_right(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "log.sqlite3", partitions=1, dedup_window=HOUR)
    try:
        log.append([record(f"a{i}", key="alice") for i in range(3)])
        log.append([record(f"b{i}", key="bob") for i in range(3)])
        assert log.erase_messages(["a1", "b2", "missing"]) == 2
        assert log.erase_keys(["bob", "nobody"]) == 2
        assert [entry.message_id for entry in log.read(0, 0)] == ["a0", "a2"]
        assert log.count() == 2 and log.end_offset(0) == 6
        assert log.erase_keys([]) == 0
        assert log.append([record("a1", key="alice")]).duplicates == 1  # dedup keys stay
        assert log.append([record("c", key="carol")]).positions == ((0, 6),)
    finally:
        log.close()


def test_erase_also_catches_events_appended_after_its_scan(controlled: ControlledLog) -> None:
    controlled.append([record("old", key="erin")])
    holder = hold_writer(controlled)
    appender = threading.Thread(target=controlled.append, args=([record("new", key="erin")],))
    appender.start()
    wait_until(lambda: controlled.queued() == 1)  # "new" is not committed: the scan misses it
    erased, threads = in_threads(1, lambda _: controlled.erase_keys(["erin"]))
    wait_until(lambda: controlled.queued() == 2)
    controlled.release.set()
    for thread in [holder, appender, *threads]:
        thread.join(5)
    assert erased == [2]
    part = controlled.partition_for("erin")
    assert [entry.message_id for entry in controlled.read(part, 0)] == (
        ["hold"] if controlled.partition_for("alice") == part else []
    )


def test_build_event_log_paths_and_settings(tmp_path: Path) -> None:
    default = build_event_log(LogConfig(partitions=3), tmp_path / "data", dedup_window="2h")
    configured = build_event_log(
        LogConfig(path=str(tmp_path / "other" / "events.db"), synchronous="normal"), tmp_path
    )
    try:
        assert isinstance(default, SqliteEventLog) and isinstance(configured, SqliteEventLog)
        assert default.path == tmp_path / "data" / "log.sqlite3" and default.path.exists()
        assert default.partitions == 3 and default.dedup_window == 7200
        assert configured.path == tmp_path / "other" / "events.db"
        assert writer_pragma(configured, "synchronous") == 1
        assert configured.dedup_window == 24 * 3600
    finally:
        default.close()
        configured.close()


def test_a_transaction_runs_a_few_wide_statements_not_one_per_row(tmp_path: Path) -> None:
    # Each statement step gives the GIL up; a step per row starved the writer of it.
    log = SqliteEventLog(tmp_path / "log.sqlite3", partitions=4, dedup_window=HOUR)
    try:
        log.append([record("seen")])
        statements: list[str] = []
        log._submit(lambda tx: tx.connection.set_trace_callback(statements.append))
        batch = [record(f"m{i}", key=f"k{i % 7}") for i in range(1000)]
        result = log.append([*batch, record("seen"), record("m3")])
        log._submit(lambda tx: tx.connection.set_trace_callback(None))
        assert result.appended == 1000 and result.positions[-2:] == (None, None)
        assert 8 <= len(statements) <= 25, statements  # was about 2,000
        assert log.count() == 1001
        assert [log.end_offset(part) for part in range(4)] == [
            sum(1 for item in [record("seen"), *batch] if log.partition_for(item.key) == part)
            for part in range(4)
        ]
    finally:
        log.close()


def test_statements_stay_within_a_low_variable_limit(tmp_path: Path) -> None:
    class OldLimitLog(SqliteEventLog):  # SQLite before 3.32 allowed 999 variables
        def _connect(self) -> sqlite3.Connection:
            connection = super()._connect()
            connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
            return connection

    log = OldLimitLog(tmp_path / "log.sqlite3", partitions=3, dedup_window=HOUR)
    try:
        assert log._most_rows == 128
        first = log.append([record(f"a{i}", key=f"k{i % 5}") for i in range(700)])
        again = log.append([record(f"a{i}") for i in range(650, 750)])
        assert first.appended == 700
        assert (again.appended, again.duplicates) == (50, 50)
        entries = [entry for part in range(3) for entry in log.read(part, 0, limit=1000)]
        assert sorted(entry.message_id for entry in entries) == sorted(f"a{i}" for i in range(750))
        assert all(entry.payload == entry.message_id.encode() for entry in entries)
    finally:
        log.close()
