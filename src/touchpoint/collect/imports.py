"""Importing files: past events, CRM profiles and product catalogs from CSV, Parquet or
JSON lines (`touchpoint import events|profiles|items FILE`).

Events and profiles are made into Segment messages (`track`, `identify`; see
collect.import_mapping) and sent through the collector in batches, exactly as live ones:
validation, the tracking plan, PII hashing, the durable log with its dedup on
`messageId`. A row without a `messageId` column gets one derived from its content
(`import-` + a hash of the kind and the message), so importing the same file again adds
nothing: the log's dedup window and the profile timeline's unique message ids absorb it.
Identical rows of one file are therefore one event; give them an id column to keep them
apart. `apply_imported` then runs the stream processor (identity resolution, traits,
features, segments) until what was appended is applied.

Items go to the warehouse's catalog (`write_items`, an upsert by `item_id`).

Every bad row is reported with its line (see collect.import_sources), the column and the
reason, whether the mapping refused it or the collector did; the good rows are imported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from touchpoint.collect.import_mapping import ITEM_ID, ImportKind, Problem, RowMapping
from touchpoint.collect.import_run import (
    BadRow,
    ImportOptions,
    ImportProgress,
    ImportResult,
    ImportRun,
    ProgressCallback,
    message_id,
)
from touchpoint.collect.import_sources import ROW
from touchpoint.collect.import_values import convert
from touchpoint.core.errors import InvalidInput

if TYPE_CHECKING:
    from touchpoint.collect.ingest import Collector, CollectResult, EventProblem
    from touchpoint.config.settings import Settings
    from touchpoint.core.config_sources import SourceConfig
    from touchpoint.log.base import EventLog
    from touchpoint.log.coordination import PartitionCoordinator

__all__ = [
    "ApplyResult",
    "ApplyingWorkspace",
    "BadRow",
    "ImportOptions",
    "ImportProgress",
    "ImportResult",
    "ImportingWorkspace",
    "ItemWriter",
    "apply_imported",
    "import_file",
    "import_items",
    "import_messages",
    "log_positions",
    "message_id",
    "pick_source",
]

logger = logging.getLogger(__name__)


class ItemWriter(Protocol):
    """Where an items import goes: the warehouse's catalog, upserted by `item_id`."""

    def write_items(self, table: Any) -> int:
        """Upsert a pyarrow Table of items (`item_id` plus attributes); rows written."""
        ...


class ImportingWorkspace(Protocol):
    """What `import_file` uses of a running workspace (`runtime.Workspace` has it): the
    workspace is passed in, so this module needs nothing above `collect`."""

    @property
    def settings(self) -> Settings: ...

    @property
    def collector(self) -> Collector: ...

    @property
    def warehouse(self) -> ItemWriter | None: ...


class ProfileConsumer(Protocol):
    """The profile consumer as `apply_imported` drives it: its consumer group, and one
    round of polling and applying."""

    @property
    def group(self) -> str: ...

    def run_once(self, max_records: int = ...) -> int:
        """Apply up to `max_records` entries of every owned partition; entries handled."""
        ...


class ApplyingWorkspace(Protocol):
    """What `apply_imported` uses of a running workspace (`runtime.Workspace` has it)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def log(self) -> EventLog: ...

    @property
    def processor(self) -> ProfileConsumer: ...

    def share_partitions(
        self, *, member: str | None = None, groups: Collection[str] | None = None
    ) -> dict[str, PartitionCoordinator]:
        """Make this process's consumers of `groups` workers of their groups (see
        runtime.Workspace); the coordinators by group."""
        ...


def import_file(
    workspace: ImportingWorkspace,
    kind: ImportKind,
    path: Path,
    options: ImportOptions | None = None,
    *,
    source: str | None = None,
    errors_file: Path | None = None,
    on_progress: ProgressCallback | None = None,
) -> ImportResult:
    """Import `path` into `workspace`: events and profiles through its collector (from the
    source named `source`, default the first), items into its warehouse's catalog."""
    if kind == "items":
        warehouse = workspace.warehouse
        if warehouse is None:
            raise InvalidInput(
                "the warehouse is off (warehouse.enabled: false): items have nowhere to go",
                details={"field": "warehouse.enabled"},
            )
        return import_items(
            warehouse, path, options, errors_file=errors_file, on_progress=on_progress
        )
    return import_messages(
        workspace.collector,
        pick_source(workspace.settings.config.sources, source),
        kind,
        path,
        options,
        errors_file=errors_file,
        on_progress=on_progress,
    )


