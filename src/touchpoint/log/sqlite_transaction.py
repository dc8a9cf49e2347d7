"""One write transaction of the SQLite event log: few, wide statements.

`SqliteEventLog`'s writer thread runs every request coalesced into a group commit
against one `WriteTransaction`. See its docstring for why the statements are wide.
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

_CHUNK = 500  # values per `IN (...)` list, well under SQLite's variable limit
MAX_ROWS = 512  # rows (or `IN` values) per statement at most; see `WriteTransaction`
_INSERT_EVENTS = "INSERT INTO events (partition, offset, key, message_id, payload, appended_at)"
_INSERT_DEDUP = "INSERT OR REPLACE INTO dedup_keys (message_id, seen_at)"


def chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    """`values` in pieces small enough for an `IN (...)` list."""
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def marks(values: Sequence[object]) -> str:
    """`?,?,...`: one placeholder per value."""
    return ",".join("?" * len(values))


def _pieces(total: int, most: int) -> Iterator[tuple[int, int]]:
    """`(start, size)` pieces of `total` items: `most` at a time, then powers of two.

    So a statement over n items runs in a few steps, and only a few statement texts exist,
    which all stay in the connection's statement cache.
    """
    start = 0
    while start < total:
        size = min(most, 1 << ((total - start).bit_length() - 1))
        yield start, size
        start += size


@functools.lru_cache(maxsize=256)
def _values_sql(head: str, width: int, rows: int) -> str:
    row = "(" + ",".join("?" * width) + ")"
    return f"{head} VALUES {','.join([row] * rows)}"


@functools.lru_cache(maxsize=64)
def _seen_sql(values: int) -> str:
    marks = ",".join("?" * values)
    return f"SELECT message_id FROM dedup_keys WHERE message_id IN ({marks}) AND seen_at >= ?"


@dataclass
class WriteTransaction:
    """What one writer transaction shares between the requests coalesced into it.

    Its statements are few and wide on purpose. The sqlite3 module lets go of the GIL
    around every step of a statement and must take it back after; while other threads run
    Python, each take-back can wait milliseconds. Stepping once per row (two `executemany`
    per append, a statement per partition) left the writer waiting for the GIL about two
    thirds of each transaction when the stream processor shared the process. So dedup keys
    are looked up for all coalesced appends in one statement, appends only place their
    records and `flush` inserts the rows with multi-row statements, and partition state is
    read and written with one statement each: about a dozen steps per transaction instead
    of two per event. (Multi-row statements need a statement journal; `temp_store = MEMORY`
    keeps it off the disk, which makes them cost no more CPU than `executemany`.)
    """

    connection: sqlite3.Connection
    now: float
    dedup_since: float = float("-inf")
    most_rows: int = MAX_ROWS
    next_offsets: dict[int, int] | None = None
    count_changes: dict[int, int] = field(default_factory=dict)
    appended: int = 0
    seen: set[str] = field(default_factory=set)  # in the log (within the window) or added here
    looked_up: set[str] = field(default_factory=set)
    event_rows: list[tuple[int, int, str, str, bytes, float]] = field(default_factory=list)

    def look_up(self, message_ids: Iterable[str]) -> None:
        """Add to `seen` those of `message_ids` the dedup table holds within the window."""
        new = [key for key in dict.fromkeys(message_ids) if key not in self.looked_up]
        self.looked_up.update(new)
        for start in range(0, len(new), self.most_rows):
            chunk = new[start : start + self.most_rows]
            padded = 1 << (len(chunk) - 1).bit_length()  # repeats change nothing in `IN`
            chunk += [chunk[-1]] * (padded - len(chunk))
            rows = self.connection.execute(_seen_sql(padded), (*chunk, self.dedup_since))
            self.seen.update(row[0] for row in rows)

    def take_offset(self, partition: int) -> int:
        if self.next_offsets is None:
            sql = "SELECT group_concat(partition || ':' || next_offset, ',') FROM partitions"
            text = self.connection.execute(sql).fetchone()[0]
            pairs = (item.split(":") for item in text.split(","))
            self.next_offsets = {int(part): int(offset) for part, offset in pairs}
        offset = self.next_offsets[partition]
        self.next_offsets[partition] = offset + 1
        self.count_changes[partition] = self.count_changes.get(partition, 0) + 1
        self.appended += 1
        return offset

    def change_count(self, partition: int, change: int) -> None:
        self.count_changes[partition] = self.count_changes.get(partition, 0) + change

    def flush(self) -> None:
        """Insert the rows appends left pending, with their dedup keys."""
        rows, self.event_rows = self.event_rows, []
        for start, size in _pieces(len(rows), self.most_rows):
            chunk = rows[start : start + size]
            self.connection.execute(
                _values_sql(_INSERT_EVENTS, 6, size), list(itertools.chain.from_iterable(chunk))
            )
            keys = [value for row in chunk for value in (row[3], row[5])]
            self.connection.execute(_values_sql(_INSERT_DEDUP, 2, size), keys)

    def save_partitions(self) -> None:
        """Write next offsets and record counts back (inside the transaction)."""
        changed = sorted(self.count_changes)
        if not changed:
            return
        cases = " ".join(["WHEN ? THEN ?"] * len(changed))
        params: list[int] = []
        set_offsets = ""
        if self.next_offsets is not None:
            set_offsets = f"next_offset = CASE partition {cases} ELSE next_offset END, "
            for part in changed:
                params += (part, self.next_offsets[part])
        for part in changed:
            params += (part, self.count_changes[part])
        self.connection.execute(
            f"UPDATE partitions SET {set_offsets}"
            f"record_count = record_count + CASE partition {cases} ELSE 0 END "
            f"WHERE partition IN ({marks(changed)})",
            (*params, *changed),
        )
