"""Per-source rate limits of the collect routes: a public write key must not be able to
take the whole node.

Each source has two limits, on requests and on events, each a rate and a burst; a request
passes only if it fits both, and only a request that passes is charged. The algorithm is
GCRA (the generic cell-rate algorithm): per limit one number, the theoretical arrival time
`tat` of the next unit at the steady rate; a request of `cost` units is admitted when
`tat + cost * interval - burst * interval <= now`, and the wait otherwise is exactly that
difference. One number per limit, no window edges, an exact `Retry-After`.

Embedded, the numbers live in this process (`MemoryRateLimiter`); in server mode in Redis
(`RedisRateLimiter`), updated by one Lua script, so every API process shares the same
budget atomically. Time comes from the workspace clock (`now` is passed to the script), so
tests move a manual clock instead of sleeping; several hosts must keep their clocks in
sync (NTP), as they must for everything else.

Why not the `limits` package: it reads `time.time()` throughout (no injectable clock), has
no GCRA, and opens its own Redis connection instead of sharing the workspace's.
"""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from touchpoint.config.workspace import TouchpointConfig
from touchpoint.core.config_sources import RateLimitConfig, SourceConfig
from touchpoint.core.errors import RateLimited

if TYPE_CHECKING:
    from touchpoint.core.redis import RedisService

logger = logging.getLogger(__name__)

# Float time of ~1.8e9 s has a resolution of ~2e-7 s; admit what is late by less than this.
_SLACK = 1e-6


@dataclass(frozen=True, slots=True)
class Rate:
    """One limit: `name` (as the 429 names it), units per second and burst."""

    name: str
    per_second: float
    burst: int

    @property
    def interval(self) -> float:
        """Seconds one unit costs at the steady rate."""
        return 1.0 / self.per_second


def source_rates(limit: RateLimitConfig) -> tuple[Rate | None, Rate | None]:
    """The (requests, events) rates of a limit configuration; `None` where it is off."""
    requests = events = None
    if limit.requests_per_second is not None:
        requests = Rate("requests_per_second", limit.requests_per_second, limit.request_burst)
    if limit.events_per_second is not None:
        events = Rate("events_per_second", limit.events_per_second, limit.event_burst)
    return requests, events


def gcra(tat: float | None, now: float, cost: int, rate: Rate) -> tuple[float | None, float]:
    """One GCRA step: `(new tat, 0.0)` when `cost` units may pass at `now`, else
    `(None, seconds to wait)`. `tat` is the stored theoretical arrival time (None: unused)."""
    start = now if tat is None or tat < now else tat
    new_tat = start + cost * rate.interval
    allowed_at = new_tat - rate.burst * rate.interval
    if allowed_at - now > _SLACK:
        return None, allowed_at - now
    return new_tat, 0.0


class RateLimiter(abc.ABC):
    """Admits a source's request of `events` events, or raises `RateLimited` naming the limit
    passed and how long to wait. A refused request is not charged."""

    def __init__(self, config: TouchpointConfig, clock: Callable[[], float]) -> None:
        self._config = config
        self._clock = clock

    @property
    def local(self) -> bool:
        """Whether `admit` is in-process (cheap enough for the event loop)."""
        return False

    def admit(self, source: SourceConfig, events: int) -> None:
        """Charge one request and `events` events to `source`, or raise `RateLimited`."""
        requests, events_rate = source_rates(self._config.rate_limit(source))
        charges = [
            (rate, cost)
            for rate, cost in ((requests, 1), (events_rate, events))
            if rate is not None and cost > 0
        ]
        if not charges:
            return
        refused = self._charge(source.name, charges, self._clock())
        if refused is not None:
            rate, wait = refused
            raise RateLimited(
                f"source {source.name!r} is over its limit of {rate.per_second:g} "
                f"{rate.name.replace('_per_second', '')}/s (burst {rate.burst}); "
                f"retry in {wait:.3f}s",
                retry_after=wait,
                details={
                    "limit": rate.name,
                    "source": source.name,
                    "rate": rate.per_second,
                    "burst": rate.burst,
                },
            )

    @abc.abstractmethod
    def _charge(
        self, source: str, charges: Sequence[tuple[Rate, int]], now: float
    ) -> tuple[Rate, float] | None:
        """Charge every `(rate, cost)` if all fit at `now` and return None; else charge
        none and return the limit with the longest wait, and that wait."""


