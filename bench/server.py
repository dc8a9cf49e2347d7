"""Server mode (PostgreSQL + Redis) beside embedded (SQLite), at 10³ and 10⁶ profiles.

Protocol (BENCHMARKS.md, "Serving and ingestion", scale line):
1. One workspace file per backend, the same otherwise: the decide benchmark's retail
   workspace (500 content items over 3 placements), plus a probe: a count feature of
   `Bench Probe` events and a placement `bench_probe` whose content `probe_hit` is
   eligible once that count is 1 or more (else the fallback `probe_miss`). Embedded: every
   store and the log in SQLite files. Server: `postgres:` on a fresh schema (every store),
   `redis:` on a fresh prefix (the log on Redis Streams, the profile cache).
2. Population, before any timing: N people (10³ and 10⁶; `--quick`: 10³ and 10⁵), each
   with a user id and an anonymous id on one profile, traits, the feature states and
   segments of one of a few hundred simulated shoppers. Written by `Workspace.open` on the
   same file, through the profile store's writer, 5,000 people a transaction (the load
   rate is a figure too). Under the Redis cache, the store it wraps takes the writes.
3. Processes: `touchpoint serve --no-processor` (one API process) and one, then two,
   `touchpoint worker` processes against the same API server; timing starts once the
   workers have split the log's partitions between them.
4. For each (backend, size, workers):
   - ingest: a fixed number of events (page views and shop events of the visitor
     simulator, given to random existing people: user id and anonymous id), pre-encoded
     in bodies of 100, sent by 8 concurrent keep-alive clients to `POST /v1/batch`; the
     rate is events / (first send → `/healthz` reports lag 0): acknowledged AND applied;
   - decide: `POST /v1/decide` for 3 placements for random existing people (user id, the
     web source's write key), open loop at 300 requests/s (latency from when each request
     was due);
   - lookups: `GET /v1/profiles/user_id/<id>` of random existing people, one at a time;
   - freshness: per sample, a person who never sent one gets a `Bench Probe` event
     (`POST /v1/batch`), then `POST /v1/decide` for `bench_probe` is sent back to back
     until it answers `probe_hit`: the time from the event's acknowledgement to that
     answer (the resolution is one decide round trip).
   - before the open loop, 20 decisions to warm up (the first compiles the catalog), then
     200 one at a time: the service time, which bounds what one API process can serve.
   CPU per phase, from /proc (cores = CPU seconds per second of the phase): the API and
   worker processes, the PostgreSQL backends of their connections (matched by client port)
   with the server's WAL writer, checkpointer and background writer, `redis-server` (shared
   with anyone else using it), this client, and the rest of the machine (/proc/stat).
5. Memory: per table (`pg_total_relation_size`) and per SQLite file, what the bulk load
   added (after minus before), scaled to 10⁶ profiles from the largest population; Redis
   after the phases, by key family (`MEMORY USAGE` of every key under the prefix: the cache
   per cached profile, the log streams per event) and the `used_memory` delta.
6. The schema is dropped and the prefix's keys deleted at the end, whatever happened.
Client, servers, PostgreSQL and Redis all share this 2-core machine. Modules: this one runs
the plan; `server_population` loads people and measures memory and CPU, `server_phases`
holds the requests and timed phases, `server_report` writes the section.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    Options,
    Section,
    open_loop,
    run_async,
)
from bench.server_phases import (
    CATALOG_ITEMS,
    IDENTITY_SECRET,
    PROBE_EVENT,
    PROBE_HIT,
    PROBE_PLACEMENT,
    SECRET_KEY,
    WRITE_KEY,
    Measured,
    cache_counters,
    decide_requests,
    event_templates,
    ingest_requests,
    lookup_requests,
    one_by_one,
    run_freshness,
    run_ingest,
)
from bench.server_population import (
    CpuMeter,
    Loaded,
    RedisMemory,
    build_templates,
    bulk_load,
    drop_server_data,
    postgres_pids,
    postgres_sizes,
    redis_memory,
    redis_slow_commands,
    sqlite_sizes,
)
from touchpoint.config.settings import load_settings
from touchpoint.demo.catalog import build_catalog
from touchpoint.demo.content import DEMO_PLACEMENTS, demo_content, product_promotions
from touchpoint.demo.workspace import demo_workspace, write_workspace
from touchpoint.log.leases.base import Leases
from touchpoint.testing import ServerProcess, WorkerProcess

logger = logging.getLogger(__name__)

HASH_SECRET = "bench-server-hash-secret-0123456789"
POSTGRES_URL = os.environ.get(
    "TOUCHPOINT_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TOUCHPOINT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
# Whatever is exported, the workspace comes from the file alone.
ENVIRONMENT = {
    name: ""
    for name in (
        "TOUCHPOINT_POSTGRES_URL",
        "TOUCHPOINT_REDIS_URL",
        "TOUCHPOINT_WRITE_KEY",
        "TOUCHPOINT_SECRET_KEY",
        "TOUCHPOINT_HASH_SECRET",
        "TOUCHPOINT_CONFIG",
    )
}
PARTITIONS = 8
GROUP = "profiles"
BACKENDS = ("embedded", "server")


@dataclass(frozen=True)
class Plan:
    """Population sizes, and how long and how hard each phase runs."""

    sizes: tuple[int, ...] = (1_000, 1_000_000)
    per_transaction: int = 5_000
    templates: int = 400
    ingest_events: int = 30_000
    clients: int = 8
    decide_rate: float = 300.0
    decide_seconds: float = 10.0
    lookups: int = 1_000
    freshness_samples: int = 50
    freshness_timeout: float = 10.0
    catch_up_timeout: float = 300.0

    @classmethod
    def for_options(cls, options: Options) -> Plan:
        if options.quick:
            return cls(
                sizes=(1_000, 100_000),
                ingest_events=10_000,
                decide_seconds=5.0,
                lookups=300,
                freshness_samples=20,
            )
        return cls()


# -- the workspace ----------------------------------------------------------------------------


def workspace_config(schema: str | None, prefix: str | None) -> dict[str, Any]:
    """The benchmark's touchpoint.yaml: server mode when a schema and prefix are given."""
    catalog = build_catalog(CATALOG_ITEMS)
    promotions = product_promotions(catalog, CATALOG_ITEMS - len(demo_content(catalog)))
    config = demo_workspace(
        catalog,
        write_key=WRITE_KEY,
        secret_key=SECRET_KEY,
        hash_secret=HASH_SECRET,
        identity_secret=IDENTITY_SECRET,
        extra_content=promotions,
    )
    config["features"].append({"name": "bench_probes", "type": "count", "event": PROBE_EVENT})
    config["placements"].append({"name": PROBE_PLACEMENT, "fallback": "probe_miss"})
    config["content"] += [
        {
            "id": PROBE_HIT,
            "placements": [PROBE_PLACEMENT],
            "priority": 10,
            "eligibility": "features.bench_probes >= 1",
            "template": "<b>{{ features.bench_probes }}</b>",
        },
        {"id": "probe_miss", "placements": [PROBE_PLACEMENT], "template": "<i>no</i>"},
    ]
    config["log"] = {"partitions": PARTITIONS}
    # The benchmark measures what the servers take, not a source's rate limit.
    config["collect"] = {"rate_limit": {"requests_per_second": None, "events_per_second": None}}
    if schema is not None and prefix is not None:
        config["postgres"] = {"url": POSTGRES_URL, "schema": schema}
        config["redis"] = {"url": REDIS_URL, "prefix": prefix}
    return config


