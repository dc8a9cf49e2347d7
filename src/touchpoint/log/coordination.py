"""Workers that share a log's partitions: membership, leases and a balanced assignment.

Every stream processor that runs for good (`touchpoint worker`, the processor inside
`touchpoint serve`) is a *member* of its consumer group. Members heartbeat; a member
that stops heartbeating (killed, partitioned away) drops out after `ttl`. From the
live members, sorted, every member computes the same assignment: partition `p`
belongs to `members[p % n]`. A member processes a partition only while it holds the
partition's *lease*, which it renews every refresh and which expires `ttl` after the
last renewal. So:

- a partition has at most one owner at a time (while clocks and pauses stay well
  under `ttl`), which keeps one person's events in order;
- a member hands a partition over by releasing its lease between two batches; the
  new owner acquires it at its next refresh;
- when a member dies, its leases expire and the survivors take its partitions over;
  what it had read and not committed is read again (`EventLog.claim`, `poll`), and
  applying it again changes nothing (the profile store refuses a message id twice).

Where leases live depends on the log: next to a SQLite log, in its file (members on
one machine); next to Redis Streams, in Redis (members anywhere). Both implement the
same small `Leases` primitive, and the assignment logic above is written once.
"""

from __future__ import annotations

import abc
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from touchpoint.core.errors import Unavailable
from touchpoint.core.sqlite import open_connection, write_transaction

logger = logging.getLogger(__name__)


