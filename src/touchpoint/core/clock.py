"""Time, ids and durations: the few primitives every area shares."""

from __future__ import annotations

import math
import os
import re
import threading
import time
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}

MAX_DURATION_DAYS = 36500
"""The longest duration (100 years): every duration is subtracted from or added to a time
(windows, caps, dedup), and a longer one takes it outside the calendar (OverflowError)."""
_MAX_DURATION_SECONDS = MAX_DURATION_DAYS * 86400.0


def utcnow() -> datetime:
    """The wall clock's time, timezone-aware UTC. Code of a workspace asks the workspace's
    `Clock` instead, so that tests (and replays) can fix the date."""
    return datetime.now(UTC)


class Clock:
    """The workspace's time: one object handed to every part that asks what time it is
    (collection's `receivedAt`, windowed features and segments, decisions and caps, erasure
    records, the warehouse copy's flush policy, background jobs, timers).

    `now()` is aware UTC, `time()` the same moment in epoch seconds, and `monotonic()` a
    clock for intervals that never runs backwards. This one is the system's clock; tests use
    `Clock.starting_at` (a fixed date that then runs at real speed) or `ManualClock`.
    """

    def now(self) -> datetime:
        return datetime.now(UTC)

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    @staticmethod
    def starting_at(moment: datetime) -> Clock:
        """A clock that reads `moment` now and then runs at real speed: what a test needs
        when it writes fixed dates and also waits on real intervals (leases, flushes)."""
        return OffsetClock(moment - datetime.now(UTC))


class OffsetClock(Clock):
    """The system's clock shifted by a fixed `offset` (the intervals are the system's)."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset
        self._seconds = offset.total_seconds()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def time(self) -> float:
        return time.time() + self._seconds


class ManualClock(Clock):
    """A clock that moves only when told (`advance`, `set`): for tests of time itself
    (windows that close, caps that reset, timers that fire)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        self._now = start.astimezone(UTC)
        self._monotonic = 0.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return self._now

    def time(self) -> float:
        return self._now.timestamp()

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, delta: timedelta | float) -> datetime:
        """Move forward by `delta` (a timedelta or seconds); the new time."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        if step < timedelta(0):
            raise ValueError("a clock does not run backwards")
        with self._lock:
            self._now += step
            self._monotonic += step.total_seconds()
            return self._now

    def set(self, moment: datetime) -> None:
        """Jump to `moment` (not before the current time)."""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        self.advance(moment.astimezone(UTC) - self._now)


SYSTEM_CLOCK = Clock()


def new_id() -> str:
    """A unique id, 32 hex characters: 48 bits of Unix milliseconds then 80 random bits (the
    layout of UUIDv7, without its version bits). Ids made later sort later, so the B-tree
    indexes that key on them (profiles, decisions, jobs) take inserts at their right edge
    instead of dirtying a random page each time; 80 random bits keep ids made in the same
    millisecond apart."""
    return f"{time.time_ns() // 1_000_000:012x}{int.from_bytes(os.urandom(10)):020x}"


def parse_duration(text: str | int | float) -> timedelta:
    """Parse `30d`, `24h`, `15m`, `10s`, `500ms`, `2w` (a bare number is seconds).

    Raises ValueError with the reason for anything else, including a duration longer than
    `MAX_DURATION_DAYS`: the result can always be added to or subtracted from a time.
    """
    if isinstance(text, bool):
        raise ValueError("a duration is a number with a unit such as 30d, 24h or 15m")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        seconds = float(text)
    elif isinstance(text, str):
        match = _DURATION.match(text)
        if not match:
            raise ValueError(f"{text!r} is not a duration such as 30d, 24h, 15m, 10s or 500ms")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError("a duration is a number with a unit such as 30d, 24h or 15m")
    if not math.isfinite(seconds) or seconds > _MAX_DURATION_SECONDS:
        raise ValueError(f"a duration may be at most {MAX_DURATION_DAYS}d (100 years)")
    return timedelta(seconds=seconds)


def parse_timestamp(value: object) -> datetime | None:
    """Parse an ISO-8601 timestamp (or epoch seconds) into aware UTC; None if it is not one."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


_ZERO = timedelta(0)


def isoformat(moment: datetime) -> str:
    """Canonical text form of a time: UTC, millisecond precision, `Z` suffix.

    Canonical form matters: stored timestamps compare as strings in SQL. It is on the
    ingest hot path (every event), so a UTC time has its fields printed directly, at
    twice the speed of `strftime` (which also does not pad years below 1000).
    """
    if moment.utcoffset() != _ZERO:
        moment = moment.astimezone(UTC)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031 - twice an f-string's speed
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond // 1000,
    )
