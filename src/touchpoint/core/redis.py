"""What every Redis-backed part shares: one client per process, keys under the workspace's
prefix, and failures of the server that say "retry later".

The event log (Redis Streams), the partition leases and the profile cache all
take a `RedisService`; none of them opens its own connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from touchpoint.core.clock import parse_duration
from touchpoint.core.config_stores import RedisConfig
from touchpoint.core.errors import ServiceUnavailableAtStart, Unavailable
from touchpoint.core.servers import REDIS_SETTING, first_line, redact_url

# The failures of the server or the connection, and a server refusing writes for now (out
# of memory, a read-only replica), as opposed to a bad command: retry later.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,  # maxmemory reached: retry later, not a bad request
)


class RedisService:
    """A Redis client on one server, shared by every Redis-backed part of a process.

    `client` returns bytes (no decoding), so payloads pass through untouched.
    """

    def __init__(self, config: RedisConfig, *, setting: str = REDIS_SETTING) -> None:
        url = config.url
        if not url:
            raise ServiceUnavailableAtStart(setting, "no URL is set")
        self.setting = setting
        self.display_url = redact_url(url)
        self.prefix = config.prefix
        self.cache_ttl = parse_duration(config.cache_ttl).total_seconds()
        timeout = parse_duration(config.socket_timeout).total_seconds()
        try:
            self.client: redis.Redis = redis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=min(timeout, 2.0),
                health_check_interval=30,
                retry=Retry(NoBackoff(), 1),
                decode_responses=False,
            )
        except ValueError as error:
            raise ServiceUnavailableAtStart(
                setting, f"{self.display_url} is not a redis:// URL: {first_line(error)}"
            ) from None
        try:
            self.client.ping()
        except redis.exceptions.RedisError as error:
            self.client.close()
            raise ServiceUnavailableAtStart(
                setting, f"cannot connect to {self.display_url}: {first_line(error)}"
            ) from None

    def key(self, *parts: str | int) -> str:
        """A key under this workspace's prefix: `key("log", 3)` is `<prefix>:log:3`."""
        return ":".join((self.prefix, *(str(part) for part in parts)))

    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Turn Redis being down or unreachable into `Unavailable` naming `what`."""
        try:
            yield
        except CONNECTION_ERRORS as error:
            raise Unavailable(f"the {what} cannot reach Redis: {first_line(error)}") from error

    def close(self) -> None:
        self.client.close()
