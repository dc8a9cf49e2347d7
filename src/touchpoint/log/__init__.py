"""The durable event log: the interface, its backends and the factory that picks one."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from touchpoint.core.clock import parse_duration
from touchpoint.log.base import AppendResult, EventLog, LogEntry, LogRecord, partition_for
from touchpoint.log.sqlite import SqliteEventLog

if TYPE_CHECKING:
    from touchpoint.core.config_stores import LogConfig
    from touchpoint.core.postgres import Postgres
    from touchpoint.core.redis import RedisService

DEFAULT_LOG_FILE = "log.sqlite3"
DEFAULT_DEDUP_WINDOW = timedelta(hours=24)

__all__ = [
    "DEFAULT_LOG_FILE",
    "AppendResult",
    "EventLog",
    "LogEntry",
    "LogRecord",
    "SqliteEventLog",
    "build_event_log",
    "partition_for",
]


def build_event_log(
    config: LogConfig,
    data_dir: Path,
    *,
    dedup_window: timedelta | str = DEFAULT_DEDUP_WINDOW,
    redis: RedisService | None = None,
    postgres: Postgres | None = None,
    clock: Callable[[], float] = time.time,
) -> EventLog:
    """Open the event log the configuration names, creating its file and folders if needed.

    `config.path` defaults to `<data_dir>/log.sqlite3`; a relative `config.path` is taken
    as is (relative to the working directory). The dedup window is the collector's
    (`collect.dedup_window`, a duration such as "24h"), hence a separate argument.
    """
    if isinstance(dedup_window, str):
        dedup_window = parse_duration(dedup_window)
    if config.type == "redis" or (config.type == "auto" and redis is not None):
        if redis is None:
            raise ValueError("log.type is redis, but no Redis service is open")
        from touchpoint.log.redis_streams import RedisStreamLog

        return RedisStreamLog(
            redis,
            partitions=config.partitions,
            dedup_window=dedup_window,
            postgres=postgres,
            clock=clock,
        )
    if config.type in ("sqlite", "auto"):
        path = Path(config.path).expanduser() if config.path else Path(data_dir) / DEFAULT_LOG_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteEventLog(
            path,
            partitions=config.partitions,
            dedup_window=dedup_window,
            synchronous=config.synchronous,
            clock=clock,
        )
    raise ValueError(f"unknown event log type {config.type!r}")  # pragma: no cover