class MemoryRateLimiter(RateLimiter):
    """The embedded limiter: the numbers in this process, under a lock."""

    def __init__(self, config: TouchpointConfig, clock: Callable[[], float]) -> None:
        super().__init__(config, clock)
        self._lock = threading.Lock()
        self._tats: dict[tuple[str, str], float] = {}  # bounded: sources x 2

    @property
    def local(self) -> bool:
        return True

    def _charge(
        self, source: str, charges: Sequence[tuple[Rate, int]], now: float
    ) -> tuple[Rate, float] | None:
        with self._lock:
            updates: list[tuple[tuple[str, str], float]] = []
            worst: tuple[Rate, float] | None = None
            for rate, cost in charges:
                key = (source, rate.name)
                new_tat, wait = gcra(self._tats.get(key), now, cost, rate)
                if new_tat is None:
                    if worst is None or wait > worst[1]:
                        worst = (rate, wait)
                else:
                    updates.append((key, new_tat))
            if worst is None:
                self._tats.update(updates)
            return worst


# KEYS: one per limit. ARGV: now, then per limit its interval, burst and cost. Returns
# {0, ""} when admitted (every tat stored, expiring a minute after it is in the past: the
# expiry runs on Redis's clock, `now` on the workspace's, so the margin must cover any gap
# between them and between calls; a tat in the past means the same as none), else
# {index of the limit with the longest wait (1-based), wait as text}.
_GCRA_SCRIPT = """
local now = tonumber(ARGV[1])
local tats = {}
local worst, wait = 0, 0
for i = 1, #KEYS do
  local interval = tonumber(ARGV[3 * i - 1])
  local burst = tonumber(ARGV[3 * i])
  local cost = tonumber(ARGV[3 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local new_tat = tat + cost * interval
  local late = new_tat - burst * interval - now
  if late > 1e-6 then
    if late > wait then worst, wait = i, late end
  end
  tats[i] = new_tat
end
if worst > 0 then return {worst, string.format('%.6f', wait)} end
for i = 1, #KEYS do
  local ttl = math.ceil((tats[i] - now) * 1000) + 60000
  redis.call('SET', KEYS[i], string.format('%.6f', tats[i]), 'PX', ttl)
end
return {0, ''}
"""


class RedisRateLimiter(RateLimiter):
    """The server-mode limiter: every API process charges the same numbers in Redis,
    atomically (one script checks and charges both limits)."""

    def __init__(
        self, config: TouchpointConfig, redis: RedisService, clock: Callable[[], float]
    ) -> None:
        super().__init__(config, clock)
        self._redis = redis
        self._script = redis.client.register_script(_GCRA_SCRIPT)

    def _charge(
        self, source: str, charges: Sequence[tuple[Rate, int]], now: float
    ) -> tuple[Rate, float] | None:
        keys = [self._redis.key("rate", source, rate.name) for rate, _ in charges]
        args: list[float | int] = [now]
        for rate, cost in charges:
            args += [rate.interval, rate.burst, cost]
        with self._redis.errors("rate limiter"):
            worst, wait = self._script(keys=keys, args=args)
        if int(worst) == 0:
            return None
        return charges[int(worst) - 1][0], float(wait)


def build_rate_limiter(
    config: TouchpointConfig, redis: RedisService | None, clock: Callable[[], float]
) -> RateLimiter:
    """In Redis when the workspace has Redis (shared by every API process), else here."""
    if redis is not None:
        return RedisRateLimiter(config, redis, clock)
    return MemoryRateLimiter(config, clock)