def pick_source(sources: Sequence[SourceConfig], name: str | None) -> SourceConfig:
    """The source named `name` (default: the first); InvalidInput naming the known ones."""
    if name is None and sources:
        return sources[0]
    for candidate in sources:
        if candidate.name == name:
            return candidate
    known = ", ".join(candidate.name for candidate in sources) or "none"
    raise InvalidInput(
        f"no source named {name!r} (sources: {known})", details={"field": "--source"}
    )


def import_messages(
    collector: Collector,
    source: SourceConfig,
    kind: ImportKind,
    path: Path,
    options: ImportOptions | None = None,
    *,
    errors_file: Path | None = None,
    on_progress: ProgressCallback | None = None,
) -> ImportResult:
    """Import a file of events (`track`) or profiles (`identify`) through `collector`.

    Raises InvalidInput for a bad option (mapping, format, a file without an id column)
    and UnreadableFile when the file cannot be opened; a file that breaks midway ends the
    import early with `aborted` set."""
    if kind not in ("events", "profiles"):
        raise InvalidInput(f"{kind} are not messages; import events or profiles", details={})
    options = options or ImportOptions()
    store = options.store_rejections
    with (
        ImportRun(kind, path, options, errors_file, on_progress) as run,
        ThreadPoolExecutor(1, thread_name_prefix="import-commit") as committer,
    ):
        # While one batch waits for the log's durable commit, the next one is read and checked.
        pending: _Committing | None = None
        for last_line, lines, messages in run.messages():
            prepared = collector.prepare(source, messages) if messages else None
            if pending is not None:
                _settle(run, pending)
                pending = None
            if prepared is None:
                run.chunk_done(last_line)
            else:
                future = committer.submit(collector.commit, prepared, store_rejections=store)
                pending = _Committing(last_line, lines, future)
        if pending is not None:
            _settle(run, pending)
    return run.result()


@dataclass(frozen=True, slots=True)
class _Committing:
    """A batch handed to the collector's commit: its rows' lines and the outcome to come."""

    last_line: int
    lines: list[int]
    outcome: Future[CollectResult]


def _settle(run: ImportRun, committing: _Committing) -> None:
    """Count a committed batch and report the rows the collector rejected."""
    result = committing.outcome.result()
    run.imported += result.accepted
    run.duplicates += result.duplicates
    run.flagged += len(result.flagged)
    for problem in result.rejected:
        run.bad.add(committing.lines[problem.index], _collector_problems(run.mapping, problem))
    run.chunk_done(committing.last_line)


def import_items(
    writer: ItemWriter,
    path: Path,
    options: ImportOptions | None = None,
    *,
    errors_file: Path | None = None,
    on_progress: ProgressCallback | None = None,
) -> ImportResult:
    """Import a catalog: rows with an item id and attributes, upserted by `writer`.

    Attribute types stay stable across chunks: a `--map` type first, else the file's
    (Parquet), else text for CSV and, for JSON lines, what the first value is."""
    import pyarrow as pa

    arrow_types = {"string": pa.string(), "number": pa.float64(), "int": pa.int64()}
    arrow_types["bool"] = pa.bool_()
    options = options or ImportOptions()
    with ImportRun("items", path, options, errors_file, on_progress) as run:
        kinds: dict[str, str] = {
            name: "string" if value_type == "datetime" else value_type
            for name, value_type in run.mapping.item_types().items()
        }
        kinds[ITEM_ID] = "string"
        declared = run.source.column_types
        for last_line, chunk in run.chunks():
            items = []
            for row in chunk:
                item, problems = run.mapping.item(row.values)
                if not problems:
                    problems = _typed_attributes(item, kinds, declared, run.mapping)
                if problems:
                    run.bad.add(row.line, problems)
                else:
                    items.append(item)
            if items:
                names = [ITEM_ID, *(name for name in kinds if name != ITEM_ID)]
                arrays = {
                    name: pa.array(
                        [item.get(name) for item in items], type=arrow_types[kinds[name]]
                    )
                    for name in names
                }
                run.imported += int(writer.write_items(pa.table(arrays)))
            run.chunk_done(last_line)
    return run.result()


