"""Computed features: the engine that folds a profile's events into feature states and values.

The stream processor holds one `FeatureEngine` per workspace configuration. For each event it
calls `apply`, which finds the features the event can touch with one dict lookup (by track
event name, or by event type for `type:page` and the like) and lets each one's reducer
(`stream.reducers`) update its JSON state in place. `values` turns the states into what
conditions and the API see; `recompute` rebuilds the states from a whole timeline, which the
processor does after a merge, or for a late event when `order_sensitive()` says the order
matters.

Feature `event` forms: a track event name (`Order Completed`), a list of them, or
`type:<type>` for every event of a type (`type:page`, `type:screen`, `type:identify`, also
`type:track`, `type:group`, `type:alias`). The cart ignores `event`: it always listens to
`Product Added`, `Product Removed` and `Order Completed`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from touchpoint.config.workspace import FeatureConfig
from touchpoint.core.clock import parse_duration, parse_timestamp
from touchpoint.core.conditions import compile_condition
from touchpoint.core.errors import DefinitionError
from touchpoint.profiles.reducers import (
    CART_EVENTS,
    CartReducer,
    LastDistinctReducer,
    LastReducer,
    Reader,
    Reducer,
    TimeReducer,
    TotalReducer,
    WindowedReducer,
)

logger = logging.getLogger(__name__)

EVENT_TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})
TYPE_PREFIX = "type:"
EXPLICIT_ROOTS = frozenset({"properties", "context", "traits"})
TRAIT_EVENT_TYPES = frozenset({"identify", "group"})

Route = tuple[tuple[Reducer, ...], bool]
"""The reducers one kind of event reaches, and whether any of them needs the epoch time."""


class PropertyPath:
    """A dotted path into an event, as a feature's `property` names it.

    `revenue` means `properties.revenue` (`traits.revenue` for identify and group events, which
    carry traits instead of properties); `properties.x`, `context.x` and `traits.x` name their
    root explicitly.
    """

    __slots__ = ("keys", "root", "text")

    def __init__(self, text: str) -> None:
        parts = text.split(".")
        if any(not part for part in parts):
            raise ValueError(f"{text!r} is not a dotted path such as revenue or context.page.path")
        self.text = text
        if len(parts) > 1 and parts[0] in EXPLICIT_ROOTS:
            self.root: str | None = parts[0]
            self.keys: tuple[str, ...] = tuple(parts[1:])
        else:
            self.root = None
            self.keys = tuple(parts)

    def get(self, event: Mapping[str, Any]) -> Any:
        """The value at this path in `event`, or None when any step is missing."""
        root = self.root
        if root is None:
            root = "traits" if event.get("type") in TRAIT_EVENT_TYPES else "properties"
        node: Any = event.get(root)
        for key in self.keys:
            if type(node) is not dict and not isinstance(node, Mapping):
                return None
            node = node.get(key)
        return node


def event_time(event: Mapping[str, Any]) -> str | None:
    """The canonical time features key an event on: `timestamp`, else `receivedAt`."""
    moment = event.get("timestamp")
    if type(moment) is str and moment:
        return moment
    moment = event.get("receivedAt")
    return moment if type(moment) is str and moment else None


def epoch_seconds(moment: str) -> float | None:
    """Epoch seconds of a canonical (or any ISO-8601) timestamp; None if it is not one."""
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        fallback = parse_timestamp(moment)
        return None if fallback is None else fallback.timestamp()
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _compile_where(spec: Any, path: str) -> Callable[[Mapping[str, Any]], bool]:
    """A feature's event filter, evaluated as of the event's own time.

    A filter that reads the clock (`within`, `older_than`) is judged at the event's timestamp,
    not at the time it happens to be applied, so replays and recomputes agree.
    """
    condition = compile_condition(spec, path=path)
    if not condition.time_dependent:
        return condition

    def as_of_event(event: Mapping[str, Any]) -> bool:
        moment = event_time(event)
        parsed = None if moment is None else parse_timestamp(moment)
        return parsed is not None and condition(event, now=parsed)

    return as_of_event


def _build_reducer(feature: FeatureConfig, path: str) -> Reducer:
    """The reducer for one feature; DefinitionError naming `path` when it cannot be built."""
    read: Reader | None = None
    if feature.property is not None:
        try:
            read = PropertyPath(feature.property).get
        except ValueError as error:
            raise DefinitionError(f"{path}.property", str(error)) from None
    if feature.type == "count":
        read = None  # a count counts events; a `property` given with it is not read
    where = None if feature.where is None else _compile_where(feature.where, f"{path}.where")
    name = feature.name
    if feature.type in ("count", "sum") and feature.window is not None:
        try:
            window = parse_duration(feature.window).total_seconds()
        except ValueError as error:
            raise DefinitionError(f"{path}.window", str(error)) from None
        if window <= 0:
            raise DefinitionError(f"{path}.window", "a window must be longer than zero")
        return WindowedReducer(name, read, where, window)
    if feature.type in ("count", "sum"):
        return TotalReducer(name, read, where)
    if feature.type == "last":
        return LastReducer(name, read, where)
    if feature.type == "last_distinct":
        return LastDistinctReducer(name, read, where, feature.n)
    if feature.type in ("first_time", "last_time"):
        return TimeReducer(name, read, where, latest=feature.type == "last_time")
    if feature.type == "cart":
        return CartReducer(name, read, where)
    raise DefinitionError(f"{path}.type", f"unknown feature type {feature.type!r}")


def _event_keys(feature: FeatureConfig, path: str) -> tuple[list[str], list[str]]:
    """The track event names and event types a feature listens to."""
    if feature.type == "cart":
        return list(CART_EVENTS), []
    declared = feature.event
    names = [declared] if isinstance(declared, str) else list(declared or [])
    track_names: list[str] = []
    event_types: list[str] = []
    for index, name in enumerate(names):
        where = f"{path}.event" if isinstance(declared, str) else f"{path}.event[{index}]"
        if not name:
            raise DefinitionError(where, "an event name cannot be empty")
        if name.startswith(TYPE_PREFIX):
            event_type = name[len(TYPE_PREFIX) :]
            if event_type not in EVENT_TYPES:
                known = ", ".join(sorted(EVENT_TYPES))
                raise DefinitionError(where, f"unknown event type {event_type!r} (known: {known})")
            event_types.append(event_type)
        else:
            track_names.append(name)
    return track_names, event_types


def _route(reducers: Iterable[Reducer]) -> Route:
    unique = tuple(dict.fromkeys(reducers))
    return unique, any(reducer.windowed for reducer in unique)


class FeatureEngine:
    """Turns events into feature states and states into values, for one set of features.

    States are plain JSON (one entry per feature name, absent until an event touches it) and
    may be stored, reloaded and passed back in. Every method is deterministic; only `apply`
    mutates, and only the `states` it is given. Events are keyed on their own `timestamp`,
    not on arrival, so counts, sums, windows, `last`, `last_distinct`, `first_time` and
    `last_time` give the same state whatever order the events are applied in (up to events
    with equal timestamps, where the later-applied wins); only the cart does not.
    """

    def __init__(self, features: Sequence[FeatureConfig]) -> None:
        reducers: list[Reducer] = []
        by_name: dict[str, list[Reducer]] = {}
        by_type: dict[str, list[Reducer]] = {}
        seen: set[str] = set()
        for index, feature in enumerate(features):
            path = f"features[{index}]"
            if feature.name in seen:
                raise DefinitionError(f"{path}.name", f"feature {feature.name!r} is repeated")
            seen.add(feature.name)
            reducer = _build_reducer(feature, path)
            reducers.append(reducer)
            track_names, event_types = _event_keys(feature, path)
            for name in track_names:
                by_name.setdefault(name, []).append(reducer)
            for event_type in event_types:
                by_type.setdefault(event_type, []).append(reducer)
        self._reducers: tuple[Reducer, ...] = tuple(reducers)
        self.names: tuple[str, ...] = tuple(reducer.name for reducer in reducers)
        self.time_dependent: frozenset[str] = frozenset(
            reducer.name for reducer in reducers if reducer.windowed
        )
        every_track = by_type.get("track", [])
        self._by_name: dict[str, Route] = {
            name: _route([*own, *every_track]) for name, own in by_name.items()
        }
        self._every_track: Route | None = _route(every_track) if every_track else None
        self._by_type: dict[str, Route] = {
            event_type: _route(own) for event_type, own in by_type.items() if event_type != "track"
        }
        self._order_sensitive = any(isinstance(reducer, CartReducer) for reducer in reducers)
        logger.debug(
            "feature engine: %d features, %d event names, %d event types",
            len(reducers),
            len(self._by_name),
            len(self._by_type),
        )

    def _route_of(self, event: Mapping[str, Any]) -> Route | None:
        event_type = event.get("type")
        if event_type == "track":
            name = event.get("event")
            route = self._by_name.get(name) if type(name) is str else None
            return route if route is not None else self._every_track
        return self._by_type.get(event_type) if type(event_type) is str else None

    def relevant(self, event: Mapping[str, Any]) -> bool:
        """Whether any feature listens to this event (before its `where` is checked).

        False means `apply` would certainly change nothing, so the caller may skip it.
        """
        return self._route_of(event) is not None

    def apply(self, states: dict[str, Any], event: Mapping[str, Any]) -> bool:
        """Fold one stored event into `states` in place; True if any feature's state changed.

        Events without a usable time (`timestamp`, else `receivedAt`) change nothing.
        """
        route = self._route_of(event)
        if route is None:
            return False
        moment = event_time(event)
        if moment is None:
            return False
        reducers, needs_epoch = route
        epoch = epoch_seconds(moment) if needs_epoch else None
        changed = False
        for reducer in reducers:
            where = reducer.where
            if where is not None and not where(event):
                continue
            if reducer.update(states, event, moment, epoch):
                changed = True
        return changed

    def values(self, states: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        """Every feature's value at `now`, as conditions and the API see it.

        A feature without a state has its neutral value: 0 for count and sum, None for last,
        first_time and last_time, [] for last_distinct, an empty cart for cart. Windowed values
        add what happened in `[now - window, now]`. The result shares nothing mutable with
        `states` except `last` values that are themselves objects.
        """
        moment = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
        epoch = moment.timestamp()
        result: dict[str, Any] = {}
        for reducer in self._reducers:
            result[reducer.name] = reducer.value(states.get(reducer.name), epoch)
        return result

    def recompute(self, events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """Fresh states from a whole timeline, applied in timestamp order.

        The sort is stable, so events with equal timestamps keep the order given (oldest
        first, as the log holds them).
        """
        timeline = sorted(events, key=lambda event: event_time(event) or "")
        states: dict[str, Any] = {}
        for event in timeline:
            self.apply(states, event)
        return states

    def order_sensitive(self) -> bool:
        """Whether applying an event older than ones already applied can give another state.

        True when a cart feature exists; then the processor recomputes from the timeline for
        late events instead of applying them.
        """
        return self._order_sensitive