@dataclass
class Backend:
    """One backend's files (and, in server mode, schema and prefix) for one population."""

    kind: str
    directory: Path
    schema: str | None = None
    prefix: str | None = None
    redis_client: Any = None

    @classmethod
    def create(cls, kind: str, parent: Path) -> Backend:
        directory = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=parent))
        backend = cls(kind, directory)
        if kind == "server":
            import redis

            name = f"bench_{os.getpid()}_{secrets.token_hex(3)}"
            backend.schema, backend.prefix = name, f"bench-{name}"
            backend.redis_client = redis.Redis.from_url(REDIS_URL)
        write_workspace(backend.config_path, workspace_config(backend.schema, backend.prefix))
        return backend

    @property
    def config_path(self) -> Path:
        return self.directory / "touchpoint.yaml"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    def open_workspace(self) -> Any:
        from touchpoint.runtime import Workspace

        settings = load_settings(self.config_path, self.data_dir, environ=ENVIRONMENT)
        return Workspace.open(settings)

    @contextmanager
    def leases(self) -> Iterator[Leases]:
        """The partition leases the workers share (to see when they have split them)."""
        if self.kind == "embedded":
            from touchpoint.log.leases.sqlite import SqliteLeases

            sqlite_leases = SqliteLeases(self.data_dir / "log.sqlite3")
            try:
                yield sqlite_leases
            finally:
                sqlite_leases.close()
            return
        from touchpoint.core.config_stores import RedisConfig
        from touchpoint.core.redis import RedisService
        from touchpoint.log.leases.redis import RedisLeases

        service = RedisService(RedisConfig(url=REDIS_URL, prefix=self.prefix or "bench"))
        try:
            yield RedisLeases(service)
        finally:
            service.close()

    def cpu_groups(self, api: int, workers: list[int]) -> dict[str, Callable[[], Iterable[int]]]:
        """Who to measure: the API and worker processes, in server mode the PostgreSQL
        processes serving them and redis-server (shared with whoever else uses it), and
        this client."""
        groups: dict[str, Callable[[], Iterable[int]]] = {
            "API": lambda: [api],
            "workers": lambda: workers,
        }
        if self.kind == "server":
            redis_pid = int(self.redis_client.info("server")["process_id"])
            groups["PostgreSQL"] = postgres_pids(POSTGRES_URL, lambda: [api, *workers])
            groups["Redis"] = lambda: [redis_pid]
        groups["client"] = lambda: [os.getpid()]
        return groups

    def stored_bytes(self) -> dict[str, int]:
        """Bytes per table (server) or per SQLite file (embedded)."""
        if self.schema is not None:
            return postgres_sizes(POSTGRES_URL, self.schema)
        return sqlite_sizes(self.data_dir)

    def redis(self) -> RedisMemory | None:
        if self.redis_client is None or self.prefix is None:
            return None
        return redis_memory(self.redis_client, self.prefix)

    def clean_up(self) -> None:
        if self.schema is not None and self.prefix is not None:
            deleted = drop_server_data(POSTGRES_URL, self.schema, self.redis_client, self.prefix)
            logger.info("dropped schema %s and %d keys of %s", self.schema, deleted, self.prefix)
            self.redis_client.close()


