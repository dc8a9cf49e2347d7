"""The Redis read-through profile cache: hits, invalidation after commit, the fill race,
and Redis outages (a private redis-server this module starts and stops)."""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from tests import servers
from tests.conftest import TEST_CONFIG, WRITE_KEY, drain, write_config
from touchpoint.config.settings import load_settings
from touchpoint.core.clock import utcnow
from touchpoint.core.config_stores import RedisConfig
from touchpoint.core.metrics import Metrics
from touchpoint.core.redis import RedisService
from touchpoint.profiles.model import Identity, Profile
from touchpoint.profiles.store.base import ProfileStore, ProfileWriter
from touchpoint.profiles.store.redis_cache import CachedProfileStore
from touchpoint.profiles.store.sqlite import SqliteProfileStore
from touchpoint.runtime import Workspace
from touchpoint.testing import RedisServer

T0 = "2024-01-01T00:00:00.000Z"
T1 = "2024-01-02T00:00:00.000Z"
ADA = Identity("email", "ada@example.com")
ANON = Identity("anonymous_id", "anon-1")
OTHER = Identity("user_id", "grace")


class Clock:
    """Monotonic seconds that tests move by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class HookedStore(SqliteProfileStore):
    """A SQLite store whose `get`/`find` run `hook` after reading and before answering (the
    moment a slow reader is delayed in the race the cache must close), and whose transactions
    run `before_commit` once their block has ended, just before the commit."""

    hook: Callable[[], None] | None = None
    before_commit: Callable[[], None] | None = None

    @contextmanager
    def transaction(self) -> Iterator[ProfileWriter]:
        with super().transaction() as writer:
            yield writer
            hook, self.before_commit = self.before_commit, None
            if hook is not None:
                hook()

    def _run_hook(self) -> None:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()

    def get(self, profile_id: str) -> Profile | None:
        found = super().get(profile_id)
        self._run_hook()
        return found

    def find(self, identity: Identity) -> str | None:
        found = super().find(identity)
        self._run_hook()
        return found


def results(metrics: Metrics) -> dict[str, float]:
    return {
        result: metrics.registry.get_sample_value(
            "touchpoint_profile_cache_total", {"result": result}
        )
        or 0.0
        for result in ("hit", "miss", "error")
    }


def create(store: ProfileStore, profile_id: str, *identities: Identity) -> None:
    with store.transaction() as writer:
        writer.create(Profile(profile_id=profile_id, created_at=T0))
        for identity in identities:
            writer.link(profile_id, identity, message_id=f"m-{profile_id}", at=T0)


def set_trait(store: ProfileStore, profile_id: str, name: str, value: Any) -> None:
    with store.transaction() as writer:
        profile = writer.load(profile_id)
        assert profile is not None
        profile.traits[name] = value
        writer.save(profile)


def trait(store: ProfileStore, profile_id: str, name: str) -> Any:
    profile = store.get(profile_id)
    assert profile is not None
    return profile.traits.get(name)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def inner(tmp_path: Path) -> Iterator[HookedStore]:
    store = HookedStore(tmp_path / "profiles.sqlite3")
    yield store
    store.close()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def cache(
    inner: HookedStore, redis_service: RedisService, metrics: Metrics, clock: Clock
) -> CachedProfileStore:
    return CachedProfileStore(inner, redis_service, metrics=metrics, clock=clock)


def test_reads_hit_after_the_first_and_keys_hold_no_identifier(
    cache: CachedProfileStore, redis_service: RedisService, metrics: Metrics
) -> None:
    create(cache, "p1", ADA)
    set_trait(cache, "p1", "plan", "pro")
    with cache.transaction() as writer:
        writer.set_segment("p1", "buyers", member=True, at=T1)
    assert [cache.find(ADA), cache.find(ADA)] == ["p1", "p1"]
    first, second = cache.get("p1"), cache.get("p1")
    assert results(metrics) == {"hit": 2, "miss": 2, "error": 0}
    assert first == second == cache.inner.get("p1")
    assert second is not None
    assert (second.traits, second.segments, second.identities, second.version) == (
        {"plan": "pro"},
        {"buyers": T1},
        [ADA],
        1,
    )
    keys = [key.decode() for key in redis_service.client.keys(f"{redis_service.prefix}:*")]
    assert len(keys) == 4  # two entries, and the markers the writes left beside them
    assert not any(ADA.value in key for key in keys)


def test_an_unknown_identity_is_cached_until_it_is_linked(
    cache: CachedProfileStore, metrics: Metrics
) -> None:
    create(cache, "p1")
    assert [cache.find(ANON), cache.find(ANON)] == [None, None]
    assert results(metrics)["hit"] == 1
    with cache.transaction() as writer:
        writer.link("p1", ANON, message_id="m2", at=T1)
    assert cache.find(ANON) == "p1"
    assert cache.get("p1").identities == [ANON]  # type: ignore[union-attr]


def test_save_and_segment_changes_invalidate_the_profile(cache: CachedProfileStore) -> None:
    create(cache, "p1", ADA)
    assert trait(cache, "p1", "plan") is None
    set_trait(cache, "p1", "plan", "pro")
    assert trait(cache, "p1", "plan") == "pro"
    version = cache.get("p1").version  # type: ignore[union-attr]
    for member in (True, False):
        with cache.transaction() as writer:
            writer.set_segment("p1", "buyers", member=member, at=T1)
        profile = cache.get("p1")
        # A segment change saves nothing: the version stays, the cached entry must not.
        assert profile is not None and profile.version == version
        assert ("buyers" in profile.segments) is member


def test_a_merge_invalidates_both_profiles_and_every_moved_identity(
    cache: CachedProfileStore, metrics: Metrics
) -> None:
    create(cache, "survivor", ADA)
    create(cache, "merged", ANON, OTHER)
    for identity in (ADA, ANON, OTHER):
        cache.find(identity)
    cache.get("survivor"), cache.get("merged")
    with cache.transaction() as writer:
        writer.merge("survivor", "merged", identity=ANON, message_id="m3", at=T1)
    assert {cache.find(identity) for identity in (ADA, ANON, OTHER)} == {"survivor"}
    survivor = cache.get("survivor")
    assert survivor is not None and set(survivor.identities) == {ADA, ANON, OTHER}
    # The merged id answers with its survivor, and that answer is never cached under it.
    before = results(metrics)["hit"]
    assert [cache.get("merged"), cache.get("merged")] == [survivor, survivor]
    assert results(metrics)["hit"] == before


def test_erase_invalidates_every_id_and_identity_of_the_person(cache: CachedProfileStore) -> None:
    create(cache, "survivor", ADA)
    create(cache, "merged", ANON)
    with cache.transaction() as writer:
        writer.merge("survivor", "merged", identity=ANON, message_id="m3", at=T1)
    assert (cache.find(ADA), cache.find(ANON), cache.get("survivor") is not None) == (
        "survivor",
        "survivor",
        True,
    )
    erased = cache.erase("survivor", tombstone_key=lambda i: i.value, job_id="job", at=T1)
    assert erased is not None and set(erased.profile_ids) == {"survivor", "merged"}
    assert (cache.find(ADA), cache.find(ANON), cache.get("survivor")) == (None, None, None)


def test_the_cache_is_invalidated_after_the_commit_not_before(
    cache: CachedProfileStore, inner: HookedStore
) -> None:
    create(cache, "p1", ADA)
    seen: list[Any] = []
    # Readers at the last moment before the commit see (and cache) the committed state...
    inner.before_commit = lambda: seen.extend(trait(cache, "p1", "plan") for _ in range(2))
    set_trait(cache, "p1", "plan", "pro")
    assert seen == [None, None]
    # ...which the commit then invalidates.
    assert [trait(cache, "p1", "plan"), trait(cache, "p1", "plan")] == ["pro", "pro"]


def test_a_rolled_back_transaction_leaves_the_old_values(cache: CachedProfileStore) -> None:
    create(cache, "p1", ADA)
    assert trait(cache, "p1", "plan") is None
    with pytest.raises(RuntimeError), cache.transaction() as writer:
        profile = writer.load("p1")
        assert profile is not None
        profile.traits["plan"] = "pro"
        writer.save(profile)
        raise RuntimeError("abandon")
    assert [trait(cache, "p1", "plan"), trait(cache, "p1", "plan")] == [None, None]


def test_a_slow_reader_cannot_cache_what_a_commit_replaced(
    cache: CachedProfileStore, inner: HookedStore, metrics: Metrics
) -> None:
    """The race by hand: the reader misses and reads version 1; before it fills, a writer
    commits version 2 and invalidates; the reader's fill of version 1 is refused."""
    create(cache, "p1", ADA)
    set_trait(cache, "p1", "plan", "basic")
    inner.hook = lambda: set_trait(cache, "p1", "plan", "pro")
    slow = cache.get("p1")
    assert slow is not None and (slow.traits["plan"], slow.version) == ("basic", 1)
    fresh = cache.get("p1")
    assert fresh is not None and (fresh.traits["plan"], fresh.version) == ("pro", 2)
    assert results(metrics) == {"hit": 0, "miss": 2, "error": 0}  # the old fill was refused
    assert cache.get("p1") == fresh
    assert results(metrics)["hit"] == 1


