"""Profiles: the identity graph, the profile store and its backends, and the profile view.

`build_profile_store` picks the backend a workspace configures (`profiles.type`);
only the embedded SQLite one exists today.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from touchpoint.core.config_stores import StoreConfig
from touchpoint.core.errors import DefinitionError
from touchpoint.core.pages import Page
from touchpoint.profiles.identity import IdentityResolver, Resolution, SkippedIdentity
from touchpoint.profiles.model import Identity, MergeRecord, Profile
from touchpoint.profiles.store.base import ProfileStore, ProfileWriter, SegmentChange, TimelineEvent
from touchpoint.profiles.view import profile_document

if TYPE_CHECKING:
    from touchpoint.core.postgres import Postgres

DEFAULT_FILE_NAME = "profiles.sqlite3"

__all__ = [
    "DEFAULT_FILE_NAME",
    "Identity",
    "IdentityResolver",
    "MergeRecord",
    "Page",
    "Profile",
    "ProfileStore",
    "ProfileWriter",
    "Resolution",
    "SegmentChange",
    "SkippedIdentity",
    "TimelineEvent",
    "build_profile_store",
    "profile_document",
]


def build_profile_store(
    config: StoreConfig, data_dir: Path, postgres: Postgres | None = None
) -> ProfileStore:
    """The profile store a workspace configures: PostgreSQL when `postgres` is given (the
    store runs on it), else SQLite at `<data_dir>/profiles.sqlite3` unless `config.path`
    says otherwise. Creates the parent folder if needed."""
    if postgres is not None:
        from touchpoint.profiles.store.postgres import PostgresProfileStore

        return PostgresProfileStore(postgres)
    if config.type in ("sqlite", "auto"):
        from touchpoint.profiles.store.sqlite import SqliteProfileStore

        path = Path(config.path).expanduser() if config.path else Path(data_dir) / DEFAULT_FILE_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteProfileStore(path)
    raise DefinitionError("profiles.type", f"unknown profile store type {config.type!r}")
