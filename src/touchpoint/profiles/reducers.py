"""Feature reducers: how one computed feature folds events into a state and reads its value.

A reducer is built once from a `FeatureConfig` and then called on the hot path, once per
matching event. Its state lives in the profile (keyed by the feature name), so it is plain
JSON (dicts, lists, strings, numbers) and small. Reducers keep the state order-insensitive
where that is cheap: counts and sums are commutative, `last` / `first_time` / `last_time`
compare the event's own timestamp, and `last_distinct` keeps the top `n` values by their
newest timestamp. Only the cart depends on the order events are applied in.

Timestamps reach a reducer as canonical strings (`core.clock.isoformat`), which compare
correctly as strings; windowed reducers also get the event time in epoch seconds.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping
from operator import itemgetter
from typing import Any

logger = logging.getLogger(__name__)

States = dict[str, Any]
Event = Mapping[str, Any]
Reader = Callable[[Mapping[str, Any]], Any]
"""Reads a feature's `property` from an event (None when absent)."""
Filter = Callable[[Mapping[str, Any]], bool]
"""A feature's compiled `where`: whether an event counts."""

PRODUCT_ADDED = "Product Added"
PRODUCT_REMOVED = "Product Removed"
ORDER_COMPLETED = "Order Completed"
CART_EVENTS = (PRODUCT_ADDED, PRODUCT_REMOVED, ORDER_COMPLETED)
CART_ITEM_FIELDS = ("name", "price", "category", "sku", "brand", "variant", "url", "image_url")
MAX_CART_ITEMS = 200

VALUE_DECIMALS = 6
MIN_BUCKET_SECONDS = 1
# Bucket widths a window may use: the widest one at most 1/100 of the window is chosen, so the
# error at the window's edge is at most about 1% of the window and one window holds at most a
# few hundred buckets (consecutive widths differ by at most 3.5x).
BUCKET_WIDTHS = (
    1, 2, 5, 10, 15, 30,
    60, 120, 300, 600, 900, 1800,
    3600, 7200, 10800, 21600, 43200,
    86400, 172800, 345600, 604800,
)  # fmt: skip


def to_number(value: object) -> int | float | None:
    """A finite number from a JSON number or a numeric string (`"12.50"`); None otherwise.

    Booleans, NaN, infinities and strings such as `"1_000"` or `"0x10"` are not numbers here.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 64 or "_" in text:
            return None
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def round_number(value: int | float) -> int | float:
    """Round float noise away (6 decimals) for a value the API shows; ints pass unchanged."""
    return round(value, VALUE_DECIMALS) if isinstance(value, float) else value


def bucket_width(window_seconds: float) -> int:
    """Width in whole seconds of the time buckets of a windowed feature (7d gives 1h)."""
    width = MIN_BUCKET_SECONDS
    for candidate in BUCKET_WIDTHS:
        if candidate * 100 <= window_seconds:
            width = candidate
    return width


_bucket_start = itemgetter(0)
_bucket_amount = itemgetter(1)


def _absent(event: Event) -> None:
    return None


def same_value(left: object, right: object) -> bool:
    """JSON equality that keeps `true` apart from `1` (Python says `True == 1`)."""
    return left == right and isinstance(left, bool) == isinstance(right, bool)


class Reducer:
    """The fold of one feature: `update` applies an event to the state, `value` reads it.

    `update` mutates `states[self.name]` in place and says whether anything changed; it is only
    called for events whose name and `where` condition match. `value` never mutates the state
    and returns the neutral value for a missing or unreadable state.
    """

    __slots__ = ("name", "read", "where")

    windowed = False

    def __init__(self, name: str, read: Reader | None, where: Filter | None = None) -> None:
        self.name = name
        self.read: Reader = read or _absent
        self.where = where

    def update(self, states: States, event: Event, at: str, epoch: float | None) -> bool:
        """Fold `event` (at canonical time `at`, `epoch` seconds if windowed) into the state."""
        raise NotImplementedError

    def value(self, state: Any, now: float) -> Any:
        """The feature's value from `state` at `now` (epoch seconds)."""
        raise NotImplementedError


class TotalReducer(Reducer):
    """`count` / `sum` without a window: how many matching events, or the total of `property`.

    State: a number. A count adds 1 per event; a sum adds the property's number (numeric
    strings count, anything else is skipped).
    """

    __slots__ = ("summed",)

    def __init__(self, name: str, read: Reader | None, where: Filter | None) -> None:
        super().__init__(name, read, where)
        self.summed = read is not None

    def update(self, states: States, event: Event, at: str, epoch: float | None) -> bool:
        amount = to_number(self.read(event)) if self.summed else 1
        if not amount:
            return False
        state = states.get(self.name)
        if type(state) is int or type(state) is float:
            states[self.name] = state + amount
        else:
            states[self.name] = amount
        return True

    def value(self, state: Any, now: float) -> Any:
        return round_number(state) if type(state) is int or type(state) is float else 0


