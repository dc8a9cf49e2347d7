"""What `bench/server.py` needs around its timed phases: the population of existing people,
loaded in bulk, the memory it takes in each backend, who used the CPU, and the clean-up.

People are numbered; person `i` has the user id `u-<i>` and an anonymous id shaped like a
UUID, both linked to one profile, so the benchmark can name any of them without a lookup.
Their profiles are copies of a few hundred simulated shoppers' profiles (traits, feature
states, segment memberships, computed by the workspace's own feature engine and segment
evaluator from the visitor simulator's events), written through the profile store's writer
in large transactions: the store's own write path, without HTTP, the log or the processor.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from touchpoint.config.workspace import TouchpointConfig
from touchpoint.core.clock import isoformat, new_id, utcnow
from touchpoint.demo.catalog import build_catalog
from touchpoint.demo.simulate import simulate_journeys
from touchpoint.profiles.features import FeatureEngine
from touchpoint.profiles.fields import apply_profile_fields, consent_update
from touchpoint.profiles.identity import IdentityResolver
from touchpoint.profiles.model import Identity, Profile
from touchpoint.profiles.store.base import ProfileStore
from touchpoint.profiles.view import profile_document
from touchpoint.segments.realtime import SegmentEvaluator

BULK_MESSAGE_ID = "bench-bulk-load"
_FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken")
_PLANS = ("free", "plus", "pro")


def person(index: int) -> tuple[str, str]:
    """(user id, anonymous id) of person `index` of a population."""
    return f"u-{index:010d}", f"{index:08x}-6b1e-4c2a-9f00-{(index * 2654435761) % 2**48:012x}"


@dataclass(frozen=True)
class Template:
    """A simulated shopper's profile document, copied onto many people."""

    state: Profile
    segments: tuple[str, ...]


def build_templates(config: TouchpointConfig, count: int, *, seed: int = 31) -> list[Template]:
    """Profiles of `count` simulated shoppers (two weeks that ended a day ago), with the
    segments they are in now. Consent changes are left out: everyone may be profiled and
    personalized for, so every person can become eligible for content."""
    engine = FeatureEngine(config.features)
    segments = SegmentEvaluator(config.segments, time_dependent_features=engine.time_dependent)
    hidden = IdentityResolver(config.identity).pii_traits
    now = utcnow()
    start = now - timedelta(days=15)
    catalog = build_catalog(500)
    templates = []
    for number, journey in enumerate(
        simulate_journeys(count, seed=seed, catalog=catalog, start=start, days=14)
    ):
        messages = [message for message in journey.messages if consent_update(message) is None]
        profile = Profile(profile_id="template", created_at=messages[0]["timestamp"])
        for message in messages:
            apply_profile_fields(profile, message, message["timestamp"], hidden)
            engine.apply(profile.features, message)
        profile.traits.setdefault("first_name", _FIRST_NAMES[number % len(_FIRST_NAMES)])
        profile.traits.setdefault("plan", _PLANS[number % len(_PLANS)])
        document = profile_document(profile, engine, now)
        templates.append(Template(profile, tuple(sorted(segments.evaluate(document, now)))))
    return templates


def _writable(store: ProfileStore) -> ProfileStore:
    """The store to load into: under the Redis cache, the store it wraps (nothing is cached
    yet, and invalidating a million fresh profiles would only fill Redis with markers)."""
    inner = getattr(store, "inner", None)
    return inner if isinstance(inner, ProfileStore) else store


@dataclass
class Loaded:
    """How the bulk load went."""

    profiles: int = 0
    seconds: float = 0.0
    transactions: int = 0
    identities: int = 0
    memberships: int = 0

    @property
    def rate(self) -> float:
        return self.profiles / self.seconds if self.seconds else 0.0


