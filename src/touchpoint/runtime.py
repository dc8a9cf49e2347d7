"""The running workspace: every store and service of one process, opened from
settings and closed once. The HTTP app, the worker and the CLI all build on it,
so the wiring of backends lives in one place."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from touchpoint.audit.base import AuditLog, build_audit_log
from touchpoint.collect.ingest import Collector
from touchpoint.collect.rate_limit import RateLimiter, build_rate_limiter
from touchpoint.collect.rejected.base import RejectedStore, build_rejected_store
from touchpoint.config.services import Services
from touchpoint.config.settings import Settings
from touchpoint.consumers.consumer import LogConsumer
from touchpoint.consumers.host import LoopHost
from touchpoint.core.clock import SYSTEM_CLOCK, Clock, isoformat, parse_duration
from touchpoint.core.errors import InvalidInput
from touchpoint.core.metrics import Metrics
from touchpoint.decide.decision_log.base import DecisionLog, build_decision_log
from touchpoint.decide.engine import Decider
from touchpoint.definitions.apply import sync_definitions
from touchpoint.definitions.store.base import DefinitionStore, build_definition_store
from touchpoint.govern.erasure import Eraser
from touchpoint.govern.export import export_person
from touchpoint.jobs import JobRunner, PeriodicJob
from touchpoint.log.base import EventLog, build_event_log
from touchpoint.log.coordination import PartitionCoordinator
from touchpoint.log.leases.base import Leases, build_leases
from touchpoint.models.erasure import forget_people
from touchpoint.models.metrics import ModelCollector
from touchpoint.models.registry import ModelRegistry
from touchpoint.profiles.features import FeatureEngine
from touchpoint.profiles.identity import IdentityResolver
from touchpoint.profiles.lookup import PersonFinder
from touchpoint.profiles.pii import IdentityHasher
from touchpoint.profiles.store.base import ProfileStore, build_profile_store
from touchpoint.profiles.store.sqlite import SqliteProfileStore
from touchpoint.runtime_consumers import build_consumers, share_partitions
from touchpoint.runtime_metrics import WorkspaceCollector
from touchpoint.segments.realtime import SegmentEvaluator
from touchpoint.stream.pipeline import ProfilePipeline
from touchpoint.timers.base import TimerStore, build_timer_store
from touchpoint.timers.runner import TimerRunner
from touchpoint.warehouse.store import Warehouse
from touchpoint.warehouse.writer import WarehouseWriter

if TYPE_CHECKING:
    from touchpoint.models.training import Trainer, TrainOutcome

logger = logging.getLogger(__name__)

REJECTED_PURGE_SECONDS = 600.0  # how often the rejected store's retention is applied


@dataclass
class Workspace:
    """One process's view of a workspace."""

    settings: Settings
    metrics: Metrics
    log: EventLog
    rejected: RejectedStore
    profiles: ProfileStore
    hasher: IdentityHasher
    people: PersonFinder
    collector: Collector
    processor: LogConsumer
    decisions: DecisionLog
    definitions: DefinitionStore
    audit: AuditLog
    timers: TimerStore
    decider: Decider
    eraser: Eraser
    services: Services
    rate_limiter: RateLimiter
    resolver: IdentityResolver
    features: FeatureEngine
    segments: SegmentEvaluator
    loops: LoopHost
    warehouse: Warehouse | None = None
    warehouse_writer: WarehouseWriter | None = None
    leases: Leases | None = None
    jobs: JobRunner | None = None
    registry: ModelRegistry | None = None
    clock: Clock = SYSTEM_CLOCK
    closed: bool = field(default=False, init=False)

    @property
    def local_stores(self) -> bool:
        """Whether every store a request reads is an embedded file (no PostgreSQL, no Redis):
        routes then read inline on the event loop rather than on the threadpool."""
        return self.services.postgres is None and self.services.redis is None

    @property
    def pipeline(self) -> ProfilePipeline:
        """The profile pipeline (the `processor` consumer's handler) and its counters."""
        handler = self.processor.handler
        assert isinstance(handler, ProfilePipeline)
        return handler

    @property
    def timer_runner(self) -> TimerRunner:
        """The loop that fires the durable timers (`timers`) through the handlers
        registered with it (`timer_runner.register`)."""
        return next(loop for loop in self.loops if isinstance(loop, TimerRunner))

    @classmethod
    def open(
        cls, settings: Settings, *, metrics: Metrics | None = None, clock: Clock | None = None
    ) -> Workspace:
        """Open (creating if needed) every store under the settings' data directory.

        `clock` is the workspace's one source of time (default: the system's); every part
        that asks what time it is asks it, so a test can fix the date."""
        config = settings.config
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        metrics = metrics or Metrics()
        clock = clock or SYSTEM_CLOCK
        services = Services.open(config)
        try:
            return cls._open(settings, metrics, services, clock)
        except BaseException:
            services.close()
            raise

    @classmethod
    def _open(
        cls, settings: Settings, metrics: Metrics, services: Services, clock: Clock
    ) -> Workspace:
        config, data_dir = settings.config, settings.data_dir
        log = build_event_log(
            config.log,
            data_dir,
            dedup_window=config.collect.dedup_window,
            redis=services.redis,
            postgres=services.postgres,
            clock=clock.time,
        )
        rejected = build_rejected_store(
            config.rejected,
            data_dir,
            services.postgres_for(config.rejected, "rejected"),
            max_per_source=config.collect.rejected_per_source,
        )
        profiles = build_profile_store(
            config.profiles, data_dir, services.postgres_for(config.profiles, "profiles")
        )
        # The cache pays where a lookup is a network round trip (PostgreSQL: 2.5-3.5x faster
        # on a hit); an embedded SQLite lookup is faster than a Redis one, so it stays uncached.
        if (
            services.redis is not None
            and services.redis.cache_ttl > 0
            and not isinstance(profiles, SqliteProfileStore)
        ):
            from touchpoint.profiles.store.redis_cache import CachedProfileStore

            profiles = CachedProfileStore(profiles, services.redis, metrics=metrics)
        decisions = build_decision_log(
            config.decisions, data_dir, services.postgres_for(config.decisions, "decisions")
        )
        definitions = build_definition_store(
            config.definitions_store,
            data_dir,
            services.postgres_for(config.definitions_store, "definitions_store"),
            clock=clock.now,
        )
        timers = build_timer_store(
            config.timers, data_dir, services.postgres_for(config.timers, "timers"), clock=clock
        )
        audit = build_audit_log(
            config.audit, data_dir, services.postgres_for(config.audit, "audit"), clock=clock.now
        )
        if settings.config_path is not None and (config.placements or config.content):
            sync_definitions(
                definitions,
                config.definitions(),
                audit=audit,
                actor=f"config:{settings.config_path.name}",
            )
        hasher = IdentityHasher(settings.hash_secret)
        collector = Collector(config, log, rejected, hasher, metrics=metrics, clock=clock.now)
        resolver = IdentityResolver(config.identity)
        features = FeatureEngine(config.features)
        segments = SegmentEvaluator(
            config.segments, time_dependent_features=features.time_dependent
        )
        consumers = build_consumers(
            settings,
            log=log,
            profiles=profiles,
            decisions=decisions,
            definitions=definitions,
            resolver=resolver,
            features=features,
            segments=segments,
            hasher=hasher,
            timers=timers,
            clock=clock,
        )
        warehouse, writer = consumers.warehouse, consumers.writer
        registry = ModelRegistry(data_dir / "models")
        recommendations = None
        if warehouse is not None:
            from touchpoint.models.recommend.catalog import load_recommender
            from touchpoint.models.serving import RecommendationService

            recommendations = RecommendationService(
                registry,
                load_recommender,
                warehouse=warehouse,
                recent_feature=config.recent_items_feature(),
            )
        people = PersonFinder(
            resolver=resolver, hasher=hasher, profiles=profiles, features=features
        )
        decider = Decider(
            config=config,
            definitions=definitions,
            decisions=decisions,
            people=people,
            metrics=metrics,
            recommendations=recommendations,
            clock=clock.now,
        )
        eraser = Eraser(
            log=log,
            warehouse=warehouse,
            people=people,
            decisions=decisions,
            rejected=rejected,
            audit=audit,
            timers=timers,
            forget_in_models=partial(forget_people, registry),
            metrics=metrics,
            clock=clock.now,
        )
        workspace = cls(
            settings=settings,
            metrics=metrics,
            log=log,
            rejected=rejected,
            profiles=profiles,
            hasher=hasher,
            people=people,
            collector=collector,
            processor=consumers.processor,
            decisions=decisions,
            definitions=definitions,
            audit=audit,
            timers=timers,
            decider=decider,
            eraser=eraser,
            services=services,
            rate_limiter=build_rate_limiter(config, services.redis, clock.time),
            resolver=resolver,
            features=features,
            segments=segments,
            loops=consumers.loops,
            warehouse=warehouse,
            warehouse_writer=writer,
            registry=registry,
            clock=clock,
        )
        metrics.registry.register(WorkspaceCollector(workspace))
        metrics.registry.register(ModelCollector(registry))
        return workspace

    def share_partitions(
        self, *, member: str | None = None, groups: Collection[str] | None = None
    ) -> dict[str, PartitionCoordinator]:
        """Make this process's consumers (of `groups`; default: every hosted one) workers of
        their groups: from its next batch each processes only the partitions its group
        assigns it (see log.coordination); the coordinators by group. The leases live
        beside the log: in Redis for Redis Streams, in the log's file for SQLite."""
        if self.leases is None:
            self.leases = build_leases(self.log, self.services.redis)
        return share_partitions(
            self.loops,
            self.leases,
            partitions=self.log.partitions,
            ttl=parse_duration(self.settings.config.stream.lease_ttl).total_seconds(),
            member=member,
            groups=groups,
        )

    def start_background(self) -> None:
        """Start what a long-running process runs beside its requests: every hosted loop (the
        consumers of profiles, outcomes and the warehouse copy, each one worker of its
        group, sharing the log's partitions) and the background jobs. `serve` (one process
        or several) and `worker` call this."""
        self.share_partitions()
        self.loops.start()
        self.start_jobs()

    def start_jobs(self) -> JobRunner:
        """Start the background jobs of a long-running process (the rejected store's
        retention; model training on its schedule): `start_background` calls this."""
        if self.jobs is None:
            jobs = [PeriodicJob("rejected", REJECTED_PURGE_SECONDS, self.purge_rejected)]
            schedule = self.settings.config.models.schedule
            if schedule is not None and self.warehouse is not None:
                every = parse_duration(schedule.every).total_seconds()
                jobs.append(PeriodicJob("models", every, self.train_on_schedule))
            self.jobs = JobRunner(jobs, clock=self.clock.monotonic)
        self.jobs.start()
        return self.jobs

    def purge_rejected(self) -> int:
        """Apply the rejected store's retention window (`collect.rejected_retention`): delete
        the rejected events not seen within it; how many were deleted."""
        window = parse_duration(self.settings.config.collect.rejected_retention)
        purged = self.rejected.purge(isoformat(self.clock.now() - window))
        if purged:
            logger.info("rejected store: %d events past the retention window deleted", purged)
        return purged

    def trainer(self) -> Trainer:
        """A Trainer of this workspace's models (see models.training)."""
        from touchpoint.models.training import Trainer

        if self.warehouse is None or self.registry is None:
            raise InvalidInput(
                "models need the warehouse (warehouse.enabled: false)",
                details={"field": "warehouse.enabled"},
            )
        config = self.settings.config
        return Trainer(
            config=config,
            warehouse=self.warehouse,
            registry=self.registry,
            profiles=self.profiles,
            writer=self.warehouse_writer,
            seed=config.models.seed,
        )

    def train_on_schedule(self) -> list[TrainOutcome]:
        """The scheduled retraining: one process of the workspace trains at a time (the
        others find the lock taken and skip this turn)."""
        assert self.registry is not None
        with self.registry.exclusive("training") as held:
            if not held:
                logger.info("scheduled training skipped: another process is training")
                return []
            outcomes = self.trainer().run()
        for outcome in outcomes:
            logger.info(
                "scheduled training: %s %s (%s)", outcome.model, outcome.status, outcome.reason
            )
        return outcomes

    def export_person(self, kind: str, value: str, *, actor: str) -> dict[str, Any]:
        """Everything this workspace holds about a person (see govern.export), audited."""
        return export_person(
            kind,
            value,
            people=self.people,
            decisions=self.decisions,
            rejected=self.rejected,
            audit=self.audit,
            actor=actor,
            clock=self.clock.now,
        )

    def close(self) -> None:
        """Stop the hosted loops if they run, then close the stores (the log flushes first).
        Closing twice is a no-op."""
        if self.closed:
            return
        self.closed = True
        self.loops.stop()
        if self.jobs is not None:
            self.jobs.stop()
        if self.leases is not None:
            self.leases.close()
        self.log.close()
        self.rejected.close()
        self.profiles.close()
        self.decisions.close()
        self.definitions.close()
        self.audit.close()
        self.timers.close()
        self.services.close()