class WindowedReducer(Reducer):
    """`count` / `sum` over a sliding `window`, kept as time buckets.

    State: `{"width": seconds, "buckets": [[start, amount], ...]}`, buckets sorted by start
    (epoch seconds). Buckets too old to overlap any window ending at or after the newest
    bucket are dropped as soon as a newer bucket opens, and an event that old is ignored on
    arrival, so the state does not depend on the order events came in. `value(now)` adds the
    buckets that overlap `[now - window, now]`: exact for bucket-aligned windows, otherwise off
    by at most one bucket (about 1% of the window). Values are exact for any `now` at or after
    the newest event; an earlier `now` may miss buckets already dropped.
    """

    __slots__ = ("horizon", "summed", "width", "window")

    windowed = True

    def __init__(
        self, name: str, read: Reader | None, where: Filter | None, window_seconds: float
    ) -> None:
        super().__init__(name, read, where)
        self.summed = read is not None
        self.window = window_seconds
        self.width = bucket_width(window_seconds)
        self.horizon = window_seconds + self.width

    def update(self, states: States, event: Event, at: str, epoch: float | None) -> bool:
        if epoch is None:
            return False
        amount = to_number(self.read(event)) if self.summed else 1
        if not amount:
            return False
        width = self.width
        start = int(epoch // width) * width
        state = states.get(self.name)
        if type(state) is not dict or state.get("width") != width:
            state = {"width": width, "buckets": []}
            states[self.name] = state
        buckets: list[list[Any]] = state["buckets"]
        if not buckets or start > buckets[-1][0]:
            buckets.append([start, amount])
            floor = start - self.horizon
            if buckets[0][0] <= floor:
                del buckets[: bisect_right(buckets, floor, key=_bucket_start)]
            return True
        newest = buckets[-1]
        if start == newest[0]:
            newest[1] += amount
            return True
        if start <= newest[0] - self.horizon:
            return False
        index = bisect_left(buckets, start, key=_bucket_start)
        if buckets[index][0] == start:
            buckets[index][1] += amount
        else:
            buckets.insert(index, [start, amount])
        return True

    def value(self, state: Any, now: float) -> Any:
        if type(state) is not dict:
            return 0
        buckets = state.get("buckets")
        width = state.get("width")
        if type(buckets) is not list or type(width) is not int:
            return 0
        first = bisect_right(buckets, now - self.window - width, key=_bucket_start)
        last = bisect_right(buckets, now, key=_bucket_start)
        return round_number(sum(map(_bucket_amount, buckets[first:last])))


class LastReducer(Reducer):
    """`last`: the property's value at the newest event (state: `{"at", "value"}`).

    Equal timestamps: the event applied later wins.
    """

    __slots__ = ()

    def update(self, states: States, event: Event, at: str, epoch: float | None) -> bool:
        value = self.read(event)
        if value is None:
            return False
        state = states.get(self.name)
        if type(state) is dict:
            previous_at = state.get("at")
            if type(previous_at) is str:
                if at < previous_at:
                    return False
                if at == previous_at and same_value(state.get("value"), value):
                    return False
        states[self.name] = {"at": at, "value": value}
        return True

    def value(self, state: Any, now: float) -> Any:
        return state.get("value") if type(state) is dict else None


class LastDistinctReducer(Reducer):
    """`last_distinct`: the last `n` distinct values, newest first.

    State: a list of `[value, at]` pairs sorted by `at`, newest first; a value seen again moves
    to its new place. It holds the top `n` values by their newest time, which a late event
    cannot change wrongly (a value dropped from the list was older than all kept ones), so the
    state is order-insensitive apart from ties in time, where the later-applied event wins.
    """

    __slots__ = ("limit",)

    def __init__(self, name: str, read: Reader | None, where: Filter | None, limit: int) -> None:
        super().__init__(name, read, where)
        self.limit = limit

    def update(self, states: States, event: Event, at: str, epoch: float | None) -> bool:
        value = self.read(event)
        if value is None:
            return False
        state = states.get(self.name)
        if type(state) is not list:
            state = []
            states[self.name] = state
        truncated = len(state) > self.limit
        if truncated:
            del state[self.limit :]
        found = -1
        old_at: str | None = None
        for index, entry in enumerate(state):
            if same_value(entry[0], value):
                if at < entry[1]:
                    return truncated
                found = index
                break
        if found >= 0:
            old_at = state.pop(found)[1]
        position = 0
        size = len(state)
        while position < size and state[position][1] > at:
            position += 1
        if position >= self.limit:
            return truncated
        state.insert(position, [value, at])
        if len(state) > self.limit:
            del state[self.limit :]
        return truncated or not (found == position and old_at == at)

    def value(self, state: Any, now: float) -> Any:
        if type(state) is not list:
            return []
        return [entry[0] for entry in state[: self.limit]]


class TimeReducer(Reducer):
    """`first_time` / `last_time`: the earliest / latest timestamp of a matching event.

    State: the canonical timestamp string.
    """

    __slots__ = ("latest",)

    def __init__(self, name: str, read: Reader | None, where: Filter | None, latest: bool) -> None:
        super().__init__(name, read, where)
        self.latest = latest

    def update(self, states: States, event: Event, at: str, epoch: float | None) -> bool:
        state = states.get(self.name)
        if type(state) is str and (state >= at if self.latest else state <= at):
            return False
        states[self.name] = at
        return True

    def value(self, state: Any, now: float) -> Any:
        return state if type(state) is str else None


def _quantity(value: object) -> int | float | None:
    """A positive quantity (default 1 when absent); None when present but unusable."""
    if value is None:
        return 1
    number = to_number(value)
    if number is None or number <= 0:
        return None
    if isinstance(number, float) and number.is_integer():
        return int(number)
    return number


def _empty_cart() -> dict[str, Any]:
    return {"items": [], "count": 0, "value": 0, "updated_at": None}


class CartReducer(Reducer):
    """`cart`: the open cart from `Product Added` / `Product Removed` / `Order Completed`.

    `Product Added` adds `quantity` (default 1) of `product_id` (or `sku`) and keeps the
    latest name, price, category, sku, brand, variant, url and image_url it carries;
    `Product Removed` takes `quantity` (default 1) away and drops the line at zero;
    `Order Completed` empties the whole cart, as most shops do at checkout (the ordered
    products are not matched against the lines). State:
    `{"items": {"<product_id>": {"product_id", "quantity", ...}}, "updated_at": at}`, lines in
    the order they were first added, at most 200. Order-sensitive: a late event changes the
    result, so the processor recomputes carts from the timeline.
    """

    __slots__ = ()

    def update(self, states: States, event: Event, at: str, epoch: float | None) -> bool:
        name = event.get("event")
        properties = event.get("properties")
        if not isinstance(properties, Mapping):
            properties = {}
        state = states.get(self.name)
        if type(state) is not dict or type(state.get("items")) is not dict:
            state = {"items": {}, "updated_at": None}
            states[self.name] = state
        items: dict[str, Any] = state["items"]
        if name == ORDER_COMPLETED:
            items.clear()
        else:
            product_id = properties.get("product_id")
            if product_id is None or product_id == "":
                product_id = properties.get("sku")
            if product_id == "" or type(product_id) not in (str, int):
                return False
            quantity = _quantity(properties.get("quantity"))
            if quantity is None:
                return False
            key = str(product_id)
            item = items.get(key)
            if name == PRODUCT_ADDED:
                if item is None:
                    if len(items) >= MAX_CART_ITEMS:
                        logger.debug("cart %s is full; %s not added", self.name, key)
                        return False
                    item = {"product_id": product_id, "quantity": 0}
                    items[key] = item
                item["quantity"] = item["quantity"] + quantity
                for field in CART_ITEM_FIELDS:
                    detail = properties.get(field)
                    if field == "price":
                        detail = to_number(detail)
                    if detail is not None:
                        item[field] = detail
            elif name == PRODUCT_REMOVED:
                if item is None:
                    return False
                remaining = item["quantity"] - quantity
                if remaining <= 0:
                    del items[key]
                else:
                    item["quantity"] = round_number(remaining)
            else:
                return False
        previous = state.get("updated_at")
        if type(previous) is not str or previous < at:
            state["updated_at"] = at
        return True

    def value(self, state: Any, now: float) -> Any:
        if type(state) is not dict or type(state.get("items")) is not dict:
            return _empty_cart()
        lines = [dict(item) for item in state["items"].values()]
        count: int | float = 0
        total: int | float = 0
        for line in lines:
            quantity = line.get("quantity", 0)
            count += quantity
            price = line.get("price")
            if type(price) is int or type(price) is float:
                total += price * quantity
        updated_at = state.get("updated_at")
        return {
            "items": lines,
            "count": round_number(count),
            "value": round_number(total),
            "updated_at": updated_at if type(updated_at) is str else None,
        }
