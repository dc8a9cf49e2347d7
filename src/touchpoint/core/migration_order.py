"""The order migrations run in, the same rule for every backend: grouped by the store (or
component) they belong to, in first-seen order, each group's versions 1, 2, … n."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar


class Versioned(Protocol):
    @property
    def version(self) -> int: ...


M = TypeVar("M", bound=Versioned)


def in_version_order(migrations: Sequence[M], owner: Callable[[M], str]) -> list[M]:
    """`migrations` by `owner` (first-seen order), then version; an owner's versions must be
    1..n with no gap or repeat (ValueError naming the owner otherwise)."""
    by_owner: dict[str, list[M]] = {}
    for migration in migrations:
        by_owner.setdefault(owner(migration), []).append(migration)
    ordered: list[M] = []
    for name, items in by_owner.items():
        items.sort(key=lambda m: m.version)
        versions = [m.version for m in items]
        if versions != list(range(1, len(items) + 1)):
            raise ValueError(f"migrations of {name} must be numbered 1..n, got {versions}")
        ordered.extend(items)
    return ordered
