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

import logging
import os
import secrets
import socket
import time

from touchpoint.core.errors import Unavailable
from touchpoint.log.leases.base import Leases

logger = logging.getLogger(__name__)


def member_name() -> str:
    """A name for this process as a group member: host, pid and a random suffix (a restarted
    process is a new member, so it never mistakes a dead predecessor's leases for its own)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


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