def member_name() -> str:
    """A name for this process as a group member: host, pid and a random suffix (a restarted
    process is a new member, so it never mistakes a dead predecessor's leases for its own)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Leases(abc.ABC):
    """Membership and partition leases of consumer groups. Times are epoch seconds."""

    @abc.abstractmethod
    def heartbeat(self, group: str, member: str, ttl: float) -> list[str]:
        """Register `member` as alive for `ttl` seconds; every live member, sorted."""

    @abc.abstractmethod
    def acquire(self, group: str, partition: int, member: str, ttl: float) -> bool:
        """Take or renew the lease of `partition` for `ttl` seconds: True if `member` holds it
        now (it was free, expired or already its own)."""

    @abc.abstractmethod
    def release(self, group: str, partition: int, member: str) -> None:
        """Give the lease up, if `member` holds it."""

    @abc.abstractmethod
    def leave(self, group: str, member: str) -> None:
        """Remove `member` from the group and release every lease it holds."""

    @abc.abstractmethod
    def owners(self, group: str) -> dict[int, str]:
        """The current holder of every leased partition (for status and tests)."""

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections."""


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS group_members (
    consumer_group TEXT NOT NULL,
    member TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (consumer_group, member)
);
CREATE TABLE IF NOT EXISTS partition_leases (
    consumer_group TEXT NOT NULL,
    partition INTEGER NOT NULL,
    member TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (consumer_group, partition)
);
"""


class SqliteLeases(Leases):
    """Leases in a SQLite file (the log's): members are processes on one machine."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self._connection = open_connection(path, synchronous="normal", schema=_SQLITE_SCHEMA)
        self._lock = threading.Lock()
        self._clock = clock

    def heartbeat(self, group: str, member: str, ttl: float) -> list[str]:
        now = self._clock()
        with write_transaction(self._connection, self._lock, store="partition leases") as db:
            db.execute(
                "INSERT INTO group_members VALUES (?, ?, ?) ON CONFLICT (consumer_group, member) "
                "DO UPDATE SET expires_at = excluded.expires_at",
                (group, member, now + ttl),
            )
            db.execute(
                "DELETE FROM group_members WHERE consumer_group = ? AND expires_at < ?",
                (group, now),
            )
            rows = db.execute(
                "SELECT member FROM group_members WHERE consumer_group = ? ORDER BY member",
                (group,),
            ).fetchall()
        return [str(row[0]) for row in rows]

    def acquire(self, group: str, partition: int, member: str, ttl: float) -> bool:
        now = self._clock()
        with write_transaction(self._connection, self._lock, store="partition leases") as db:
            cursor = db.execute(
                "INSERT INTO partition_leases VALUES (?, ?, ?, ?) "
                "ON CONFLICT (consumer_group, partition) DO UPDATE "
                "SET member = excluded.member, expires_at = excluded.expires_at "
                "WHERE partition_leases.member = excluded.member "
                "OR partition_leases.expires_at < ?",
                (group, partition, member, now + ttl, now),
            )
            return cursor.rowcount == 1

    def release(self, group: str, partition: int, member: str) -> None:
        with write_transaction(self._connection, self._lock, store="partition leases") as db:
            db.execute(
                "DELETE FROM partition_leases WHERE consumer_group = ? AND partition = ? "
                "AND member = ?",
                (group, partition, member),
            )

    def leave(self, group: str, member: str) -> None:
        with write_transaction(self._connection, self._lock, store="partition leases") as db:
            db.execute(
                "DELETE FROM partition_leases WHERE consumer_group = ? AND member = ?",
                (group, member),
            )
            db.execute(
                "DELETE FROM group_members WHERE consumer_group = ? AND member = ?",
                (group, member),
            )

    def owners(self, group: str) -> dict[int, str]:
        rows = self._connection.execute(
            "SELECT partition, member FROM partition_leases WHERE consumer_group = ? "
            "AND expires_at >= ?",
            (group, self._clock()),
        ).fetchall()
        return {int(row[0]): str(row[1]) for row in rows}

    def close(self) -> None:
        self._connection.close()


class PartitionCoordinator:
    """One member's view of its group: which partitions it owns now.

    Call `refresh()` between batches (it does nothing until `interval` has passed since
    the last one, unless forced). It heartbeats, computes the balanced assignment, releases
    what is no longer this member's and acquires (or renews) what is. A partition whose
    lease another member still holds is not taken until that member releases it or its
    lease expires.
    """

    def __init__(
        self,
        leases: Leases,
        *,
        group: str,
        partitions: int,
        member: str | None = None,
        ttl: float = 10.0,
        interval: float | None = None,
    ) -> None:
        if ttl <= 0:
            raise ValueError("the lease ttl must be positive")
        self.leases = leases
        self.group = group
        self.partitions = partitions
        self.member = member or member_name()
        self.ttl = ttl
        self.interval = interval if interval is not None else ttl / 5
        self.owned: frozenset[int] = frozenset()
        self.members: list[str] = []
        self._next = 0.0

    def assignment(self, members: list[str]) -> set[int]:
        """The partitions the balanced assignment gives this member among `members`."""
        if self.member not in members:
            return set()
        count = len(members)
        index = members.index(self.member)
        return {p for p in range(self.partitions) if p % count == index}

    def refresh(self, *, force: bool = False) -> tuple[set[int], set[int]]:
        """Heartbeat and rebalance when due; the partitions `(gained, lost)` by this call.

        If the lease store is unreachable, nothing is owned any more (another member may
        take over once the leases expire); `Unavailable` propagates after that."""
        now = time.monotonic()
        if not force and now < self._next:
            return set(), set()
        self._next = now + self.interval
        before = set(self.owned)
        try:
            self.members = self.leases.heartbeat(self.group, self.member, self.ttl)
            wanted = self.assignment(self.members)
            for partition in before - wanted:
                self.leases.release(self.group, partition, self.member)
            held = {
                partition
                for partition in sorted(wanted)
                if self.leases.acquire(self.group, partition, self.member, self.ttl)
            }
        except Unavailable:
            self.owned = frozenset()
            raise
        self.owned = frozenset(held)
        gained, lost = held - before, before - held
        if gained or lost:
            logger.info(
                "member %s of group %s: partitions %s (gained %s, lost %s; %d members)",
                self.member,
                self.group,
                sorted(held),
                sorted(gained),
                sorted(lost),
                len(self.members),
            )
        return gained, lost

    def leave(self) -> None:
        """Give every partition up and leave the group (a clean stop): the others take the
        partitions over at their next refresh instead of after `ttl`."""
        try:
            self.leases.leave(self.group, self.member)
        except Unavailable:
            logger.warning("could not leave group %s cleanly; its leases expire", self.group)
        self.owned = frozenset()
