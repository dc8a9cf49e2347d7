"""Bounds on what one Liquid filter may build, for the safe environment of `render`.

python-liquid's own limits bound output, loop iterations and the local namespace,
but not a filter chain inside one output statement: eight `replace` filters turn
ten characters into a billion before anything is written. Every filter of the
safe environment is wrapped so that its result (a string or a list) is refused
past `max_string` characters or `max_items` items, and the filters whose result
can be a product of their inputs' sizes (`replace`, `join`) are refused *before*
they build it. A refusal is a `FilterResultLimitError` (a Liquid resource-limit
error), so the render fails with a reason and the engine shows the fallback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from liquid import soft_str
from liquid.exceptions import ResourceLimitError


class FilterResultLimitError(ResourceLimitError):
    """A filter would build a string or a list larger than the environment allows."""


def _size_of_replace(args: tuple[Any, ...]) -> int:
    value = soft_str(args[0]) if args else ""
    old = soft_str(args[1]) if len(args) > 1 else ""
    new = soft_str(args[2]) if len(args) > 2 else ""
    return len(value) + value.count(old) * max(len(new) - len(old), 0)


def _size_of_join(args: tuple[Any, ...]) -> int:
    items = args[0] if args else ()
    separator = soft_str(args[1]) if len(args) > 1 else " "
    if isinstance(items, str) or not isinstance(items, list | tuple):
        return len(soft_str(items))
    return sum(len(soft_str(item)) for item in items) + len(separator) * max(len(items) - 1, 0)


# The size of the result, worked out from the arguments without building it.
_RESULT_SIZE: Mapping[str, Callable[[tuple[Any, ...]], int]] = {
    "replace": _size_of_replace,
    "join": _size_of_join,
}


class BoundedFilter:
    """A filter whose results stay within `max_string` characters and `max_items` items.

    Keeps the flags python-liquid reads off a filter (`with_context`, `with_environment`),
    so it is called exactly as the filter it wraps."""

    def __init__(
        self, name: str, wrapped: Callable[..., Any], *, max_string: int, max_items: int
    ) -> None:
        self.name = name
        self.wrapped = wrapped
        self.max_string = max_string
        self.max_items = max_items
        self.size_of = _RESULT_SIZE.get(name)
        for flag in ("with_context", "with_environment"):
            if getattr(wrapped, flag, False):
                setattr(self, flag, True)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.size_of is not None:
            self._check(self.size_of(args), self.max_string, "characters")
        result = self.wrapped(*args, **kwargs)
        if isinstance(result, str):
            self._check(len(result), self.max_string, "characters")
        elif isinstance(result, list | tuple):
            self._check(len(result), self.max_items, "items")
        return result

    def _check(self, size: int, limit: int, unit: str) -> None:
        if size > limit:
            raise FilterResultLimitError(
                f"filter result limit reached: `{self.name}` would make {size} {unit}; "
                f"the limit is {limit}",
                token=None,
            )


def bound_filters(
    filters: dict[str, Callable[..., Any]], *, max_string: int, max_items: int
) -> None:
    """Wrap every filter of an environment's `filters` in place (see BoundedFilter)."""
    for name, function in list(filters.items()):
        if not isinstance(function, BoundedFilter):
            filters[name] = BoundedFilter(
                name, function, max_string=max_string, max_items=max_items
            )
