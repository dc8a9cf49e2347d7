"""Limits on the shape of an event: how deeply its objects and arrays nest, how wide they are.

An event's JSON is kept whole and read back whole (the timeline, the export, the
rejected store, the stream's property paths), and every reader has its own ceiling
on nesting: orjson writes at most 254 levels, Python's recursion stops near 1,000,
SQLite's JSON functions at 1,000. An event that passed collection and then broke
every read of its person's timeline was the result, so the shape is checked where
events come in, before anything serializes them: too deep or too wide is a
rejection naming the path of the offending object or array. `collect.max_depth` is
capped (`core.config_sources.MAX_EVENT_DEPTH`, 128) well below every reader's limit, leaving
room for the few levels a response wraps around an event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_SHOWN_KEY = 64  # characters of one key shown in a path


@dataclass(frozen=True, slots=True)
class ShapeLimits:
    """How deeply containers may nest (the event itself is level 1), and how many keys an
    object and items an array may hold."""

    max_depth: int = 32
    max_object_keys: int = 1000
    max_array_items: int = 1000


@dataclass(frozen=True, slots=True)
class ShapeProblem:
    """The path of the first container over a limit (`properties.a[0].b`), and why."""

    path: str
    reason: str


def shape_problem(value: Any, limits: ShapeLimits, *, prefix: str = "") -> ShapeProblem | None:
    """The first object or array in `value` (level 1) that nests deeper or is wider than
    `limits`, or None. Never descends past the depth limit, so it is safe on any input."""
    if not isinstance(value, dict | list):
        return None
    if _within(value, 1, limits.max_depth, limits.max_object_keys, limits.max_array_items):
        return None  # the usual case, checked without building any path
    found = _check(value, 1, limits)
    if found is None:
        return None
    steps, reason = found
    path = prefix
    for step in reversed(steps):
        if isinstance(step, int):
            path += f"[{step}]"
        else:
            shown = step if len(step) <= _SHOWN_KEY else step[:_SHOWN_KEY] + "…"
            path += f".{shown}" if path else shown
    return ShapeProblem(path or "<event>", reason)


def may_exceed(encoded: bytes, limits: ShapeLimits) -> bool:
    """Whether a value whose JSON text is `encoded` could be over `limits` at all. Counting
    bytes runs at C speed: nesting N levels takes N brackets, and an object of N keys or an
    array of N items takes N - 1 commas, so most events need no walk."""
    containers = encoded.count(b"{") + encoded.count(b"[")
    widest = min(limits.max_object_keys, limits.max_array_items)
    return containers > limits.max_depth or encoded.count(b",") >= widest


def _within(value: Any, depth: int, max_depth: int, max_keys: int, max_items: int) -> bool:
    """Whether `value` (a dict or list at level `depth`) keeps to the limits: the hot path,
    on every event collected, so it tests exact types and builds nothing."""
    if type(value) is dict:
        if len(value) > max_keys:
            return False
        children: Any = value.values()
    else:
        if len(value) > max_items:
            return False
        children = value
    for child in children:
        kind = type(child)
        if (kind is dict or kind is list) and (
            depth >= max_depth or not _within(child, depth + 1, max_depth, max_keys, max_items)
        ):
            return False
    return True


def _check(value: Any, depth: int, limits: ShapeLimits) -> tuple[list[str | int], str] | None:
    """(the path to the offending container, innermost step first; the reason) or None.
    Recursion is bounded by `limits.max_depth`."""
    if depth > limits.max_depth:
        return [], f"objects and arrays may nest at most {limits.max_depth} levels"
    items: Any
    if isinstance(value, dict):
        if len(value) > limits.max_object_keys:
            return [], (
                f"an object may hold at most {limits.max_object_keys} keys; this one has "
                f"{len(value)}"
            )
        items = value.items()
    else:
        if len(value) > limits.max_array_items:
            return [], (
                f"an array may hold at most {limits.max_array_items} items; this one has "
                f"{len(value)}"
            )
        items = enumerate(value)
    for step, item in items:
        if isinstance(item, dict | list):
            found = _check(item, depth + 1, limits)
            if found is not None:
                found[0].append(step)
                return found
    return None


def prune(value: Any, max_depth: int, marker: str = "<removed: nested too deeply>") -> Any:
    """A copy of `value` with every container below level `max_depth` replaced by `marker`:
    what the rejected store keeps of an event too deep to serialize. Iterative, so it is
    safe whatever the depth."""
    if not isinstance(value, dict | list):
        return value
    root: Any = {} if isinstance(value, dict) else []
    stack: list[tuple[Any, Any, int]] = [(value, root, 1)]
    while stack:
        source, copy, depth = stack.pop()
        pairs = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in pairs:
            if isinstance(item, dict | list):
                if depth >= max_depth:
                    child: Any = marker
                else:
                    child = {} if isinstance(item, dict) else []
                    stack.append((item, child, depth + 1))
            else:
                child = item
            if isinstance(copy, dict):
                copy[key] = child
            else:
                copy.append(child)
    return root
