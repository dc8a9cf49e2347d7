"""Gauges read at scrape time from the running workspace (log lag per consumer group, the
profile pipeline's counters).

The collector reads the workspace through `MeasuredWorkspace`, the few parts it needs, so
this module sits below `runtime` (which registers it) instead of importing it back.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from touchpoint.collect.rejected.base import RejectedStore
    from touchpoint.consumers.consumer import LogConsumer
    from touchpoint.consumers.host import LoopHost
    from touchpoint.log.base import EventLog
    from touchpoint.stream.pipeline import ProfilePipeline
    from touchpoint.warehouse.store import Warehouse
    from touchpoint.warehouse.writer import WarehouseWriter


class MeasuredWorkspace(Protocol):
    """What the collector reads of a running workspace (`runtime.Workspace` has it all),
    looked up at every scrape so it always sees the workspace's current parts."""

    @property
    def log(self) -> EventLog: ...

    @property
    def processor(self) -> LogConsumer: ...

    @property
    def pipeline(self) -> ProfilePipeline: ...

    @property
    def loops(self) -> LoopHost: ...

    @property
    def rejected(self) -> RejectedStore: ...

    @property
    def warehouse(self) -> Warehouse | None: ...

    @property
    def warehouse_writer(self) -> WarehouseWriter | None: ...


class WorkspaceCollector(Collector):
    """Exposes what the stores and the processor know, computed when Prometheus asks."""

    def __init__(self, workspace: MeasuredWorkspace) -> None:
        self._workspace = workspace

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        workspace = self._workspace
        processor, pipeline = workspace.processor, workspace.pipeline
        lag = GaugeMetricFamily(
            "touchpoint_log_lag",
            "Offsets the profile consumer is behind, per partition.",
            labels=["partition"],
        )
        for partition, behind in sorted(processor.lag().items()):
            lag.add_metric([str(partition)], behind)
        yield lag
        group_lag = GaugeMetricFamily(
            "touchpoint_consumer_lag",
            "Offsets each consumer group of this process is behind the log's end, in total.",
            labels=["group"],
        )
        failing = GaugeMetricFamily(
            "touchpoint_consumer_failing",
            "1 while a consumer of this process fails (its last step raised), else 0.",
            labels=["group"],
        )
        for consumer in workspace.loops.consumers():
            group_lag.add_metric([consumer.group], sum(consumer.lag().values()))
            failing.add_metric([consumer.group], 1 if consumer.failing else 0)
        yield group_lag
        yield failing
        counters = CounterMetricFamily(
            "touchpoint_processor_events",
            "Events seen by this process's stream processor.",
            labels=["outcome"],
        )
        for outcome in (
            "processed",
            "duplicates",
            "skipped_no_identity",
            "erased_dropped",
            "consent_suppressed",
        ):
            counters.add_metric([outcome], getattr(pipeline, outcome))
        counters.add_metric(["failed"], processor.failed)
        yield counters
        yield CounterMetricFamily(
            "touchpoint_profile_merges",
            "Profiles merged by identity resolution.",
            value=pipeline.merges,
        )
        yield CounterMetricFamily(
            "touchpoint_segment_changes",
            "Segment enters and exits recorded.",
            value=pipeline.segment_changes,
        )
        rejected = GaugeMetricFamily(
            "touchpoint_rejected_stored", "Events held in the rejected store.", labels=["reason"]
        )
        for reason, count in sorted(workspace.rejected.counts_by_reason().items()):
            rejected.add_metric([reason], count)
        yield rejected
        writer, warehouse = workspace.warehouse_writer, workspace.warehouse
        if writer is not None and warehouse is not None:
            yield CounterMetricFamily(
                "touchpoint_warehouse_copied_events",
                "Events this process copied into the warehouse.",
                value=writer.rows_written,
            )
            yield GaugeMetricFamily(
                "touchpoint_warehouse_last_copy_timestamp_seconds",
                "When this process last copied events into the warehouse (0: never).",
                value=writer.last_sync_at,
            )
            stats = warehouse.stats()
            yield GaugeMetricFamily(
                "touchpoint_warehouse_event_files",
                "Live events files in the warehouse.",
                value=stats["event_files"],
            )
            yield GaugeMetricFamily(
                "touchpoint_warehouse_event_bytes",
                "Bytes of the live events files.",
                value=stats["event_bytes"],
            )
