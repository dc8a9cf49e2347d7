"""Tombstones: what an erasure leaves so the person cannot come back.

A tombstone is a keyed hash of one identity (`kind:value`, the value as stored,
so PII is already hashed once). It names no one, yet an event carrying the same
identity later (a late event, a replay of the log, a client retry) matches it and
is dropped instead of rebuilding the profile.
"""

from __future__ import annotations

from touchpoint.profiles.model import Identity
from touchpoint.profiles.pii import IdentityHasher

_KIND_PREFIX = "tombstone:"


def tombstone_key(hasher: IdentityHasher, identity: Identity) -> str:
    """The tombstone of an identity under the workspace's hash secret."""
    return hasher.hash(_KIND_PREFIX + identity.kind, identity.value)