def _wait_for_partitions(backend: Backend, workers: list[WorkerProcess], timeout: float) -> float:
    """Seconds until the workers hold every partition, split evenly between them."""
    started = time.perf_counter()
    with backend.leases() as leases:
        while time.perf_counter() - started < timeout:
            for worker in workers:
                if not worker.alive:
                    raise RuntimeError(f"a worker exited:\n{worker.log_tail()}")
            held = Counter(leases.owners(GROUP).values())
            even = set(held.values()) == {PARTITIONS // len(workers)}
            if sum(held.values()) == PARTITIONS and len(held) == len(workers) and even:
                return time.perf_counter() - started
            time.sleep(0.1)
    raise RuntimeError(f"the workers had not split the partitions after {timeout:.0f} s")


def _measure(
    server: ServerProcess,
    backend: Backend,
    size: int,
    workers: int,
    plan: Plan,
    templates: list[dict[str, Any]],
) -> Measured:
    rng = random.Random(size * 10 + workers)
    port = server.port
    began = time.time()
    processes = [
        WorkerProcess(backend.data_dir, "--config", str(backend.config_path), env=ENVIRONMENT)
        for _ in range(workers)
    ]
    try:
        for process in processes:
            process.start()
        joined = _wait_for_partitions(backend, processes, 60.0)
        logger.info(
            "%s %d: %d worker(s) hold the partitions (%.1f s)", backend.kind, size, workers, joined
        )
        meter = CpuMeter(backend.cpu_groups(server.pid, [process.pid for process in processes]))
        requests = ingest_requests(port, size, plan.ingest_events, templates, rng)
        logger.info("ingest: %d events", plan.ingest_events)
        ingest = run_async(
            run_ingest(
                port, requests, meter, clients=plan.clients, catch_up_timeout=plan.catch_up_timeout
            )
        )
        decisions = decide_requests(
            port,
            [rng.randrange(size) for _ in range(int(plan.decide_rate * plan.decide_seconds))],
            DEMO_PLACEMENTS,
        )
        warm_up = run_async(one_by_one(port, decisions[:20]))  # compiles the catalog
        if warm_up.ok != warm_up.requests:
            raise RuntimeError(f"decide answered {warm_up.statuses}:\n{server.log_tail()}")
        decide_alone = run_async(one_by_one(port, decisions[20:220]))  # service time
        before = cache_counters(port)
        logger.info("decide: %g/s for %g s", plan.decide_rate, plan.decide_seconds)
        meter.start()
        decide = run_async(
            open_loop(
                port, server.pid, decisions, rate=plan.decide_rate, seconds=plan.decide_seconds
            )
        )
        decide_usage = meter.stop()
        lookups = lookup_requests(port, [rng.randrange(size) for _ in range(plan.lookups)])
        logger.info("lookups: %d", plan.lookups)
        meter.start()
        lookup = run_async(one_by_one(port, lookups))
        lookup_usage = meter.stop()
        after = cache_counters(port)
        # People who never sent a probe: the last of the population, a new range per run.
        last = size - (workers - 1) * plan.freshness_samples
        sampled = list(range(last - plan.freshness_samples, last))
        logger.info("freshness: %d samples", len(sampled))
        freshness = run_async(run_freshness(port, sampled, meter, timeout=plan.freshness_timeout))
    finally:
        for process in processes:
            process.stop()
    cache = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}
    measured = Measured(
        ingest, decide, decide_usage, decide_alone, lookup, lookup_usage, freshness, cache
    )
    if backend.redis_client is not None and backend.prefix is not None:
        measured.slow_redis = redis_slow_commands(backend.redis_client, backend.prefix, began)
    return measured


