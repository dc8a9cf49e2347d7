"""Real-time segments: which of the workspace's segments a profile is in, right now.

The stream processor re-evaluates a profile's segments after each batch that
changed it, and records every enter and exit (with `entered_at`). Segments whose
condition depends on time alone (`features.views_7d` over a window, `last_seen
within 7d`) can change with no event at all, so `refresh_time_dependent` sweeps
every profile for those every few minutes.

Segments are evaluated in definition order and a condition may use
`{"segment": "x"}` for a segment defined earlier: the document's `segments` list
is updated as evaluation goes. A reference to a segment this evaluator does not
own (a batch segment such as an RFM tier) reads the stored membership.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from touchpoint.config.workspace import SegmentConfig
from touchpoint.core.clock import isoformat
from touchpoint.core.errors import DefinitionError
from touchpoint.profiles.model import Profile
from touchpoint.profiles.store.base import ProfileStore, ProfileWriter
from touchpoint.profiles.view import profile_document

if TYPE_CHECKING:
    from touchpoint.core.conditions import Condition
    from touchpoint.profiles.features import FeatureEngine

logger = logging.getLogger(__name__)

_SEGMENT_FIELDS = ("segments", "segment_memberships")


def _segment_references(spec: Any) -> Iterator[str]:
    """Segment names a canonical condition tests: `{"segment": x}`, `segments contains x`."""
    if isinstance(spec, dict):
        if "segment" in spec:
            yield str(spec["segment"])
        elif spec.get("field") == "segments":
            operand = spec.get("contains", spec.get("in"))
            if isinstance(operand, str):
                yield operand
            elif isinstance(operand, list):
                yield from (item for item in operand if isinstance(item, str))
        for key in ("and", "or"):
            for child in spec.get(key) or ():
                yield from _segment_references(child)
        if "not" in spec:
            yield from _segment_references(spec["not"])


def _reads_segments(condition: Condition) -> bool:
    return any(
        field == root or field.startswith(root + ".")
        for field in condition.fields
        for root in _SEGMENT_FIELDS
    )


class SegmentEvaluator:
    """The workspace's real-time segments, compiled once.

    `time_dependent_features`: names of features whose value changes with time alone
    (`FeatureEngine.time_dependent`); a segment reading one of them is time-dependent, as is
    one using `within`/`older_than` or a time-dependent segment. `refresh_time_dependent`
    also takes them from the engine it is given. Raises DefinitionError (path
    `segments[i].condition`) for a bad condition, or for a `{"segment": ...}` reference to
    itself or to a segment defined after it.
    """

    def __init__(
        self,
        segments: Sequence[SegmentConfig],
        *,
        time_dependent_features: Iterable[str] = (),
    ) -> None:
        from touchpoint.core.conditions import compile_condition

        all_names = [segment.name for segment in segments]
        compiled: list[tuple[str, Condition]] = []
        for index, segment in enumerate(segments):
            path = f"segments[{index}].condition"
            condition = compile_condition(segment.condition, path=path)
            for name in _segment_references(condition.spec):
                if name in all_names[index:]:
                    raise DefinitionError(
                        path, f"segment {name!r} must be defined before {segment.name!r} uses it"
                    )
            compiled.append((segment.name, condition))
        self._compiled = tuple(compiled)
        self.names: tuple[str, ...] = tuple(all_names)
        self._owned = frozenset(all_names)
        self.time_dependent: frozenset[str] = self.time_dependent_with(time_dependent_features)

    def time_dependent_with(self, time_dependent_features: Iterable[str]) -> frozenset[str]:
        """The segments whose membership can change with time alone, given the features
        whose values do."""
        windowed = {f"features.{name}" for name in time_dependent_features}
        prefixes = tuple(f"{field}." for field in windowed)
        found: list[str] = []
        for name, condition in self._compiled:
            if (
                condition.time_dependent
                or any(f in windowed or f.startswith(prefixes) for f in condition.fields)
                or (bool(found) and _reads_segments(condition))
            ):
                found.append(name)
        return frozenset(found)

    def evaluate(self, document: Mapping[str, Any], now: datetime) -> set[str]:
        """The names of this evaluator's segments the document is in at `now`.

        The document is not changed. A condition that raises counts as "unchanged" (the
        stored membership stands) and is logged, so one odd value cannot block a profile.
        """
        stored = document.get("segment_memberships") or {}
        working = dict(document)
        current = [name for name in document.get("segments") or () if name not in self._owned]
        memberships = {name: at for name, at in stored.items() if name not in self._owned}
        working["segments"] = current
        working["segment_memberships"] = memberships
        stamp = isoformat(now)
        matched: set[str] = set()
        for name, condition in self._compiled:
            try:
                member = bool(condition(working, now))
            except Exception:
                logger.exception("segment %s: the condition failed; membership kept", name)
                member = name in stored
            if member:
                matched.add(name)
                current.append(name)
                memberships[name] = stored.get(name, stamp)
        return matched

    def update_memberships(
        self,
        writer: ProfileWriter,
        profile: Profile,
        document: Mapping[str, Any],
        now: datetime,
        *,
        only: frozenset[str] | None = None,
    ) -> int:
        """Evaluate, then record each enter and exit through `writer` and on `profile.segments`.

        `only` limits the changes to those segments (the time-dependent sweep). Returns the
        number of changes.
        """
        matched = self.evaluate(document, now)
        at = isoformat(now)
        changes = 0
        for name in self.names:
            if only is not None and name not in only:
                continue
            member = name in matched
            if member == (name in profile.segments):
                continue
            writer.set_segment(profile.profile_id, name, member=member, at=at)
            if member:
                profile.segments[name] = at
            else:
                del profile.segments[name]
            changes += 1
        return changes

    def refresh_time_dependent(
        self, store: ProfileStore, engine: FeatureEngine, now: datetime, *, batch: int = 500
    ) -> int:
        """Sweep every profile and re-evaluate the time-dependent segments at `now`.

        Windows expire with time alone, so without this a profile whose 7-day count fell
        to zero would stay in its segment until its next event. One transaction per page of
        `batch` profiles keeps the writer available to the stream processor in between.
        Returns the number of enter/exit changes recorded.
        """
        sweep = self.time_dependent | self.time_dependent_with(engine.time_dependent)
        if not sweep:
            return 0
        changes = 0
        cursor: str | None = None
        while True:
            page = store.profile_ids(cursor=cursor, limit=batch)
            with store.transaction() as writer:
                for profile_id in page.items:
                    profile = writer.load(profile_id)
                    if profile is None:  # merged away since the page was read
                        continue
                    document = profile_document(profile, engine, now)
                    changes += self.update_memberships(writer, profile, document, now, only=sweep)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        if changes:
            logger.info("time-dependent segment sweep: %d changes", changes)
        return changes