def bulk_load(
    store: ProfileStore, templates: list[Template], size: int, *, per_transaction: int
) -> Loaded:
    """Write people 0..size-1 (profile, user id, anonymous id, segment memberships) in
    transactions of `per_transaction` people each."""
    target = _writable(store)
    loaded = Loaded()
    stamp = isoformat(utcnow())
    started = time.perf_counter()
    for first in range(0, size, per_transaction):
        with target.transaction() as writer:
            for index in range(first, min(size, first + per_transaction)):
                template = templates[index % len(templates)]
                source = template.state
                profile_id = new_id()
                writer.create(
                    Profile(
                        profile_id=profile_id,
                        created_at=source.created_at,
                        first_seen=source.first_seen,
                        last_seen=source.last_seen,
                        last_event_at=source.last_event_at,
                        traits=source.traits,
                        trait_times=source.trait_times,
                        features=source.features,
                    )
                )
                user_id, anonymous_id = person(index)
                for identity in (
                    Identity("user_id", user_id),
                    Identity("anonymous_id", anonymous_id),
                ):
                    writer.link(profile_id, identity, message_id=BULK_MESSAGE_ID, at=stamp)
                for name in template.segments:
                    writer.set_segment(profile_id, name, member=True, at=stamp)
                loaded.memberships += len(template.segments)
        loaded.transactions += 1
    loaded.seconds = time.perf_counter() - started
    loaded.profiles = size
    loaded.identities = 2 * size
    return loaded


# -- memory ---------------------------------------------------------------------------------


def postgres_sizes(url: str, schema: str) -> dict[str, int]:
    """`pg_total_relation_size` (table, indexes, TOAST) of every table of the schema."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY 2 DESC",
            (schema,),
        ).fetchall()
    return {str(name): int(size) for name, size in rows}


def sqlite_sizes(data_dir: Path) -> dict[str, int]:
    """Bytes of each SQLite file (with its WAL) in the data directory, by store file."""
    sizes: dict[str, int] = {}
    for path in sorted(data_dir.glob("*.sqlite3*")):
        name = path.name.split(".sqlite3")[0]
        sizes[name] = sizes.get(name, 0) + path.stat().st_size
    return dict(sorted(sizes.items(), key=lambda item: -item[1]))


@dataclass
class RedisMemory:
    """Bytes under a prefix by key family (`MEMORY USAGE`, exact for small values, sampled
    for streams), how many keys of each, and the server's `used_memory`."""

    used_memory: int = 0
    families: dict[str, tuple[int, int]] = field(default_factory=dict)

    def bytes_of(self, *families: str) -> int:
        return sum(self.families.get(name, (0, 0))[1] for name in families)

    def keys_of(self, family: str) -> int:
        return self.families.get(family, (0, 0))[0]


def _family(key: bytes, prefix: str) -> str:
    parts = key.decode("utf-8", "replace")[len(prefix) + 1 :].split(":")
    if parts[0] in ("cache", "cache-marker") and len(parts) > 1:
        return f"{parts[0]}:{parts[1]}"
    return parts[0]


def redis_memory(client: Any, prefix: str) -> RedisMemory:
    """Memory of every key under `prefix`, by family (`log`, `cache:profile`, ...)."""
    memory = RedisMemory(used_memory=int(client.info("memory")["used_memory"]))
    families: dict[str, list[int]] = {}
    keys = list(client.scan_iter(match=f"{prefix}:*", count=2000))
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        pipeline = client.pipeline(transaction=False)
        for key in chunk:
            pipeline.memory_usage(key, samples=0)
        for key, size in zip(chunk, pipeline.execute(), strict=True):
            counts = families.setdefault(_family(key, prefix), [0, 0])
            counts[0] += 1
            counts[1] += int(size or 0)
    memory.families = {name: (keys_, size) for name, (keys_, size) in sorted(families.items())}
    return memory


def redis_slow_commands(client: Any, prefix: str, since: float) -> dict[str, tuple[int, float]]:
    """Commands Redis logged as slow (SLOWLOG, 10 ms and more by default) since `since`
    (epoch seconds): `own` (naming our prefix) and `others` (anyone else on this shared
    server), each as (count, total ms). Redis runs one command at a time, so every one of
    them held up all the others."""
    counts = {"own": [0, 0.0], "others": [0, 0.0]}
    marker = prefix.encode()
    for entry in client.slowlog_get(128):
        if entry["start_time"] < since:
            continue
        command = entry["command"]
        who = "own" if marker in (command if isinstance(command, bytes) else b"") else "others"
        counts[who][0] += 1
        counts[who][1] += entry["duration"] / 1000
    return {who: (int(count), float(total)) for who, (count, total) in counts.items()}


