"""Durable timers: "do this for that person at that time", kept until done.

Journeys ("wait 24 h, then..."), retries with backoff and scheduled sends need timers that
survive a restart and fire once in effect. A `TimerStore` holds them; a `TimerRunner`
(`timers/runner.py`) claims the due ones with a lease, fires each through the handler of its
kind and completes it. Firing is at least once (a process killed after a handler's effect
but before `complete` fires that timer again once its lease expires), so handlers are
idempotent, keyed by the timer's key; together with remembered keys (a replayed `schedule`
of a key already fired does not schedule it again) that makes timers exactly once in
effect (docs/adr/0014-durable-timers.md).

A timer's life: `pending` (waiting for `due_at`, or leased to an owner while it fires) ->
`fired` (completed by its holder), `cancelled`, or `failed` (its attempts ran out; kept for
inspection). Every "now" comes from the workspace clock the store was given.
"""

from __future__ import annotations

import abc
import builtins
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson

from touchpoint.core.clock import Clock
from touchpoint.core.config_stores import StoreConfig
from touchpoint.core.errors import InvalidInput
from touchpoint.core.leftovers import Leftover

if TYPE_CHECKING:
    from touchpoint.core.postgres import Postgres

TimerState = Literal["pending", "fired", "cancelled", "failed"]
FINISHED_STATES: tuple[TimerState, ...] = ("fired", "cancelled", "failed")

DEFAULT_TIMERS_FILE = "timers.sqlite3"
DEFAULT_MAX_ATTEMPTS = 10
MAX_KEY_LENGTH = 512
MAX_ERROR_LENGTH = 1000
MAX_CLAIM = 1000


@dataclass(frozen=True, slots=True)
class Timer:
    """One timer as stored.

    `key` names it (unique in the store, chosen by the caller so that scheduling twice is
    harmless: `journey:welcome:<profile>:step2`); `kind` selects the handler that fires it;
    `payload` is the handler's input (a JSON object); `profile_id`, when set, lets an
    erasure delete the person's timers. `attempts` counts the claims so far (a fire that
    crashed its process counts too); `lease_owner`/`lease_until` name who holds it while it
    fires. `finished_at` is when it left `pending`; `last_error` why its last attempt failed.
    Times are aware UTC, to the millisecond.
    """

    key: str
    kind: str
    due_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)
    profile_id: str | None = None
    attempts: int = 0
    state: TimerState = "pending"
    lease_owner: str | None = None
    lease_until: datetime | None = None
    scheduled_at: datetime | None = None
    finished_at: datetime | None = None
    last_error: str | None = None


