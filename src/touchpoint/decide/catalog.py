"""One version of the definitions, compiled for deciding: `Catalog.compile`.

Everything a decision needs that does not depend on the person is done here,
once per definitions version: eligibility conditions compiled, templates
parsed, active windows and caps read, and each placement's candidates found and
grouped in tiers of equal priority, highest first.

Tiers exist for the v1 priority policy: it only ever needs the highest tier
that holds an eligible item, so the engine evaluates eligibility tier by tier
and stops there; the lower tiers' conditions are never run. A ranking policy
(model scores, a bandit) wants every eligible candidate instead and simply reads
all the tiers; the shape serves both.

A placement also keeps an index of its candidates' *requirements*, so most
conditions are never run at all. A condition that must hold a field equal to a
value (`traits.favorite == 'running'`, `context.page in ['home', 'cart']`) or a
list holding a value (`segments contains 'buyers'`, `{segment: buyers}`) as one of
its top-level `and` terms can only hold for a person whose document has that
value; the index files such items under the value, and `shortlist` looks the
person's values up instead of trying every item. It only ever rules items out
that cannot be eligible: the survivors' full conditions are still evaluated.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any, Literal

import orjson

from touchpoint.core.clock import parse_duration
from touchpoint.core.conditions import Condition, compile_condition
from touchpoint.core.conditions.evaluate import Resolver, make_resolver
from touchpoint.core.conditions.operands import literal_time
from touchpoint.decide.render import CompiledTemplate, RenderMemo, compile_template
from touchpoint.definitions.content import ContentConfig
from touchpoint.definitions.model import Definitions
from touchpoint.definitions.placements import PlacementConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Cap:
    """A frequency cap: at most `max` decisions showing the content to one person per
    `window` (`per` as written)."""

    max: int
    per: str
    window: timedelta


@dataclass(frozen=True, slots=True, eq=False)
class CompiledContent:
    """A content item ready to decide with (equal only to itself). `start`/`end` are
    canonical time strings, so `active` compares strings. `payload` is shared by every
    decision: read it, never change it.

    Items whose eligibility is written the same way share one compiled condition and its
    `condition_slot` (-1: no condition), so a decision evaluates it once for all of them.
    """

    id: str
    priority: int
    value: float | None
    payload: dict[str, Any] | None
    template: CompiledTemplate | None
    condition: Condition | None
    condition_slot: int
    start: str | None
    end: str | None
    windowed: bool  # start or end is set
    caps: tuple[Cap, ...]
    config: ContentConfig = field(repr=False, compare=False)

    def active(self, at: str) -> bool:
        """Whether the active window holds `at` (a canonical time): start <= at < end."""
        return (self.start is None or self.start <= at) and (self.end is None or at < self.end)

    def eligible(self, document: Mapping[str, Any], now: datetime) -> bool:
        """Whether the eligibility condition holds for `document` (profile + `context`)."""
        return self.condition is None or self.condition(document, now)

    def describe(self) -> dict[str, Any]:
        """The content as written (for the admin API)."""
        return self.config.model_dump(mode="json")


Ranked = tuple[int, CompiledContent]
"""A candidate with its rank in its placement (0 first: highest priority, then definition
order)."""

RequirementKind = Literal["equals", "contains"]
Requirement = tuple[RequirementKind, str, tuple[Hashable, ...]]
"""(kind, field, values): the condition can only hold if the field meets one of the values."""

_BY_RANK = itemgetter(0)
_SEARCHABLE = (list, tuple, set, frozenset, Mapping)


@dataclass(frozen=True, slots=True)
class RequirementIndex:
    """Candidates that require one field to hold a value, filed by that value.

    `kind` `equals`: the field's value must be that string or number (`eq`, `in`);
    `contains`: the field must be a list holding that string, or a mapping with it as a key
    (`contains`, `segment`). When the person's value is a string, `contains` may also mean
    a substring, so every item of the index is kept (`every`).
    """

    kind: RequirementKind
    path: str
    resolve: Resolver = field(repr=False, compare=False)
    buckets: Mapping[Hashable, tuple[Ranked, ...]] = field(repr=False, compare=False)
    every: tuple[Ranked, ...] = field(repr=False, compare=False)

    def matches(self, document: Mapping[str, Any]) -> Iterable[Ranked]:
        """The items whose requirement the document may meet."""
        value = self.resolve(document)
        if value is None:
            return ()
        if self.kind == "equals":
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                return self.buckets.get(value, ())
            return ()
        if isinstance(value, str):
            return self.every
        if isinstance(value, _SEARCHABLE):
            buckets = self.buckets
            found: list[Ranked] = []
            for element in value:
                if type(element) is str:
                    found.extend(buckets.get(element, ()))
            return found
        return ()


@dataclass(frozen=True, slots=True)
class CompiledPlacement:
    """A placement with its candidates in tiers of equal priority, highest first (within a
    tier, in definition order). The fallback is not a candidate: it is what the placement
    shows when no candidate is eligible, exempt from eligibility and caps.

    `unindexed` and `indexes` split the same candidates for `shortlist`.
    """

    name: str
    policy: str
    tiers: tuple[tuple[CompiledContent, ...], ...]
    fallback: CompiledContent | None
    unindexed: tuple[Ranked, ...] = field(repr=False)
    indexes: tuple[RequirementIndex, ...] = field(repr=False)
    config: PlacementConfig = field(repr=False, compare=False)

    @property
    def candidates(self) -> tuple[CompiledContent, ...]:
        """Every candidate, highest priority first."""
        return tuple(item for tier in self.tiers for item in tier)

    def shortlist(self, document: Mapping[str, Any]) -> list[Ranked]:
        """The candidates that may be eligible for `document`, by rank, without repeats:
        every candidate except those an index rules out. Their conditions still decide."""
        found = list(self.unindexed)
        extra = False
        for index in self.indexes:
            before = len(found)
            found.extend(index.matches(document))
            extra = extra or len(found) > before
        if extra:
            found.sort(key=_BY_RANK)
            found = [
                entry for i, entry in enumerate(found) if i == 0 or found[i - 1][0] != entry[0]
            ]
        return found

    def describe(self) -> dict[str, Any]:
        """The placement with its candidate content and fallback (for the admin API)."""
        config = self.config
        return {
            "name": self.name,
            "description": config.description,
            "channel": config.channel,
            "policy": self.policy,
            "tags": list(config.tags),
            "conversion_events": list(config.conversion_events),
            "fallback": None if self.fallback is None else self.fallback.describe(),
            "content": [item.describe() for item in self.candidates],
        }


@dataclass(frozen=True, slots=True)
class Catalog:
    """The compiled definitions of one version (version 0: nothing applied yet).

    `cap_windows`: for each distinct cap window, the ids of the content capped over it, so
    the engine reads the decision log at most once per window per request.
    """

    version: int
    placements: Mapping[str, CompiledPlacement]
    content: Mapping[str, CompiledContent]
    cap_windows: Mapping[timedelta, frozenset[str]]

    @classmethod
    def empty(cls) -> Catalog:
        """The catalog before any definitions are applied: no placement is known."""
        return cls(version=0, placements={}, content={}, cap_windows={})

    @classmethod
    def compile(cls, definitions: Definitions, version: int) -> Catalog:
        """Compile `definitions` as version `version`.

        Raises DefinitionError naming the path (`content[3].eligibility`) of a condition or
        template that does not compile; stored definitions were checked before they were
        stored, so that means a bug, not bad input.
        """
        memo = RenderMemo()  # personalized outputs, shared by this version's templates
        conditions: dict[bytes, tuple[int, Condition]] = {}
        content = {
            item.id: _compile_content(item, f"content[{index}]", memo, conditions)
            for index, item in enumerate(definitions.content)
        }
        placements = {
            placement.name: _compile_placement(placement, definitions.content, content)
            for placement in definitions.placements
        }
        windows: dict[timedelta, set[str]] = {}
        for item in content.values():
            for cap in item.caps:
                windows.setdefault(cap.window, set()).add(item.id)
        logger.info(
            "compiled definitions version %d: %d placements, %d content items",
            version,
            len(placements),
            len(content),
        )
        return cls(
            version=version,
            placements=placements,
            content=content,
            cap_windows={window: frozenset(ids) for window, ids in windows.items()},
        )

    def describe(self) -> dict[str, Any]:
        """Every placement with its content (`GET /v1/placements`)."""
        return {
            "version": self.version,
            "placements": [placement.describe() for placement in self.placements.values()],
        }


def _compile_content(
    item: ContentConfig,
    path: str,
    memo: RenderMemo,
    conditions: dict[bytes, tuple[int, Condition]],
) -> CompiledContent:
    condition, slot = None, -1
    if item.eligibility is not None:
        compiled = compile_condition(item.eligibility, path=f"{path}.eligibility")
        spelled = orjson.dumps(compiled.spec, option=orjson.OPT_SORT_KEYS)
        slot, condition = conditions.setdefault(spelled, (len(conditions), compiled))
    template = None
    if item.template is not None:
        template = compile_template(
            item.template,
            content_id=item.id,
            payload=item.payload,
            memo=memo,
            path=f"{path}.template",
        )
    caps = tuple(Cap(cap.max, cap.per, parse_duration(cap.per)) for cap in item.caps)
    return CompiledContent(
        id=item.id,
        priority=item.priority,
        value=item.value,
        payload=item.payload,
        template=template,
        condition=condition,
        condition_slot=slot,
        start=item.start,
        end=item.end,
        windowed=item.start is not None or item.end is not None,
        caps=caps,
        config=item,
    )


def _compile_placement(
    placement: PlacementConfig,
    items: list[ContentConfig],
    compiled: Mapping[str, CompiledContent],
) -> CompiledPlacement:
    tags = set(placement.tags)
    candidates = [
        compiled[item.id]
        for item in items
        if item.id != placement.fallback
        and (placement.name in item.placements or not tags.isdisjoint(item.tags))
    ]
    priorities = sorted({item.priority for item in candidates}, reverse=True)
    tiers = tuple(
        tuple(item for item in candidates if item.priority == priority) for priority in priorities
    )
    unindexed: list[Ranked] = []
    filed: dict[tuple[RequirementKind, str], dict[Hashable, list[Ranked]]] = {}
    for rank, item in enumerate(entry for tier in tiers for entry in tier):
        requirement = _requirement(item.condition.spec) if item.condition is not None else None
        if requirement is None:
            unindexed.append((rank, item))
            continue
        kind, field_name, values = requirement
        buckets = filed.setdefault((kind, field_name), {})
        for value in values:
            buckets.setdefault(value, []).append((rank, item))
    indexes = tuple(
        RequirementIndex(
            kind=kind,
            path=field_name,
            resolve=make_resolver(field_name),
            buckets={value: tuple(entries) for value, entries in buckets.items()},
            every=tuple(
                sorted(
                    {e[0]: e for entries in buckets.values() for e in entries}.values(),
                    key=_BY_RANK,
                )
            ),
        )
        for (kind, field_name), buckets in filed.items()
    )
    fallback = compiled[placement.fallback] if placement.fallback is not None else None
    return CompiledPlacement(
        name=placement.name,
        policy=placement.policy.type,
        tiers=tiers,
        fallback=fallback,
        unindexed=tuple(unindexed),
        indexes=indexes,
        config=placement,
    )


def _requirement(spec: Any) -> Requirement | None:
    """A value the condition requires, from one of its top-level `and` terms (an `equals`
    term first), as (kind, field, the values any of which meets it); None if there is none.

    Only terms whose truth implies the index lookup finds the item qualify: `eq` and `in`
    with plain strings (not timestamps, which also equal other spellings of the same time)
    or numbers (not booleans), `contains` with a string, and `segment`.
    """
    terms = list(_conjuncts(spec))
    found: Requirement | None = None
    candidate: Requirement
    for term in terms:
        if not isinstance(term, dict):
            continue
        if "segment" in term:
            candidate = ("contains", "segments", (term["segment"],))
        elif "field" in term and "eq" in term and _indexable(term["eq"]):
            return ("equals", term["field"], (term["eq"],))
        elif (
            "field" in term
            and "in" in term
            and term["in"]
            and all(_indexable(value) for value in term["in"])
        ):
            return ("equals", term["field"], tuple(dict.fromkeys(term["in"])))
        elif "field" in term and isinstance(term.get("contains"), str):
            candidate = ("contains", term["field"], (term["contains"],))
        else:
            continue
        found = found or candidate
    return found


def _conjuncts(spec: Any) -> Iterable[Any]:
    if isinstance(spec, dict) and "and" in spec:
        for child in spec["and"]:
            yield from _conjuncts(child)
    else:
        yield spec


def _indexable(value: Any) -> bool:
    if isinstance(value, str):
        return literal_time(value) is None
    return isinstance(value, int | float) and not isinstance(value, bool)
