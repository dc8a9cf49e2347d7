"""Liquid rendering of content templates, safe for marketers' definitions.

Liquid is the template language marketers already know, and it is safe by
design: a template reads the variables it is given and nothing else (no
attribute access into Python objects, no imports, no file system: `include` and
`render` find no templates). Two more guards make it safe to run on a request
path:

- values are HTML-escaped on output (autoescape), so a trait such as
  `<script>…` set by a visitor cannot inject markup into the page;
- resource limits stop a template that would run away: loop iterations, output
  size, context nesting, the size of its local variables and of what any one
  filter makes (`template_limits`).

A template is parsed once, when its definitions version is compiled, and
rendered per decision. Every failure while rendering is one `TemplateRenderError`
naming the content id, which the decision engine turns into a fallback.

Rendering is the costliest step of a decision, and most renders repeat one
another, so outputs are remembered. Static analysis at compile time lists the
variables a template reads. A template that reads only the content's own
`payload`, `content_id` and `placement` (a row of product cards) is *constant*:
it renders once per placement. Any other is keyed on the values of what it
reads (`traits.first_name`, `features.cart`), taken whole at the deepest part of
each path the documents hold; a bounded memo shared by the catalog's templates
keeps recent outputs. Either way the bytes are those a fresh render would give.
A template whose output could change with time alone (the `date` filter reads
the clock for `"now"`) or whose variables cannot be listed is always rendered.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson
from liquid import Environment
from liquid.exceptions import LiquidError
from liquid.template import BoundTemplate

from touchpoint.core.errors import DefinitionError, TouchpointError
from touchpoint.decide.template_limits import bound_filters

logger = logging.getLogger(__name__)

# Document keys a template must never see: identifiers (even hashed) and consent.
HIDDEN_DOCUMENT_KEYS = frozenset({"identities", "consent"})
# Variables that are the same on every decision for one content item on one placement.
CONTENT_VARIABLES = frozenset({"payload", "content_id", "placement"})
# Filters whose result can change with time alone (`"now" | date: ...`).
CLOCK_FILTERS = frozenset({"date"})
# Values that are not plain JSON (datetimes, str subclasses such as markupsafe.Markup, which
# render unescaped) make a key fail, so those renders are not remembered.
_KEY_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
)
_ABSENT = object()
_ABSENT_KEY = b"\x00absent"

VariablePath = tuple[str | int, ...]


class TemplateRenderError(TouchpointError):
    """A content template failed to render (a limit, a bad filter argument, a type error).

    `content_id` names the content; the decision engine skips it and shows the fallback.
    """

    code = "template_error"
    status = 422

    def __init__(self, content_id: str, reason: str) -> None:
        super().__init__(
            f"content {content_id!r}: template failed to render: {reason}",
            details={"content_id": content_id, "reason": reason},
        )
        self.content_id = content_id
        self.reason = reason


class SafeEnvironment(Environment):
    """A Liquid environment with limits, for templates written by people, run per request.

    The limits bound the work and memory of one render: a loop over a long list or a
    `(1..1000000)` range stops at `loop_iteration_limit`, output stops at
    `output_stream_limit` characters, `assign`/`capture` stop at
    `local_namespace_limit` bytes, and no filter may make a string over
    `filter_string_limit` characters or a list over `filter_items_limit` items (checked
    before `replace` and `join` build theirs; see `template_limits`).
    """

    loop_iteration_limit: ClassVar[int | None] = 10_000
    output_stream_limit: ClassVar[int | None] = 256 * 1024
    context_depth_limit: ClassVar[int] = 30
    local_namespace_limit: ClassVar[int | None] = 256 * 1024
    filter_string_limit: ClassVar[int] = 256 * 1024
    filter_items_limit: ClassVar[int] = 10_000

    def setup_tags_and_filters(self, *, extra: bool = False) -> None:
        super().setup_tags_and_filters(extra=extra)
        bound_filters(
            self.filters,
            max_string=self.filter_string_limit,
            max_items=self.filter_items_limit,
        )


_ENVIRONMENT = SafeEnvironment(autoescape=True)


@dataclass(frozen=True, slots=True)
class _Failed:
    """A remembered render failure (the same inputs fail the same way)."""

    reason: str


class RenderMemo:
    """Recent outputs of personalized templates, shared by one catalog's templates.

    Bounded: at most `max_entries` outputs of at most `max_output` characters each; when
    full it is emptied and fills again with what is current. Thread-safe.
    """

    def __init__(self, max_entries: int = 4096, max_output: int = 16 * 1024) -> None:
        self.max_entries = max_entries
        self.max_output = max_output
        self._entries: dict[Hashable, str | _Failed] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> str | _Failed | None:
        return self._entries.get(key)

    def put(self, key: Hashable, value: str | _Failed) -> None:
        if isinstance(value, str) and len(value) > self.max_output:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = value

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    """One content item's template, parsed once; safe to render from many threads.

    `reads`: the variable paths its output depends on beyond the content's own (empty:
    constant; None: unknown, so never remembered). See the module doc.
    """

    content_id: str
    source: str
    payload: Mapping[str, Any] | None = field(repr=False, compare=False)
    reads: tuple[VariablePath, ...] | None
    _template: BoundTemplate = field(repr=False, compare=False)
    _memo: RenderMemo = field(repr=False, compare=False)
    _constant: dict[str, str | _Failed] = field(default_factory=dict, repr=False, compare=False)

    @property
    def constant(self) -> bool:
        """Whether the output depends only on the content and the placement."""
        return self.reads == ()

    def render(self, variables: Mapping[str, Any]) -> str:
        """Render with exactly `variables`: the HTML, or TemplateRenderError naming the
        content."""
        try:
            return self._template.render(variables)
        except LiquidError as error:
            # The first line is the reason; the rest points into the source.
            raise TemplateRenderError(self.content_id, _first_line(error)) from None
        except Exception as error:  # a filter on data of an unexpected shape, for instance
            reason = f"{type(error).__name__}: {_first_line(error)}"
            raise TemplateRenderError(self.content_id, reason) from None

    def render_for(
        self, document: Mapping[str, Any], *, context: Mapping[str, Any], placement: str
    ) -> str:
        """The HTML for one person (`document`, the request `context`) on `placement`, with
        the content's own payload; TemplateRenderError naming the content if it fails, and
        nothing else: whatever goes wrong (building the variables, the memo's key, the
        render) fails this content only."""
        try:
            return self._render_for(document, context, placement)
        except TemplateRenderError:
            raise
        except Exception as error:
            raise TemplateRenderError(
                self.content_id, f"{type(error).__name__}: {error}"
            ) from error

    def _render_for(
        self, document: Mapping[str, Any], context: Mapping[str, Any], placement: str
    ) -> str:
        reads = self.reads
        remembered: str | _Failed | None
        if reads == ():
            remembered = self._constant.get(placement)
            if remembered is None:
                remembered = self._render_or_failure(document, context, placement)
                self._constant[placement] = remembered  # a race stores the same result twice
        elif reads is None:
            return self.render(self._variables(document, context, placement))
        else:
            key = self._key(reads, document, context, placement)
            if key is None:
                return self.render(self._variables(document, context, placement))
            remembered = self._memo.get(key)
            if remembered is None:
                remembered = self._render_or_failure(document, context, placement)
                self._memo.put(key, remembered)
        if isinstance(remembered, _Failed):
            raise TemplateRenderError(self.content_id, remembered.reason)
        return remembered

    def _render_or_failure(
        self, document: Mapping[str, Any], context: Mapping[str, Any], placement: str
    ) -> str | _Failed:
        try:
            return self.render(self._variables(document, context, placement))
        except TemplateRenderError as error:
            return _Failed(error.reason)

    def _variables(
        self, document: Mapping[str, Any], context: Mapping[str, Any], placement: str
    ) -> dict[str, Any]:
        return template_variables(
            document,
            context=context,
            payload=self.payload,
            content_id=self.content_id,
            placement=placement,
        )

    def _key(
        self,
        reads: tuple[VariablePath, ...],
        document: Mapping[str, Any],
        context: Mapping[str, Any],
        placement: str,
    ) -> tuple[Any, ...] | None:
        """(content id, placement, the value of every path read), or None if a value is not
        plain JSON."""
        parts: list[Any] = [self.content_id, placement]
        for path in reads:
            depth, value = _resolve(path, document, context)
            parts.append(depth)
            if value is _ABSENT:
                parts.append(_ABSENT_KEY)
                continue
            try:
                encoded = orjson.dumps(value, option=_KEY_OPTIONS, default=_refuse)
            except (orjson.JSONEncodeError, TypeError):
                return None
            if b"null" in encoded and _non_finite(value):  # NaN and None both encode as null
                return None
            parts.append(encoded)
        return tuple(parts)


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, Mapping):
        return any(_non_finite(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_non_finite(item) for item in value)
    return False


def _refuse(value: Any) -> Any:
    raise TypeError(f"not plain JSON: {type(value).__name__}")


def _resolve(
    path: VariablePath, document: Mapping[str, Any], context: Mapping[str, Any]
) -> tuple[int, Any]:
    """How far along `path` the data goes, and the value there.

    A step Liquid may resolve its own way (`size` or `first` of a list, an index into a
    mapping) ends the walk, so the key takes the whole value before it; the depth tells
    `{"cart": []}` (no `cart.items`) from `{"cart": {"items": []}}`.
    """
    root = path[0]
    if root == "context":
        value: Any = context
    elif not isinstance(root, str) or root in HIDDEN_DOCUMENT_KEYS or root not in document:
        return 0, _ABSENT
    else:
        value = document[root]
    depth = 1
    for step in path[1:]:
        if isinstance(value, Mapping) and isinstance(step, str):
            if step not in value:
                return depth, _ABSENT
            value = value[step]
        elif isinstance(value, list) and isinstance(step, int) and not isinstance(step, bool):
            if not -len(value) <= step < len(value):
                return depth, _ABSENT
            value = value[step]
        else:
            break
        depth += 1
    return depth, value


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def compile_template(
    source: str,
    *,
    content_id: str,
    payload: Mapping[str, Any] | None = None,
    memo: RenderMemo | None = None,
    path: str = "template",
) -> CompiledTemplate:
    """Parse `source` (the template of content `content_id`, whose payload is `payload`) in
    the safe environment; DefinitionError(path, reason) if it is not valid Liquid. `memo`:
    where personalized outputs are remembered (shared by a catalog's templates)."""
    try:
        parsed = _ENVIRONMENT.from_string(source, name=content_id)
    except LiquidError as error:
        reason = f"not a valid Liquid template: {_first_line(error)}"
        raise DefinitionError(path, reason) from None
    return CompiledTemplate(
        content_id, source, payload, _reads(parsed), parsed, RenderMemo() if memo is None else memo
    )


def _reads(template: BoundTemplate) -> tuple[VariablePath, ...] | None:
    """The paths the output depends on, besides the content variables; None if unknown."""
    try:
        analysis = template.analyze(include_partials=False)
    except Exception:  # an analysis it cannot finish: render every time
        logger.debug("could not analyze template %s", template.name, exc_info=True)
        return None
    if set(analysis.filters) & CLOCK_FILTERS:
        return None
    paths: set[VariablePath] = set()
    for name, variables in analysis.globals.items():
        if name in CONTENT_VARIABLES:
            continue
        for variable in variables:
            steps: list[str | int] = []
            for segment in variable.segments:
                # A computed step (`traits[context.key]`) ends the path: the key takes the
                # whole value before it (the inner path is listed on its own).
                if type(segment) is not str and type(segment) is not int:
                    break
                steps.append(segment)
            if not steps or type(steps[0]) is not str:
                return None
            paths.add(tuple(steps))
    kept: list[VariablePath] = []
    for candidate in sorted(paths, key=len):  # a path below a kept one adds nothing
        if not any(candidate[: len(shorter)] == shorter for shorter in kept):
            kept.append(candidate)
    return tuple(sorted(kept, key=repr))


def template_variables(
    document: Mapping[str, Any],
    *,
    context: Mapping[str, Any],
    payload: Mapping[str, Any] | None,
    content_id: str,
    placement: str,
) -> dict[str, Any]:
    """What a template sees: the profile document without `identities` and `consent`,
    plus `context` (the request's), `payload` (the content's), `content_id`, `placement`."""
    variables = {key: value for key, value in document.items() if key not in HIDDEN_DOCUMENT_KEYS}
    variables["context"] = context
    variables["payload"] = payload if payload is not None else {}
    variables["content_id"] = content_id
    variables["placement"] = placement
    return variables
