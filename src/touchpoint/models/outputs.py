"""Model outputs written into profiles, where conditions and decisions read them.

Scores go to `profile.scores` (`score.propensity_30d > 0.6` in a condition), batch
segments to the profile's segment memberships (recorded as enter/exit changes like
real-time ones, so journeys and reports see them), precomputed recommendations to
`profile.recommendations`. Writes run in transactions of `batch` profiles, each loading
the profiles it changes, so they interleave with the stream processor instead of
holding the store for a whole run, and a profile the processor changes meanwhile is
never overwritten with an older copy.

A batch segment *family* (`rfm`, `cluster`, `lifecycle`…) gives each person at most one
of its segments: writing a family moves people between its segments and takes out of
the family everyone the new run did not place (erased, merged away, no longer scored).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from touchpoint.core.clock import isoformat, utcnow
from touchpoint.profiles.model import Profile
from touchpoint.profiles.store.base import ProfileStore, ProfileWriter

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class OutputCounts:
    """What a write changed: profiles updated, segment entries and exits, ids not found."""

    profiles: int = 0
    entered: int = 0
    exited: int = 0
    missing: int = 0


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class ProfileOutputs:
    """Writes scores, batch segments and recommendations into the profile store."""

    def __init__(
        self,
        profiles: ProfileStore,
        *,
        batch: int = 500,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.profiles = profiles
        self.batch = batch
        self._clock = clock

    def _each(
        self,
        profile_ids: Iterable[str],
        change: Callable[[ProfileWriter, Profile], bool],
    ) -> tuple[int, int]:
        """Apply `change` to each profile in batched transactions; (changed, missing)."""
        changed = missing = 0
        for chunk in _chunks(sorted(set(profile_ids)), self.batch):
            with self.profiles.transaction() as writer:
                loaded = writer.load_many(chunk)
                missing += len(chunk) - len(loaded)
                for profile in loaded.values():
                    if change(writer, profile):
                        writer.save(profile)
                        changed += 1
        return changed, missing

    def write_scores(
        self, scores: Mapping[str, Mapping[str, float]], *, remove: Collection[str] = ()
    ) -> OutputCounts:
        """Set each person's named scores (`{profile_id: {name: value}}`); `remove` names
        scores taken off everyone scored here that the new values do not set."""

        def change(_: ProfileWriter, profile: Profile) -> bool:
            values = scores[profile.profile_id]
            before = dict(profile.scores)
            for name in remove:
                if name not in values:
                    profile.scores.pop(name, None)
            for name, value in values.items():
                number = _plain(value)
                if isinstance(number, float) and not math.isfinite(number):
                    profile.scores.pop(name, None)  # a model's NaN is no score, not a 0
                else:
                    profile.scores[name] = number
            return profile.scores != before

        changed, missing = self._each(scores, change)
        return OutputCounts(profiles=changed, missing=missing)

    def write_segments(self, family: Collection[str], members: Mapping[str, str]) -> OutputCounts:
        """Place each person in one segment of a family (`{profile_id: segment}`), every
        segment name of which is in `family`; people in a family segment now who are not
        in `members` leave it."""
        names = frozenset(family)
        unknown = sorted({name for name in members.values() if name not in names})
        if unknown:
            raise ValueError(f"segments not in the family: {', '.join(unknown)}")
        at = isoformat(self._clock())
        entered = exited = touched = 0

        def change(writer: ProfileWriter, profile: Profile) -> bool:
            nonlocal entered, exited, touched
            target = members.get(profile.profile_id)
            changed = False
            for name in [name for name in profile.segments if name in names and name != target]:
                writer.set_segment(profile.profile_id, name, member=False, at=at)
                del profile.segments[name]
                exited += 1
                changed = True
            if target is not None and target not in profile.segments:
                writer.set_segment(profile.profile_id, target, member=True, at=at)
                profile.segments[target] = at
                entered += 1
                changed = True
            touched += changed
            return False  # memberships live in their own table: no document to save

        leaving = self._members_of(names) - members.keys()
        _, missing = self._each([*members, *leaving], change)
        return OutputCounts(profiles=touched, entered=entered, exited=exited, missing=missing)

    def _members_of(self, names: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for name in names:
            cursor = None
            while True:
                page = self.profiles.segment_members(name, cursor=cursor, limit=1000)
                found.update(profile_id for profile_id, _ in page.items)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        return found

    def write_recommendations(
        self,
        recommendations: Mapping[str, Sequence[tuple[str, float]]],
        *,
        model: str,
        version: int,
    ) -> OutputCounts:
        """Store each person's precomputed recommendations (`[(item_id, score)]`, best
        first), stamped with the model version and the time."""
        at = isoformat(self._clock())

        def change(_: ProfileWriter, profile: Profile) -> bool:
            items = recommendations[profile.profile_id]
            profile.recommendations = {
                "model": model,
                "version": version,
                "at": at,
                "items": [
                    {"item_id": item, "score": round(float(score), 6)} for item, score in items
                ],
            }
            return True

        changed, missing = self._each(recommendations, change)
        return OutputCounts(profiles=changed, missing=missing)


def _plain(value: Any) -> Any:
    """A JSON-friendly number (numpy scalars become Python floats, rounded)."""
    try:
        return round(float(value), 6)
    except (TypeError, ValueError):
        return value