# -- one backend, one population --------------------------------------------------------------


@dataclass
class Run:
    """A backend at one population size: the load, the memory, and each worker count."""

    kind: str
    size: int
    loaded: Loaded | None = None
    stored_empty: dict[str, int] = field(default_factory=dict)
    stored_after_load: dict[str, int] = field(default_factory=dict)
    stored_after_run: dict[str, int] = field(default_factory=dict)
    redis_before: int = 0
    redis_after: RedisMemory | None = None
    measured: dict[int, Measured] = field(default_factory=dict)
    error: str | None = None


def run_backend(
    kind: str, size: int, plan: Plan, parent: Path, events: list[dict[str, Any]]
) -> Run:
    """Load the population, then measure with 1 and 2 workers; errors end up in `Run.error`."""
    run = Run(kind, size)
    backend: Backend | None = None
    try:
        backend = Backend.create(kind, parent)
        if backend.redis_client is not None:
            run.redis_before = int(backend.redis_client.info("memory")["used_memory"])
        workspace = backend.open_workspace()  # creates the stores, applies the definitions
        try:
            templates = build_templates(workspace.settings.config, plan.templates)
        finally:
            workspace.close()
        run.stored_empty = backend.stored_bytes()
        workspace = backend.open_workspace()
        try:
            logger.info("%s: loading %d profiles", kind, size)
            run.loaded = bulk_load(
                workspace.profiles, templates, size, per_transaction=plan.per_transaction
            )
        finally:
            workspace.close()
        logger.info("%s: %d profiles in %.1f s", kind, size, run.loaded.seconds)
        run.stored_after_load = backend.stored_bytes()
        server = ServerProcess(
            backend.data_dir,
            "--config",
            str(backend.config_path),
            "--no-processor",
            env=ENVIRONMENT,
        ).start(timeout=120)
        try:
            for workers in (1, 2):
                run.measured[workers] = _measure(server, backend, size, workers, plan, events)
        finally:
            server.stop()
        run.stored_after_run = backend.stored_bytes()
        run.redis_after = backend.redis()
    except Exception as error:
        logger.exception("%s at %d profiles failed", kind, size)
        run.error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    finally:
        if backend is not None:
            try:
                backend.clean_up()
            except Exception:
                logger.exception("cleaning up %s failed", kind)
    return run


def run(options: Options) -> Section:
    """The server-mode benchmark (see the module docstring)."""
    from bench.server_report import section

    plan = Plan.for_options(options)
    began = time.perf_counter()
    load_at_start = os.getloadavg()[0]
    events = event_templates()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(
        prefix="touchpoint-bench-server-", dir=options.work_dir
    ) as temp:
        for size in plan.sizes:
            for kind in BACKENDS:
                logger.info("=== %s, %d profiles", kind, size)
                runs.append(run_backend(kind, size, plan, Path(temp), events))
    return section(plan, runs, load_at_start, time.perf_counter() - began)
