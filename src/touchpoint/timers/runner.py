"""The timer runner: a background loop that fires due timers through a handler per kind.

Each step claims a batch of due timers with a lease (owner: this process's member name),
fires each through the handler of its kind and completes it. A handler that raises gets its
timer released with exponential backoff (after the store's `max_attempts` it is `failed`);
a kind this process has no handler for is released for later without spending an attempt
(an older worker during a rolling deploy leaves it to one that knows it). A process killed
mid-fire leaves its timers leased; once the leases expire another runner fires them again,
which is why handlers are idempotent, keyed by the timer's key.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Protocol

from touchpoint.core.background import BackgroundLoop
from touchpoint.core.clock import Clock
from touchpoint.log.coordination import member_name
from touchpoint.timers.base import Timer, TimerStore

logger = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 60.0
DEFAULT_BATCH = 50
FIRST_RETRY_SECONDS = 10.0
MAX_RETRY_SECONDS = 3600.0
UNKNOWN_KIND_RETRY_SECONDS = 60.0
MAX_WAIT_SECONDS = 1.0


class TimerHandler(Protocol):
    """Fires the timers of one `kind`. `fire` must be idempotent, keyed by `timer.key`: a
    timer is fired at least once, and again if its process died before completing it (or
    its lease ran out first). Raising says "not done": the timer is retried with backoff."""

    @property
    def kind(self) -> str: ...

    def fire(self, timer: Timer) -> None: ...


class TimerRunner(BackgroundLoop):
    """Fires due timers from `store` through `handlers` (one per kind), on `clock`.

    `lease_seconds` must exceed the time a batch of `batch` fires takes (plus clock skew
    between processes): a timer whose lease ran out before its turn in the batch is given
    back unfired rather than fired while another runner may hold it. Retries wait
    `first_retry_seconds`, doubling per attempt up to `max_retry_seconds`. `wait` sleeps
    until the next timer is due, at most `max_wait_seconds`, so a timer scheduled meanwhile
    by another part or process (earlier than the one waited for) is seen soon.
    """

    name = "timers"

    def __init__(
        self,
        store: TimerStore,
        handlers: Iterable[TimerHandler],
        *,
        clock: Clock,
        owner: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        batch: int = DEFAULT_BATCH,
        first_retry_seconds: float = FIRST_RETRY_SECONDS,
        max_retry_seconds: float = MAX_RETRY_SECONDS,
        unknown_kind_retry_seconds: float = UNKNOWN_KIND_RETRY_SECONDS,
        max_wait_seconds: float = MAX_WAIT_SECONDS,
    ) -> None:
        super().__init__(clock=clock.now)
        self.handlers: dict[str, TimerHandler] = {}
        for handler in handlers:
            self.register(handler)
        if lease_seconds <= 0 or batch < 1 or first_retry_seconds < 0 or max_wait_seconds <= 0:
            raise ValueError("lease, batch and wait must be positive, retries not negative")
        self.store = store
        self.clock = clock
        self.owner = owner or member_name()
        self.lease_seconds = lease_seconds
        self.batch = batch
        self.first_retry_seconds = first_retry_seconds
        self.max_retry_seconds = max_retry_seconds
        self.unknown_kind_retry_seconds = unknown_kind_retry_seconds
        self.max_wait_seconds = max_wait_seconds
        self.fired = 0
        self.failed_fires = 0
        self._busy = False

    def register(self, handler: TimerHandler) -> None:
        """Fire timers of `handler.kind` through `handler` from now on (one per kind)."""
        if handler.kind in self.handlers:
            raise ValueError(f"two timer handlers for kind {handler.kind!r}")
        self.handlers[handler.kind] = handler

    def step(self) -> int:
        """Claim a batch of due timers and fire each; how many were claimed."""
        due = self.store.next_due()
        if due is None or due > self.clock.now():
            return 0  # a read, not the claim's write transaction, while nothing is due
        self._busy = True
        try:
            timers = self.store.claim_due(self.owner, self.lease_seconds, self.batch)
            for timer in timers:
                self._fire(timer)
            return len(timers)
        finally:
            self._busy = False

    def _fire(self, timer: Timer) -> None:
        now = self.clock.now()
        if timer.lease_until is not None and now >= timer.lease_until:
            # Another runner may hold it by now: give it back (if still ours), unfired.
            self.store.release(timer.key, self.owner, now, attempt_failed=False)
            logger.warning("timer %s: its lease ran out before its turn; given back", timer.key)
            return
        handler = self.handlers.get(timer.kind)
        if handler is None:
            retry_at = now + timedelta(seconds=self.unknown_kind_retry_seconds)
            self.store.release(
                timer.key,
                self.owner,
                retry_at,
                error=f"no handler for kind {timer.kind!r} in {self.owner}",
                attempt_failed=False,
            )
            logger.warning("timer %s: no handler for kind %r; retried later", timer.key, timer.kind)
            return
        try:
            handler.fire(timer)
        except Exception as error:
            self.failed_fires += 1
            retry_at = self.clock.now() + self.backoff(timer.attempts)
            logger.warning(
                "timer %s (%s) failed attempt %d: %s", timer.key, timer.kind, timer.attempts, error
            )
            self.store.release(
                timer.key, self.owner, retry_at, error=f"{type(error).__name__}: {error}"
            )
            return
        if self.store.complete(timer.key, self.owner):
            self.fired += 1
        else:
            logger.warning("timer %s fired, but it was cancelled or claimed again", timer.key)

    def backoff(self, attempts: int) -> timedelta:
        """How long a timer waits after its `attempts`-th attempt failed."""
        exponent = min(max(attempts - 1, 0), 60)
        return timedelta(
            seconds=min(self.first_retry_seconds * 2**exponent, self.max_retry_seconds)
        )

    def seconds_to_next(self) -> float:
        """How long `wait` sleeps now: until the next timer is due, at most
        `max_wait_seconds` (0 when one is due already)."""
        next_due: datetime | None = self.store.next_due()
        if next_due is None:
            return self.max_wait_seconds
        seconds = (next_due - self.clock.now()).total_seconds()
        return min(max(seconds, 0.0), self.max_wait_seconds)

    def wait(self, stop: threading.Event) -> None:
        """Sleep until the next timer is due (capped), or until stopped."""
        stop.wait(self.seconds_to_next())

    def idle(self) -> bool:
        """Whether no fire is under way and no timer is due now."""
        if self._busy:
            return False
        next_due = self.store.next_due()
        return not self._busy and (next_due is None or next_due > self.clock.now())