def _typed_attributes(
    item: dict[str, Any], kinds: dict[str, str], declared: Mapping[str, str], mapping: RowMapping
) -> list[Problem]:
    """Coerce `item`'s attributes in place to their columns' kinds (deciding a new column's
    kind from this first value); the problems, by column."""
    problems: list[Problem] = []
    for name, value in item.items():
        kind = kinds.get(name)
        if kind is None:
            kind = declared.get(mapping.column_for(name)) or _kind_of(value)
            kinds[name] = kind
        try:
            item[name] = _as_kind(value, kind)
        except ValueError as error:
            problems.append((mapping.column_for(name), f"{error} (the column holds {kind})"))
    return problems


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "string"


def _as_kind(value: Any, kind: str) -> Any:
    if kind == "string":
        return convert(value, "string")
    if kind == "number":
        return float(convert(value, "number"))
    if kind == "int":
        return convert(value, "int")
    return convert(value, "bool")


def _collector_problems(mapping: RowMapping, problem: EventProblem) -> list[Problem]:
    """A collector rejection as (column, reason) pairs, naming the file's columns."""
    prefix = "tracking plan: " if problem.reason == "tracking_plan" else ""
    found = [
        (
            ROW if error["field"] == "<event>" else mapping.column_for(error["field"]),
            prefix + error["reason"],
        )
        for error in problem.errors
    ]
    return found or [(ROW, problem.reason)]


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What `apply_imported` did: events this process applied, events of the import still
    unapplied when it stopped waiting (0 when profiles are current), and the time taken."""

    applied: int
    remaining: int
    elapsed_seconds: float


def log_positions(log: EventLog) -> dict[int, int]:
    """Every partition's end offset now: taken before an import, it tells `apply_imported`
    which entries are the import's."""
    return {partition: log.end_offset(partition) for partition in range(log.partitions)}


def apply_imported(
    workspace: ApplyingWorkspace,
    since: Mapping[int, int],
    *,
    followers: Sequence[ProfileConsumer] = (),
    on_progress: Callable[[int, int], None] | None = None,
    stall_seconds: float | None = None,
    max_records: int = 2000,
) -> ApplyResult:
    """Apply what was appended to the log after `since` (see `log_positions`) to profiles,
    then run `followers` (the consumers that follow the profile group: the outcome joiner)
    over it too.

    This process joins each group (`share_partitions`), so a running `touchpoint serve` or
    worker takes part; a group is done when every partition that grew is committed past
    its end at the start of the call, or when nothing moved for `stall_seconds` (default
    two lease TTLs: a dead member's leases have expired by then). `on_progress(done,
    total)` follows the profile group's entries committed by anyone."""
    from touchpoint.core.clock import parse_duration

    log, processor = workspace.log, workspace.processor
    targets = {
        partition: end
        for partition, end in log_positions(log).items()
        if end > since.get(partition, 0)
    }
    lease_ttl = parse_duration(workspace.settings.config.stream.lease_ttl).total_seconds()
    stall = stall_seconds if stall_seconds is not None else 2 * lease_ttl
    started = time.perf_counter()

    def drain(
        consumer: ProfileConsumer, progress: Callable[[int, int], None] | None
    ) -> tuple[int, int]:
        """Run `consumer` until its group reaches the targets (or stalls); (handled, left)."""

        def remaining() -> int:
            return sum(max(0, end - log.committed(consumer.group, p)) for p, end in targets.items())

        total = left = remaining()
        handled_here = 0
        coordinator = workspace.share_partitions(groups=[consumer.group])[consumer.group]
        try:
            last_move = time.monotonic()
            while left > 0:
                handled = consumer.run_once(max_records)
                handled_here += handled
                now_left = remaining()
                if handled or now_left < left:
                    last_move = time.monotonic()
                    if progress is not None:
                        progress(total - now_left, total)
                elif time.monotonic() - last_move > stall:
                    logger.warning(
                        "apply: %d imported events still unapplied by %s; stopped",
                        now_left,
                        consumer.group,
                    )
                    break
                else:
                    time.sleep(0.05)
                left = now_left
        finally:
            coordinator.leave()
        return handled_here, left

    applied, left = drain(processor, on_progress)
    if left == 0:
        for follower in followers:
            drain(follower, None)
    return ApplyResult(applied, left, time.perf_counter() - started)
