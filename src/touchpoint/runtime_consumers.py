"""The workspace's log consumers, wired from settings: the profile pipeline on `profiles`,
the outcome joiner on `outcomes` and, when the warehouse is on, its copy on `warehouse`
(both following `profiles`), hosted together (see consumers/ and ADR 13)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from functools import partial

from touchpoint.config.settings import Settings
from touchpoint.consumers.consumer import LogConsumer
from touchpoint.consumers.host import LoopHost
from touchpoint.core.clock import Clock, parse_duration
from touchpoint.decide.decision_log.base import DecisionLog
from touchpoint.decide.outcomes import OutcomeHandler
from touchpoint.definitions.store.base import DefinitionStore
from touchpoint.log.base import EventLog
from touchpoint.log.coordination import PartitionCoordinator, member_name
from touchpoint.log.leases.base import Leases
from touchpoint.profiles.features import FeatureEngine
from touchpoint.profiles.identity import IdentityResolver
from touchpoint.profiles.pii import IdentityHasher
from touchpoint.profiles.store.base import ProfileStore
from touchpoint.profiles.tombstones import tombstone_key
from touchpoint.segments.realtime import SegmentEvaluator
from touchpoint.stream.pipeline import ProfilePipeline
from touchpoint.timers.base import TimerStore
from touchpoint.timers.runner import TimerRunner
from touchpoint.warehouse import warehouse_root
from touchpoint.warehouse.store import Warehouse
from touchpoint.warehouse.writer import WarehouseWriter

FOLLOWER_WAIT_SECONDS = 0.1  # the least an idle consumer following `profiles` waits


@dataclass(frozen=True, slots=True)
class Consumers:
    """What `build_consumers` made: the profile consumer (`processor`), every hosted loop
    (it and the timer runner included), and the warehouse with its writer when the
    warehouse is on."""

    processor: LogConsumer
    loops: LoopHost
    warehouse: Warehouse | None
    writer: WarehouseWriter | None


def build_consumers(
    settings: Settings,
    *,
    log: EventLog,
    profiles: ProfileStore,
    decisions: DecisionLog,
    definitions: DefinitionStore,
    resolver: IdentityResolver,
    features: FeatureEngine,
    segments: SegmentEvaluator,
    hasher: IdentityHasher,
    timers: TimerStore,
    clock: Clock,
) -> Consumers:
    """The workspace's consumers, each on its own group, and its timer runner (fed handlers
    by the parts that schedule timers), not started."""
    config = settings.config
    poll_interval = parse_duration(config.stream.poll_interval).total_seconds()
    pipeline = ProfilePipeline(
        config,
        log,
        profiles,
        resolver=resolver,
        features=features,
        segments=segments,
        segment_refresh_seconds=parse_duration(config.stream.segment_refresh).total_seconds(),
        tombstone_key=partial(tombstone_key, hasher),
        clock=clock.now,
    )
    processor = LogConsumer(
        log, pipeline, idle_wait_seconds=poll_interval, clock=clock.now, time=clock.time
    )
    # The followers of `profiles` wait out their interval when idle (an append gives them
    # nothing until the pipeline commits it).
    outcomes = LogConsumer(
        log,
        OutcomeHandler(decisions, definitions, profiles, resolver, follows=pipeline.group),
        idle_wait_seconds=max(poll_interval, FOLLOWER_WAIT_SECONDS),
        clock=clock.now,
        time=clock.time,
    )
    timer_runner = TimerRunner(timers, (), clock=clock)
    loops = LoopHost([processor, outcomes, timer_runner])
    if not config.warehouse.enabled:
        return Consumers(processor, loops, None, None)
    warehouse = Warehouse(warehouse_root(settings))
    writer = WarehouseWriter(
        warehouse,
        log,
        profiles,
        resolver,
        follow_group=pipeline.group,
        flush_rows=config.warehouse.flush_rows,
        flush_interval=parse_duration(config.warehouse.flush_interval).total_seconds(),
        clock=clock.time,
    )
    loops.add(
        LogConsumer(
            log,
            writer,
            # Large pages (files stay large), at most about one file's rows per step.
            max_records=max(1_000, writer.max_file_rows // log.partitions),
            idle_wait_seconds=parse_duration(config.warehouse.sync_interval).total_seconds(),
            clock=clock.now,
            time=clock.time,
        )
    )
    return Consumers(processor, loops, warehouse, writer)


def share_partitions(
    loops: LoopHost,
    leases: Leases,
    *,
    partitions: int,
    ttl: float,
    member: str | None = None,
    groups: Collection[str] | None = None,
) -> dict[str, PartitionCoordinator]:
    """Make the hosted consumers (of `groups`; default: all) members of their groups, under
    one member name; the coordinators by group (see log.coordination)."""
    name = member or member_name()
    coordinators = {}
    for consumer in loops.consumers():
        if groups is not None and consumer.group not in groups:
            continue
        coordinator = PartitionCoordinator(
            leases, group=consumer.group, partitions=partitions, member=name, ttl=ttl
        )
        consumer.coordinate(coordinator)
        coordinators[consumer.group] = coordinator
    return coordinators
