"""The audit log: who did what, when, to which target. Append-only.

Every admin action goes here: definitions applied, profiles erased or exported,
rejected events replayed. `actor` names the credential (`secret_key`,
`write_key:<source>`) or the CLI user (`cli:<user>`); `details` never holds a
secret or a plain PII value.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from touchpoint.core.clock import utcnow
from touchpoint.core.config_stores import StoreConfig
from touchpoint.core.pages import Page

if TYPE_CHECKING:
    from touchpoint.core.postgres import Postgres


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One recorded action. `id` increases with time."""

    id: int
    at: str
    actor: str
    action: str
    target: str
    details: dict[str, Any] = field(default_factory=dict)


class AuditLog(abc.ABC):
    """An append-only record of admin actions."""

    @abc.abstractmethod
    def record(
        self, *, actor: str, action: str, target: str, details: dict[str, Any] | None = None
    ) -> AuditEntry:
        """Durably append one entry, stamped now."""

    @abc.abstractmethod
    def list(
        self,
        *,
        action: str | None = None,
        target: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[AuditEntry]:
        """Entries newest first, optionally only one action (`profile.erase`) or target."""

    @abc.abstractmethod
    def get(self, entry_id: int) -> AuditEntry | None:
        """One entry by id."""

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections."""


DEFAULT_AUDIT_FILE = "audit.sqlite3"


def entry_from_row(row: Sequence[Any]) -> AuditEntry:
    """An entry from the columns `id, at, actor, action, target, details (JSON)`, as every
    backend stores them."""
    return AuditEntry(
        id=int(row[0]),
        at=row[1],
        actor=row[2],
        action=row[3],
        target=row[4],
        details=orjson.loads(row[5]),
    )


def build_audit_log(
    config: StoreConfig,
    data_dir: Path,
    postgres: Postgres | None = None,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> AuditLog:
    """The audit log the configuration names: PostgreSQL when `postgres` is given, else
    SQLite under `data_dir`; entries are stamped by `clock`."""
    if postgres is not None:
        from touchpoint.audit.postgres import PostgresAuditLog

        return PostgresAuditLog(postgres, clock=clock)
    from touchpoint.audit.sqlite import SqliteAuditLog

    path = Path(config.path) if config.path else data_dir / DEFAULT_AUDIT_FILE
    return SqliteAuditLog(path, clock=clock)