def drop_server_data(postgres_url: str, schema: str, redis_client: Any, prefix: str) -> int:
    """Drop the benchmark's schema and delete its Redis keys; how many keys were deleted."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )
    deleted = 0
    batch: list[bytes] = []
    for key in redis_client.scan_iter(match=f"{prefix}:*", count=2000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += int(redis_client.unlink(*batch))
            batch = []
    if batch:
        deleted += int(redis_client.unlink(*batch))
    return deleted


# -- CPU ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far, 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all of the machine's cores have spent busy so far (/proc/stat)."""
    try:
        with open("/proc/stat", encoding="utf-8") as handle:
            fields = [int(value) for value in handle.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def socket_ports(pids: Iterable[int]) -> set[int]:
    """Local TCP ports of the sockets these processes hold open."""
    inodes = set()
    for pid in pids:
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for descriptor in descriptors:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{descriptor}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="utf-8") as handle:
                lines = handle.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def postgres_pids(url: str, clients: Callable[[], Iterable[int]]) -> Callable[[], list[int]]:
    """A reader of the PostgreSQL processes working for `clients()`: the backends of their
    connections (matched by client port) and the server's WAL writer, checkpointer and
    background writer (shared with any other user of the server)."""
    import psycopg

    def read() -> list[int]:
        ports = sorted(socket_ports(clients()))
        with psycopg.connect(url, autocommit=True) as connection:
            rows = connection.execute(
                "SELECT pid FROM pg_stat_activity WHERE client_port = ANY(%s) OR backend_type "
                "IN ('walwriter', 'checkpointer', 'background writer')",
                (ports,),
            ).fetchall()
        return [int(row[0]) for row in rows]

    return read


class CpuMeter:
    """CPU used by groups of processes over a phase: `start()`, then `stop()` gives cores
    (CPU seconds per second of the phase) per group, the busiest process of each group, and
    what the rest of the machine used. `stop()` may be called again for a longer span."""

    def __init__(self, groups: dict[str, Callable[[], Iterable[int]]]) -> None:
        # Each group's pids are read at every reading: PostgreSQL starts a backend per
        # connection, and the pools open connections as they need them.
        self.groups = groups
        self._before: dict[str, dict[int, float]] = {}
        self._machine = 0.0
        self._started = 0.0

    def _read(self) -> dict[str, dict[int, float]]:
        return {
            name: {pid: cpu_seconds(pid) for pid in members()}
            for name, members in self.groups.items()
        }

    def start(self) -> None:
        self._before = self._read()
        self._machine = machine_busy_seconds()
        self._started = time.perf_counter()

    def stop(self) -> Usage:
        after = self._read()
        machine = machine_busy_seconds() - self._machine
        seconds = time.perf_counter() - self._started or 1e-9
        cores: dict[str, float] = {}
        busiest: dict[str, float] = {}
        for name, readings in after.items():
            before = self._before.get(name, {})
            used = [max(0.0, value - before.get(pid, 0.0)) for pid, value in readings.items()]
            cores[name] = sum(used) / seconds
            busiest[name] = max(used, default=0.0) / seconds
        rest = max(0.0, machine / seconds - sum(cores.values()))
        return Usage(seconds, cores, busiest, rest)


@dataclass(frozen=True)
class Usage:
    """Cores used per group of processes during a phase of `seconds`."""

    seconds: float
    cores: dict[str, float]
    busiest: dict[str, float]
    rest: float = 0.0

    def describe(self) -> str:
        """`API 0.95, workers 0.60 (busiest 0.31), PostgreSQL 0.40, ...; total 1.95 of 2`."""
        parts = []
        for name, value in self.cores.items():
            text = f"{name} {value:.2f}"
            if name == "workers" and value > self.busiest[name] + 0.005:
                text += f" (busiest {self.busiest[name]:.2f})"
            parts.append(text)
        total = sum(self.cores.values())
        return (
            f"{', '.join(parts)}; total {total:.2f}, rest of the machine {self.rest:.2f}, "
            f"of {os.cpu_count()} cores"
        )

    def limit(self) -> str:
        """What held the phase back, as far as CPU tells: the machine's cores when they were
        all in use, else the busiest single process (one Python process uses at most
        about one core: the GIL)."""
        total = sum(self.cores.values())
        cpus = os.cpu_count() or 1
        name = max(self.busiest, key=lambda key: self.busiest[key])
        if total + self.rest >= 0.9 * cpus:
            others = f", {self.rest:.2f} of them by other work" if self.rest >= 0.2 else ""
            return f"all {cpus} cores busy (largest share: {name} {self.cores[name]:.2f}{others})"
        if self.busiest[name] >= 0.85:
            return f"{name} process at {self.busiest[name]:.2f} core"
        return (
            f"no process saturated (busiest: {name} {self.busiest[name]:.2f} core): the rest "
            "is waiting (round trips, fsync, polling, locks)"
        )
