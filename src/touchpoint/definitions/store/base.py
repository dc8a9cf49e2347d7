"""Versioned definitions: every applied set of placements and content is kept, numbered.

`apply` stores the whole set as a new version (all or nothing); a decision records
the version it used, so a report can say what was live. The running decision
engine polls `latest_version()`, which is cheap, and reloads when it moves, so an
`apply` from the CLI or another process reaches every API process within a second.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from touchpoint.core.clock import utcnow
from touchpoint.core.config_stores import StoreConfig
from touchpoint.core.pages import Page
from touchpoint.definitions.model import Definitions

if TYPE_CHECKING:
    from touchpoint.core.postgres import Postgres


@dataclass(frozen=True, slots=True)
class DefinitionVersion:
    """One applied version. `digest`: Definitions.digest() of its content."""

    version: int
    definitions: Definitions
    digest: str
    applied_at: str
    actor: str
    note: str = ""


class DefinitionStore(abc.ABC):
    """Every version of the workspace's placements and content."""

    @abc.abstractmethod
    def current(self) -> DefinitionVersion | None:
        """The latest version (None before the first apply)."""

    @abc.abstractmethod
    def latest_version(self) -> int:
        """The latest version number (0 before the first apply); cheap enough to poll."""

    @abc.abstractmethod
    def get(self, version: int) -> DefinitionVersion | None:
        """A version by number."""

    @abc.abstractmethod
    def versions(self, *, cursor: str | None = None, limit: int = 50) -> Page[DefinitionVersion]:
        """Versions, newest first."""

    @abc.abstractmethod
    def apply(self, definitions: Definitions, *, actor: str, note: str = "") -> DefinitionVersion:
        """Store `definitions` as the next version, atomically. If they equal the current
        version's (same digest), nothing is stored and the current version is returned."""

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections."""


DEFAULT_DEFINITIONS_FILE = "definitions.sqlite3"


def version_from_row(row: Sequence[Any]) -> DefinitionVersion:
    """A version from the columns `version, digest, definitions (JSON), applied_at, actor,
    note`, as every backend stores them."""
    return DefinitionVersion(
        version=int(row[0]),
        digest=row[1],
        definitions=Definitions.model_validate(orjson.loads(row[2])),
        applied_at=row[3],
        actor=row[4],
        note=row[5],
    )


def build_definition_store(
    config: StoreConfig,
    data_dir: Path,
    postgres: Postgres | None = None,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> DefinitionStore:
    """The definition store the configuration names: PostgreSQL when `postgres` is given,
    else SQLite under `data_dir`; versions are stamped by `clock`."""
    if postgres is not None:
        from touchpoint.definitions.store.postgres import PostgresDefinitionStore

        return PostgresDefinitionStore(postgres, clock=clock)
    from touchpoint.definitions.store.sqlite import SqliteDefinitionStore

    path = Path(config.path) if config.path else data_dir / DEFAULT_DEFINITIONS_FILE
    return SqliteDefinitionStore(path, clock=clock)
