"""Partition leases and group membership in Redis (members on any machine).

Members are a sorted set per group (score: expiry, in the server's clock); a lease is
a key per partition holding its owner, with a TTL. Each operation is one Lua script,
so "take it if free or mine" is atomic. Times come from Redis (`TIME`), so members'
clocks need not agree.
"""

from __future__ import annotations

import re
from typing import Any

from touchpoint.core.redis import RedisService
from touchpoint.log.leases.base import Leases

# The characters a SCAN pattern gives a meaning to (escaped with a backslash).
_GLOB = re.compile(r"[\\*?\[\]^-]")

_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 1)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 10)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

_ACQUIRE = """
local owner = redis.call('GET', KEYS[1])
if owner == false or owner == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisLeases(Leases):
    """Leases under `<prefix>:group:<group>:…` in the workspace's Redis."""

    def __init__(self, redis: RedisService) -> None:
        self._redis = redis
        client = redis.client
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)

    def _members_key(self, group: str) -> str:
        return self._redis.key("group", group, "members")

    def _lease_key(self, group: str, partition: int) -> str:
        return self._redis.key("group", group, "lease", partition)

    def heartbeat(self, group: str, member: str, ttl: float) -> list[str]:
        with self._redis.errors("partition leases"):
            members: list[Any] = self._heartbeat(
                keys=[self._members_key(group)], args=[member, int(ttl * 1000)]
            )
        return sorted(_text(item) for item in members)

    def acquire(self, group: str, partition: int, member: str, ttl: float) -> bool:
        with self._redis.errors("partition leases"):
            held = self._acquire(
                keys=[self._lease_key(group, partition)], args=[member, int(ttl * 1000)]
            )
        return bool(held)

    def release(self, group: str, partition: int, member: str) -> None:
        with self._redis.errors("partition leases"):
            self._release(keys=[self._lease_key(group, partition)], args=[member])

    def leave(self, group: str, member: str) -> None:
        owned = [p for p, owner in self.owners(group).items() if owner == member]
        with self._redis.errors("partition leases"):
            for partition in owned:
                self._release(keys=[self._lease_key(group, partition)], args=[member])
            self._redis.client.zrem(self._members_key(group), member)

    def owners(self, group: str) -> dict[int, str]:
        # The group's name is data: glob characters in it are escaped, and a key counts only
        # if what follows the group's lease prefix is a partition number (a group named
        # `a:lease:1` is not group `a`).
        prefix = self._redis.key("group", group, "lease", "")
        pattern = _GLOB.sub(r"\\\g<0>", prefix) + "*"
        with self._redis.errors("partition leases"):
            keys = [
                key
                for key in self._redis.client.scan_iter(match=pattern, count=1000)
                if _text(key)[len(prefix) :].isdigit()
            ]
            values = self._redis.client.mget(keys) if keys else []
        owners = {}
        for key, value in zip(keys, values, strict=True):
            if value is not None:
                owners[int(_text(key)[len(prefix) :])] = _text(value)
        return owners


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
