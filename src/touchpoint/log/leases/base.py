"""Membership and partition leases of consumer groups: the interface every backend
implements, and the factory that picks the backend beside a log.

Where leases live depends on the log (see `log.coordination`): next to a SQLite log, in
its file (`sqlite.py`: members on one machine); next to Redis Streams, in Redis
(`redis.py`: members anywhere).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from touchpoint.core.redis import RedisService
    from touchpoint.log.base import EventLog


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


def build_leases(
    log: EventLog, redis: RedisService | None = None, *, clock: Callable[[], float] = time.time
) -> Leases:
    """The leases beside `log`: in its file for a SQLite log (times from `clock`), else in
    Redis (times from the Redis server), which must then be given."""
    from touchpoint.log.sqlite import SqliteEventLog

    if isinstance(log, SqliteEventLog):
        from touchpoint.log.leases.sqlite import SqliteLeases

        return SqliteLeases(log.path, clock=clock)
    if redis is None:
        raise ValueError("a non-SQLite event log needs Redis for its leases")
    from touchpoint.log.leases.redis import RedisLeases

    return RedisLeases(redis)
