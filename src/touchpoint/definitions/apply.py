"""Applying definitions: what changes, then a new version, all or nothing, audited.

`touchpoint apply`, the admin API and the workspace file at start-up all go
through `apply_definitions`: the new set is validated whole (every condition
compiled, every template parsed) before anything is stored, diffed against the
current version, stored as the next version when it differs, and the change is
recorded in the audit log. The item edits of the admin API (`PUT /v1/content/x`)
build the next whole set from the current one here, so the rules live in one place.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from touchpoint.audit.base import AuditLog
from touchpoint.core.errors import DefinitionError, InvalidInput, NotFound, format_location
from touchpoint.definitions.content import ContentConfig
from touchpoint.definitions.model import Definitions, check_definitions, parse_definitions
from touchpoint.definitions.placements import PlacementConfig
from touchpoint.definitions.store.base import DefinitionStore, DefinitionVersion

logger = logging.getLogger(__name__)

APPLY_ACTION = "definitions.apply"
APPLY_TARGET = "definitions"
_Item = TypeVar("_Item", ContentConfig, PlacementConfig)


@dataclass(frozen=True, slots=True)
class ChangedItem:
    """An item present in both sets whose top-level `fields` differ."""

    id: str
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KindDiff:
    """How one kind (placements or content) changes: ids added, removed, changed, and
    whether only the order of the list moved (which changes the digest, hence a version)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[ChangedItem, ...] = ()
    reordered: bool = False

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.reordered)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": {item.id: list(item.fields) for item in self.changed},
            "reordered": self.reordered,
        }

    def counts(self) -> dict[str, int]:
        return {
            "added": len(self.added),
            "removed": len(self.removed),
            "changed": len(self.changed),
        }


@dataclass(frozen=True, slots=True)
class DefinitionDiff:
    """What applying a set would change against the current version. `empty` exactly when
    the two sets have the same digest (nothing would be stored)."""

    placements: KindDiff
    content: KindDiff

    @property
    def empty(self) -> bool:
        return self.placements.empty and self.content.empty

    def to_dict(self) -> dict[str, Any]:
        """The plain form for JSON (API responses, audit details)."""
        return {"placements": self.placements.to_dict(), "content": self.content.to_dict()}

    def summary(self) -> dict[str, dict[str, int]]:
        """How many items each kind adds, removes and changes."""
        return {"placements": self.placements.counts(), "content": self.content.counts()}


def _diff_kind(old: Mapping[str, dict[str, Any]], new: Mapping[str, dict[str, Any]]) -> KindDiff:
    added = tuple(key for key in new if key not in old)
    removed = tuple(key for key in old if key not in new)
    changed: list[ChangedItem] = []
    for key, item in new.items():
        before = old.get(key)
        if before is None or before == item:
            continue
        fields = sorted(
            name for name in before.keys() | item.keys() if before.get(name) != item.get(name)
        )
        changed.append(ChangedItem(key, tuple(fields)))
    kept_old = [key for key in old if key in new]
    kept_new = [key for key in new if key in old]
    return KindDiff(added, removed, tuple(changed), reordered=kept_old != kept_new)


def diff_definitions(old: Definitions | None, new: Definitions) -> DefinitionDiff:
    """Compare two sets item by item (placements by name, content by id)."""
    base = old or Definitions()
    return DefinitionDiff(
        placements=_diff_kind(
            {item.name: item.model_dump(mode="json") for item in base.placements},
            {item.name: item.model_dump(mode="json") for item in new.placements},
        ),
        content=_diff_kind(
            {item.id: item.model_dump(mode="json") for item in base.content},
            {item.id: item.model_dump(mode="json") for item in new.content},
        ),
    )


def validated(definitions: Definitions | Mapping[str, Any]) -> Definitions:
    """A set ready to store: a raw mapping is parsed, a model has its conditions compiled
    and templates parsed again; DefinitionError (with the path) otherwise."""
    if isinstance(definitions, Definitions):
        check_definitions(definitions)
        return definitions
    return parse_definitions(definitions)


def apply_definitions(
    store: DefinitionStore,
    definitions: Definitions | Mapping[str, Any],
    *,
    audit: AuditLog,
    actor: str,
    note: str = "",
) -> tuple[DefinitionVersion, DefinitionDiff]:
    """Validate `definitions` whole, store them as the next version unless they equal the
    current one, and audit the new version. Returns the version now current and the diff
    from the version before it (empty when nothing was stored)."""
    checked = validated(definitions)
    current = store.current()
    base_number = current.version if current is not None else 0
    diff = diff_definitions(current.definitions if current else None, checked)
    if diff.empty and current is not None:
        return current, diff
    version = store.apply(checked, actor=actor, note=note)
    if version.version <= base_number:
        return version, diff_definitions(version.definitions, checked)
    if version.version != base_number + 1:
        # Another process applied in between: diff against the version really replaced.
        previous = store.get(version.version - 1)
        diff = diff_definitions(previous.definitions if previous else None, checked)
    audit.record(
        actor=actor,
        action=APPLY_ACTION,
        target=APPLY_TARGET,
        details={
            "version": version.version,
            "digest": version.digest,
            "note": note,
            "summary": diff.summary(),
            "diff": diff.to_dict(),
        },
    )
    return version, diff


