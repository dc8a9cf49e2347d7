"""Per-source rate limits: the GCRA step, and the same behaviour from the in-process limiter
and the Redis one (the real server, shared by every API process), on a manual clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from touchpoint.collect.rate_limit import (
    MemoryRateLimiter,
    Rate,
    RateLimiter,
    RedisRateLimiter,
    gcra,
)
from touchpoint.config.workspace import TouchpointConfig, parse_config
from touchpoint.core.clock import ManualClock
from touchpoint.core.errors import DefinitionError, RateLimited
from touchpoint.core.redis import RedisService

START = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
CONFIG = parse_config(
    {
        "collect": {"max_batch_events": 10},
        "sources": [
            {
                "name": "web",
                "write_key": "wk_web_0001",
                "rate_limit": {
                    "requests_per_second": 2,
                    "request_burst": 4,
                    "events_per_second": 5,
                    "event_burst": 10,
                },
            },
            {
                "name": "server",
                "write_key": "wk_server_0001",
                "rate_limit": {"requests_per_second": None, "events_per_second": None},
            },
        ],
    }
)
WEB, SERVER = CONFIG.sources


def test_gcra_admits_a_burst_then_the_steady_rate() -> None:
    rate = Rate("requests_per_second", 2.0, 3)
    tat = None
    for _ in range(3):
        tat, wait = gcra(tat, 100.0, 1, rate)
        assert tat is not None and wait == 0.0
    refused, wait = gcra(tat, 100.0, 1, rate)
    assert refused is None and wait == pytest.approx(0.5)
    again, wait = gcra(tat, 100.5, 1, rate)
    assert again is not None and wait == 0.0


def test_a_cost_over_the_burst_never_passes() -> None:
    tat, wait = gcra(None, 100.0, 4, Rate("events_per_second", 1.0, 3))
    assert tat is None and wait == pytest.approx(1.0)


def test_an_event_burst_smaller_than_a_batch_is_refused_at_load() -> None:
    with pytest.raises(DefinitionError, match=r"event_burst"):
        parse_config({"collect": {"rate_limit": {"event_burst": 100}}})


Factory = Callable[[TouchpointConfig, ManualClock], RateLimiter]


@pytest.fixture(params=["memory", "redis"])
def make_limiter(request: pytest.FixtureRequest) -> Factory:
    if request.param == "memory":
        return lambda config, clock: MemoryRateLimiter(config, clock.time)
    redis: RedisService = request.getfixturevalue("redis_service")
    return lambda config, clock: RedisRateLimiter(config, redis, clock.time)


def test_requests_and_events_are_limited_and_refusals_cost_nothing(
    make_limiter: Factory,
) -> None:
    clock = ManualClock(START)
    limiter = make_limiter(CONFIG, clock)
    limiter.admit(WEB, 10)  # the whole event burst at once
    with pytest.raises(RateLimited) as refused:
        limiter.admit(WEB, 1)
    assert refused.value.details["limit"] == "events_per_second"
    assert refused.value.retry_after == pytest.approx(0.2, abs=1e-3)
    assert refused.value.headers() == {"Retry-After": "1"}
    clock.advance(0.2)
    limiter.admit(WEB, 1)
    limiter.admit(WEB, 0)
    limiter.admit(WEB, 0)  # fourth request of the burst of 4
    with pytest.raises(RateLimited) as refused:
        limiter.admit(WEB, 0)
    assert refused.value.details["limit"] == "requests_per_second"
    assert refused.value.details["source"] == "web"
    clock.advance(0.5)
    limiter.admit(WEB, 0)


def test_a_source_with_its_limits_off_is_never_refused(make_limiter: Factory) -> None:
    limiter = make_limiter(CONFIG, ManualClock(START))
    for _ in range(100):
        limiter.admit(SERVER, 10)


def test_processes_sharing_redis_share_one_budget(redis_service: RedisService) -> None:
    clock = ManualClock(START)
    first = RedisRateLimiter(CONFIG, redis_service, clock.time)
    second = RedisRateLimiter(CONFIG, redis_service, clock.time)
    first.admit(WEB, 6)
    with pytest.raises(RateLimited):
        second.admit(WEB, 5)
    second.admit(WEB, 4)
    with pytest.raises(RateLimited):
        first.admit(WEB, 1)


def test_the_documented_defaults() -> None:
    """README: 1,000 requests/s (burst 2,000) and 10,000 events/s (burst 25,000) per source,
    2,500 events per batch, rejected events kept 7 days, 50,000 per source."""
    collect = TouchpointConfig().collect
    limit = collect.rate_limit
    assert (limit.requests_per_second, limit.request_burst) == (1000, 2000)
    assert (limit.events_per_second, limit.event_burst) == (10_000, 25_000)
    assert collect.max_batch_events == 2500
    assert (collect.rejected_retention, collect.rejected_per_source) == ("7d", 50_000)
