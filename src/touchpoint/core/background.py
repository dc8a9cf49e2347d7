"""A background loop: one daemon thread that repeats a step, backs off while it fails and
waits while it is idle.

Every long-running part of a process (a consumer of the log, the timer runner) is one of
these, so they start, stop, report failure and recover the same way. A subclass says what
one `step` does (and returns how much work it did) and how to `wait` when there was none
(a log consumer wakes on an append; a timer runner sleeps until the next timer is due).
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from touchpoint.core.clock import isoformat, utcnow

logger = logging.getLogger(__name__)

FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 5.0  # between retries while a store, the log or a server is down


class BackgroundLoop(abc.ABC):
    """Repeats `step()` in a daemon thread until stopped.

    A step that raises is logged, `failure` and `failing_since` say why and since when
    (stamped by `clock`), and the loop retries after a pause that doubles up to 5 s; the
    first step that goes through clears them. When a step does no work the loop calls
    `wait(seconds)` before the next one.
    """

    name: str = "background"

    def __init__(self, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._loop_clock = clock
        self._thread: threading.Thread | None = None
        self._stop_event: threading.Event | None = None
        self._running = False
        self._running_stop: threading.Event | None = None
        self.failure: str | None = None
        self.failing_since: str | None = None

    @abc.abstractmethod
    def step(self) -> int:
        """Do one unit of work; how much was done (0 when there was nothing to do)."""

    def wait(self, stop: threading.Event) -> None:
        """Pause after a step that did nothing (default: a quarter second, or until stopped)."""
        stop.wait(0.25)

    def pause(self, seconds: float) -> None:
        """Within a step: wait `seconds`, or until the loop is asked to stop (no wait when
        the step was called directly rather than by the loop)."""
        if self._running_stop is not None:
            self._running_stop.wait(seconds)

    def stopped(self) -> None:  # noqa: B027 - an optional hook
        """Called in the loop's thread once it stops (leave a group, release leases)."""

    # -- running ------------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event) -> None:
        """Repeat `step` until `stop` is set (in the caller's thread)."""
        self._running = True
        self._running_stop = stop
        try:
            self._repeat(stop)
        finally:
            self._running = False
            self.stopped()

    def _repeat(self, stop: threading.Event) -> None:
        backoff = FIRST_BACKOFF_SECONDS
        while not stop.is_set():
            try:
                done = self.step()
            except Exception as error:
                logger.exception("%s failed; retrying in %.1f s", self.name, backoff)
                self.failure = f"{type(error).__name__}: {error}"[:500]
                if self.failing_since is None:
                    self.failing_since = isoformat(self._loop_clock())
                stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            if self.failure is not None:
                logger.warning("%s recovered from: %s", self.name, self.failure)
                self.failure = self.failing_since = None
            backoff = FIRST_BACKOFF_SECONDS
            if done == 0:
                self.wait(stop)

    @property
    def failing(self) -> bool:
        """Whether the last step failed: `failure` says why, `failing_since` since when."""
        return self.failure is not None

    @property
    def running(self) -> bool:
        """Whether the loop runs now (in its thread or the caller's)."""
        return self._running

    def start(self) -> None:
        """Run in a daemon thread (no-op if it already runs)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop_event = threading.Event()
        self._running = True  # so a health check right after start() says so
        self._thread = threading.Thread(
            target=self.run_forever, args=(self._stop_event,), name=self.name, daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Ask the thread to stop after its current step, and wait for it."""
        if self._stop_event is not None:
            self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def idle(self) -> bool:
        """Whether there is nothing left to do now (a subclass says what that means)."""
        return True

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until `idle()` (for tests and the demo); False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        while not self.idle():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True