class TimerStore(abc.ABC):
    """Per-person timers that survive restarts, claimed by runners under a lease.

    Rules every backend keeps (the contract suite, `tests/contract/test_timer_store.py`):

    - **One timer per key, and the first schedule wins.** Scheduling a key that is pending
      keeps the stored timer as it is (its due time, payload and attempts): a schedule
      replayed after a crash (a consumer re-reading its log) often computes its due time
      from "now", and must not postpone the timer or reset its attempts. To move a timer,
      cancel it and schedule a new key.
    - **Finished keys are remembered** (fired, cancelled, failed) until `purge` removes
      them, so a replayed schedule never fires a key again.
    - **A claim is a lease.** `claim_due` hands each due timer to one owner until the lease
      ends; a timer whose holder died is claimed again once its lease has expired (its
      attempt counted). Only the current holder may `complete` or `release` it.
    - **Attempts are bounded.** A timer claimed `max_attempts` times that was never
      completed becomes `failed` (kept for inspection) instead of being fired again.
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS

    @abc.abstractmethod
    def schedule(
        self,
        key: str,
        kind: str,
        due_at: datetime,
        payload: dict[str, Any] | None = None,
        profile_id: str | None = None,
    ) -> Timer:
        """Store a pending timer, unless `key` is known already (see the class rules); the
        timer stored under `key` afterwards."""

    @abc.abstractmethod
    def cancel(self, key: str) -> bool:
        """Cancel the timer (pending, leased or not, or failed); whether it was. A holder
        firing it now finds that its `complete` returns False."""

    @abc.abstractmethod
    def claim_due(self, owner: str, lease_seconds: float, limit: int) -> builtins.list[Timer]:
        """Up to `limit` pending timers due now (`due_at <= now`) that nobody holds (never
        claimed, or their lease expired), leased to `owner` for `lease_seconds`, each
        attempt counted, earliest due first. Timers whose attempts ran out become `failed`
        instead."""

    @abc.abstractmethod
    def complete(self, key: str, owner: str) -> bool:
        """Mark a fired timer done, if `owner` holds it (its lease may have run out, as long
        as nobody claimed it since); whether it did."""

    @abc.abstractmethod
    def release(
        self,
        key: str,
        owner: str,
        retry_at: datetime,
        *,
        error: str | None = None,
        attempt_failed: bool = True,
    ) -> bool:
        """Give a timer `owner` holds back, due again at `retry_at` (a failed fire, with
        backoff); whether `owner` held it. With `attempt_failed`, a timer whose attempts
        reached `max_attempts` becomes `failed` instead. Without it (the runner had no
        handler for the kind) the claim's attempt is given back."""

    @abc.abstractmethod
    def next_due(self) -> datetime | None:
        """When the next pending timer can be claimed (its due time, or its lease's end
        while someone holds it); None when nothing is pending."""

    @abc.abstractmethod
    def get(self, key: str) -> Timer | None:
        """The timer stored under `key`, in any state."""

    @abc.abstractmethod
    def purge(self, done_before: datetime) -> int:
        """Forget fired and cancelled timers finished before `done_before` (retention of
        remembered keys); how many. Pending and failed timers are kept."""

    @abc.abstractmethod
    def erase_profiles(self, profile_ids: Collection[str]) -> int:
        """Delete every timer of these profiles, in any state; how many."""

    def scrub(self) -> builtins.list[Leftover]:
        """After an erasure: make the backend overwrite what the erased rows left in its
        files, where it can; what may still hold their bytes (see `core/leftovers.py`)."""
        return []

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections."""


# -- what every backend checks and stores the same way ---------------------------------------


def to_millisecond(moment: datetime) -> datetime:
    """`moment` as aware UTC, truncated to the millisecond (what every backend stores)."""
    if not isinstance(moment, datetime):
        raise InvalidInput("a timer's time must be a datetime", details={"field": "due_at"})
    if moment.tzinfo is None:
        raise InvalidInput("a timer's time must carry its timezone", details={"field": "due_at"})
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def check_text(value: object, name: str, *, optional: bool = False) -> None:
    """A key, kind, owner or profile id: non-empty text of at most `MAX_KEY_LENGTH`
    characters, without NUL (which PostgreSQL text cannot hold)."""
    if value is None and optional:
        return
    if not isinstance(value, str) or not value or len(value) > MAX_KEY_LENGTH or "\x00" in value:
        raise InvalidInput(
            f"{name} must be text of 1 to {MAX_KEY_LENGTH} characters without NUL",
            details={"field": name},
        )


def encode_payload(payload: dict[str, Any] | None) -> str:
    """The payload as JSON text; refused unless it is a JSON object of JSON values."""
    if payload is None:
        return "{}"
    if not isinstance(payload, dict):
        raise InvalidInput("a timer's payload must be a JSON object", details={"field": "payload"})
    try:
        return orjson.dumps(payload).decode("utf-8")
    except TypeError as error:
        raise InvalidInput(
            f"a timer's payload must be JSON: {error}", details={"field": "payload"}
        ) from None


def decode_payload(text: str) -> dict[str, Any]:
    """The payload stored as `encode_payload` wrote it."""
    value = orjson.loads(text)
    assert isinstance(value, dict)
    return value


def check_claim(owner: str, lease_seconds: float, limit: int) -> None:
    """A claim's arguments: an owner, a positive finite lease and 1 to `MAX_CLAIM` timers."""
    check_text(owner, "owner")
    if not (isinstance(lease_seconds, int | float) and math.isfinite(lease_seconds)):
        raise InvalidInput("lease_seconds must be a number", details={"field": "lease_seconds"})
    if lease_seconds <= 0:
        raise InvalidInput("lease_seconds must be positive", details={"field": "lease_seconds"})
    if not 1 <= limit <= MAX_CLAIM:
        raise InvalidInput(f"limit must be 1 to {MAX_CLAIM}", details={"field": "limit"})


def error_text(error: str | None) -> str | None:
    """A failure's message as stored: at most `MAX_ERROR_LENGTH` characters, no NUL."""
    if error is None:
        return None
    return error.replace("\x00", "\ufffd")[:MAX_ERROR_LENGTH]


def split_exhausted(
    candidates: Sequence[tuple[str, int]], max_attempts: int
) -> tuple[builtins.list[str], builtins.list[str]]:
    """Of due `(key, attempts)`, the keys to claim and the keys whose attempts ran out."""
    claim = [key for key, attempts in candidates if attempts < max_attempts]
    exhausted = [key for key, attempts in candidates if attempts >= max_attempts]
    return claim, exhausted


EXHAUSTED_ERROR = "claimed {attempts} times without completing (its holder died or hung)"


def build_timer_store(
    config: StoreConfig,
    data_dir: Path,
    postgres: Postgres | None = None,
    *,
    clock: Clock,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> TimerStore:
    """The timer store the configuration names: PostgreSQL when `postgres` is given, else
    SQLite under `data_dir` (`timers.sqlite3`, or `config.path`); "now" is `clock`'s."""
    if postgres is not None:
        from touchpoint.timers.postgres import PostgresTimerStore

        return PostgresTimerStore(postgres, clock=clock, max_attempts=max_attempts)
    from touchpoint.timers.sqlite import SqliteTimerStore

    path = Path(config.path) if config.path else data_dir / DEFAULT_TIMERS_FILE
    return SqliteTimerStore(path, clock=clock, max_attempts=max_attempts)