def test_a_slow_reader_cannot_cache_an_identity_a_commit_linked(
    cache: CachedProfileStore, inner: HookedStore
) -> None:
    create(cache, "p1")

    def link() -> None:
        with cache.transaction() as writer:
            writer.link("p1", ANON, message_id="m2", at=T1)

    inner.hook = link
    assert cache.find(ANON) is None  # read before the link committed
    assert [cache.find(ANON), cache.find(ANON)] == ["p1", "p1"]


def test_readers_racing_a_writer_leave_the_cache_equal_to_the_store(
    cache: CachedProfileStore, inner: HookedStore
) -> None:
    create(cache, "p1", ADA)
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            cache.find(ADA)
            cache.get("p1")

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for number in range(150):
            set_trait(cache, "p1", "n", number)
            with cache.transaction() as writer:
                writer.set_segment("p1", "odd", member=number % 2 == 1, at=T1)
            # Whatever a reader cached is what it read after the last commit.
            assert cache.get("p1") == inner.get("p1")
    finally:
        done.set()
        for reader in readers:
            reader.join()
    assert cache.get("p1") == inner.get("p1")
    assert trait(cache, "p1", "n") == 149


# -- Redis outages, on a redis-server of this module's own ---------------------------------


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, to kill and start again (its append-only file keeps
    what it had, as a restart after an outage would)."""
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed: the outage tests need one of their own"
        if servers.in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def private_cache(
    store: ProfileStore,
    server: RedisServer,
    metrics: Metrics,
    clock: Clock,
    *,
    socket_timeout: str = "1s",
) -> CachedProfileStore:
    config = RedisConfig(url=server.url, prefix="t", cache_ttl="1h", socket_timeout=socket_timeout)
    return CachedProfileStore(store, RedisService(config), metrics=metrics, clock=clock)


def test_reads_go_to_the_store_while_redis_is_down_and_errors_are_logged_once_a_minute(
    inner: HookedStore,
    private_redis: RedisServer,
    metrics: Metrics,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = private_cache(inner, private_redis, metrics, clock)
    create(cache, "p1", ADA)
    assert (cache.find(ADA), trait(cache, "p1", "plan")) == ("p1", None)
    private_redis.kill()
    caplog.set_level(logging.WARNING, logger="touchpoint.profiles.store.redis_cache")
    set_trait(cache, "p1", "plan", "pro")  # a commit never fails for the cache
    for _ in range(3):
        clock.now += 2  # Redis is tried again when its pause (1 s, then 2, 4...) is over
        assert (cache.find(ADA), trait(cache, "p1", "plan")) == ("p1", "pro")
    assert results(metrics)["error"] == 7  # one invalidation, six lookups
    assert len(caplog.records) == 1  # for three failures
    clock.now += 61
    assert cache.find(ADA) == "p1"
    assert len(caplog.records) == 2

    private_redis.start()  # with the entries of before the outage: the retry goes first
    clock.now += 30  # the longest pause
    assert [trait(cache, "p1", "plan"), trait(cache, "p1", "plan")] == ["pro", "pro"]
    assert results(metrics)["hit"] == 1


def test_after_a_failure_redis_is_left_alone_for_a_pause_that_grows_while_it_fails(
    inner: HookedStore, private_redis: RedisServer, metrics: Metrics, clock: Clock
) -> None:
    cache = private_cache(inner, private_redis, metrics, clock)
    create(cache, "p1", ADA)
    private_redis.kill()
    assert cache.find(ADA) == "p1"  # fails: a pause of 1 s
    clock.now += 1.5
    assert cache.find(ADA) == "p1"  # fails again: 2 s
    private_redis.start()
    clock.now += 1.5
    assert cache.find(ADA) == "p1"  # still paused: read from the store, counted as an error
    assert results(metrics) == {"hit": 0, "miss": 0, "error": 3}
    clock.now += 1
    assert [cache.find(ADA), cache.find(ADA)] == ["p1", "p1"]
    assert results(metrics) == {"hit": 1, "miss": 1, "error": 3}
    private_redis.kill()
    assert cache.find(ADA) == "p1"  # a success reset the pause to 1 s
    private_redis.start()
    clock.now += 1.1
    assert cache.find(ADA) == "p1"
    assert results(metrics) == {"hit": 2, "miss": 1, "error": 4}


def test_a_server_that_stops_answering_costs_one_timeout_then_a_pause(
    inner: HookedStore, private_redis: RedisServer, metrics: Metrics, clock: Clock
) -> None:
    cache = private_cache(inner, private_redis, metrics, clock, socket_timeout="100ms")
    create(cache, "p1", ADA)
    assert cache.find(ADA) == "p1"
    pauser = redis.Redis.from_url(private_redis.url)
    pauser.client_pause(5000)  # every other client's commands now hang
    pauser.close()
    assert [cache.find(ADA), cache.find(ADA)] == ["p1", "p1"]  # a timeout, then the pause
    assert results(metrics) == {"hit": 0, "miss": 1, "error": 2}


def test_an_invalidation_redis_missed_is_sent_before_the_next_read(
    inner: HookedStore, private_redis: RedisServer, clock: Clock
) -> None:
    writer_process = private_cache(inner, private_redis, Metrics(), clock)
    other_process = private_cache(inner, private_redis, Metrics(), clock)
    create(writer_process, "p1", ADA)
    assert trait(other_process, "p1", "plan") is None  # cached
    private_redis.kill()
    set_trait(writer_process, "p1", "plan", "pro")
    with writer_process.transaction() as writer:
        writer.link("p1", ANON, message_id="m2", at=T1)
    private_redis.start()  # with the entry cached before the commit
    clock.now += 2
    assert trait(other_process, "p1", "plan") is None  # stale until the writer's retry
    assert writer_process.find(ANON) == "p1"  # the retry runs first
    assert trait(other_process, "p1", "plan") == "pro"
    assert trait(writer_process, "p1", "plan") == "pro"


def test_an_erasure_redis_missed_is_retried_too(
    inner: HookedStore, private_redis: RedisServer, clock: Clock
) -> None:
    cache = private_cache(inner, private_redis, Metrics(), clock)
    create(cache, "p1", ADA)
    assert (cache.find(ADA), trait(cache, "p1", "plan")) == ("p1", None)
    private_redis.kill()
    cache.erase("p1", tombstone_key=lambda i: i.value, job_id="job", at=T1)
    private_redis.start()
    clock.now += 2
    assert (cache.find(ADA), cache.get("p1")) == (None, None)


# -- the workspace: the stream processor, the segment sweep and erasure through the cache --


@pytest.fixture
def cached_workspace(
    tmp_path: Path, redis_prefix: str, postgres_schema: str
) -> Iterator[Workspace]:
    config = {
        **TEST_CONFIG,
        "log": {"type": "sqlite"},
        "postgres": {"url": servers.POSTGRES_URL, "schema": postgres_schema, "pool_max": 4},
        "redis": {"url": servers.REDIS_URL, "prefix": redis_prefix, "cache_ttl": "1h"},
    }
    settings = load_settings(write_config(tmp_path, config), tmp_path / "data", environ={})
    opened = Workspace.open(settings)
    assert isinstance(opened.profiles, CachedProfileStore)
    yield opened
    opened.close()


def collect(workspace: Workspace, *events: dict[str, Any]) -> None:
    source = workspace.settings.config.source_by_key(WRITE_KEY)
    assert source is not None
    assert workspace.collector.collect(source, list(events)).accepted == len(events)
    drain(workspace)


def person(workspace: Workspace, kind: str, value: str) -> Profile | None:
    """What the profile API and the decide engine read: find, then get (twice: cached)."""
    identity = workspace.resolver.identity_for_lookup(kind, value, workspace.hasher)
    found = [workspace.profiles.find(identity) for _ in range(2)]
    assert found[0] == found[1]
    if found[0] is None:
        return None
    profiles = [workspace.profiles.get(found[0]) for _ in range(2)]
    assert profiles[0] == profiles[1]
    return profiles[0]


def test_processor_batches_merges_sweeps_and_erasure_reach_the_cache(
    cached_workspace: Workspace,
) -> None:
    workspace = cached_workspace
    collect(workspace, {"type": "track", "userId": "ada", "event": "Product Viewed"})
    collect(workspace, {"type": "track", "anonymousId": "ada-anon", "event": "Product Viewed"})
    ada, anonymous = (
        person(workspace, "user_id", "ada"),
        person(workspace, "anonymous_id", "ada-anon"),
    )
    assert ada is not None and anonymous is not None and ada != anonymous
    assert ada.segments == {}

    # A batch that saves the profile and enters a segment.
    collect(workspace, {"type": "track", "userId": "ada", "event": "Order Completed",
                        "properties": {"revenue": 12}})  # fmt: skip
    ada = person(workspace, "user_id", "ada")
    assert ada is not None and ada.features["revenue"] and "buyers" in ada.segments

    # A batch that merges the two profiles.
    collect(workspace, {"type": "identify", "userId": "ada", "anonymousId": "ada-anon",
                        "traits": {"email": "ada@example.com"}})  # fmt: skip
    merged = person(workspace, "anonymous_id", "ada-anon")
    assert merged is not None and merged == person(workspace, "user_id", "ada")
    assert merged == person(workspace, "email", "ada@example.com")
    assert "browsers" in merged.segments  # two views in 7 days, one from each profile

    # The time-dependent sweep: a segment exit without a save (the version stays).
    later = utcnow() + timedelta(days=8)
    assert workspace.segments.refresh_time_dependent(workspace.profiles, workspace.features, later)
    swept = person(workspace, "user_id", "ada")
    assert swept is not None and swept.version == merged.version
    assert "browsers" not in swept.segments

    workspace.eraser.erase("email", "ada@example.com", actor="test")
    for kind, value in (("user_id", "ada"), ("anonymous_id", "ada-anon")):
        assert person(workspace, kind, value) is None
    assert workspace.profiles.get(merged.profile_id) is None
    counted = results(workspace.metrics)
    assert counted["hit"] >= 10 and counted["error"] == 0