def sync_definitions(
    store: DefinitionStore, definitions: Definitions, *, audit: AuditLog, actor: str
) -> DefinitionVersion | None:
    """Make the workspace file's placements and content current at start-up: the new
    version when they differed from the current one, None when they were already current.
    A version applied through the API or the CLI since is replaced (with a warning)."""
    current = store.current()
    if current is not None and current.digest == definitions.digest():
        logger.info("definitions from %s are current (version %d)", actor, current.version)
        return None
    if current is not None and current.actor != actor:
        logger.warning(
            "definitions version %d (applied by %s) is replaced by those of %s",
            current.version,
            current.actor,
            actor,
        )
    version, diff = apply_definitions(store, definitions, audit=audit, actor=actor)
    logger.info(
        "definitions from %s applied as version %d",
        actor,
        version.version,
        extra={"diff": diff.summary()},
    )
    return version


# Item edits read the current set, change one item and apply the result. A lock per store
# keeps two edits in this process from losing one another; across processes the last
# writer wins (the audit log shows both).
_EDIT_LOCKS: weakref.WeakKeyDictionary[DefinitionStore, threading.Lock] = (
    weakref.WeakKeyDictionary()
)
_EDIT_LOCKS_GUARD = threading.Lock()


def _edit_lock(store: DefinitionStore) -> threading.Lock:
    with _EDIT_LOCKS_GUARD:
        lock = _EDIT_LOCKS.get(store)
        if lock is None:
            lock = _EDIT_LOCKS[store] = threading.Lock()
        return lock


def edit_definitions(
    store: DefinitionStore,
    change: Callable[[Definitions], Definitions],
    *,
    audit: AuditLog,
    actor: str,
    note: str = "",
) -> tuple[DefinitionVersion, DefinitionDiff]:
    """Apply `change(current set)` as the next version (see `apply_definitions`)."""
    with _edit_lock(store):
        current = store.current()
        updated = change(current.definitions if current is not None else Definitions())
        return apply_definitions(store, updated, audit=audit, actor=actor, note=note)


def _item(model: type[_Item], data: Mapping[str, Any]) -> _Item:
    """Validate one item; errors name paths inside it (`template`, `caps[0].per`)."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as error:
        first = error.errors()[0]
        location = tuple(part for part in first["loc"] if not str(part).startswith("function-"))
        raise DefinitionError(format_location(location) or "<root>", first["msg"]) from None


def _whole(placements: list[PlacementConfig], content: list[ContentConfig]) -> Definitions:
    try:
        return Definitions(placements=placements, content=content)
    except ValidationError as error:
        raise DefinitionError("<root>", error.errors()[0]["msg"]) from None


def _same_key(data: Mapping[str, Any], key: str, expected: str) -> dict[str, Any]:
    body = dict(data)
    given = body.setdefault(key, expected)
    if given != expected:
        raise DefinitionError(key, f"{given!r} does not match {expected!r} in the path")
    return body


def put_content(definitions: Definitions, content_id: str, data: Mapping[str, Any]) -> Definitions:
    """The set with content `content_id` created or replaced by `data` (whose `id`, if
    given, must match); DefinitionError names the bad path inside `data`."""
    item = _item(ContentConfig, _same_key(data, "id", content_id))
    try:
        check_definitions(Definitions.model_construct(placements=[], content=[item]))
    except DefinitionError as error:
        raise DefinitionError(error.path.removeprefix("content[0]."), error.reason) from None
    known = {placement.name for placement in definitions.placements}
    unknown = sorted(name for name in item.placements if name not in known)
    if unknown:
        raise DefinitionError("placements", f"unknown placements: {', '.join(unknown)}")
    content = list(definitions.content)
    index = next((i for i, old in enumerate(content) if old.id == content_id), None)
    if index is None:
        content.append(item)
    else:
        content[index] = item
    return _whole(list(definitions.placements), content)


def delete_content(definitions: Definitions, content_id: str) -> Definitions:
    """The set without content `content_id`: NotFound if absent; refused when a placement
    falls back to it."""
    if not any(item.id == content_id for item in definitions.content):
        raise NotFound(f"no content {content_id!r}", details={"content_id": content_id})
    users = [p.name for p in definitions.placements if p.fallback == content_id]
    if users:
        raise InvalidInput(
            f"content {content_id!r} is the fallback of placements {', '.join(users)}",
            details={"content_id": content_id, "placements": users},
        )
    content = [item for item in definitions.content if item.id != content_id]
    return _whole(list(definitions.placements), content)


def put_placement(definitions: Definitions, name: str, data: Mapping[str, Any]) -> Definitions:
    """The set with placement `name` created or replaced by `data` (whose `name`, if given,
    must match); its fallback must be existing content."""
    item = _item(PlacementConfig, _same_key(data, "name", name))
    if item.fallback is not None and not any(c.id == item.fallback for c in definitions.content):
        raise DefinitionError("fallback", f"{item.fallback!r} is not a content id")
    placements = list(definitions.placements)
    index = next((i for i, old in enumerate(placements) if old.name == name), None)
    if index is None:
        placements.append(item)
    else:
        placements[index] = item
    return _whole(placements, list(definitions.content))


def delete_placement(definitions: Definitions, name: str) -> Definitions:
    """The set without placement `name`: NotFound if absent; refused while content lists it
    in its `placements` (edit or delete that content first)."""
    if not any(placement.name == name for placement in definitions.placements):
        raise NotFound(f"no placement {name!r}", details={"placement": name})
    users = [item.id for item in definitions.content if name in item.placements]
    if users:
        raise InvalidInput(
            f"placement {name!r} is listed by content {', '.join(users)}",
            details={"placement": name, "content": users},
        )
    placements = [p for p in definitions.placements if p.name != name]
    return _whole(placements, list(definitions.content))
