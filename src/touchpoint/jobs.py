"""Background jobs of a long-running process (`serve` with its processor, `worker`).

A job is a name, an interval and a function. One daemon thread runs every job that is
due, one after another, so jobs never compete with each other for the process's cores
(the stream processor has its own thread). A job that raises is logged and runs again
at its next turn; a slow job delays the others, never the processor.

Jobs that must run once per workspace rather than once per process (training) take a
lease or a lock inside their function; this runner only keeps time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass
class PeriodicJob:
    """`run` every `interval` seconds; `last_run` and `failures` for status."""

    name: str
    interval: float
    run: Callable[[], object]
    next_at: float = 0.0
    last_run: float = 0.0
    failures: int = 0
    runs: int = field(default=0)


class JobRunner:
    """Runs periodic jobs in one daemon thread; see the module docstring."""

    def __init__(self, jobs: list[PeriodicJob], *, clock: Callable[[], float] = time.monotonic):
        self.jobs = jobs
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (no-op when there is nothing to run or it already runs)."""
        if not self.jobs or (self._thread is not None and self._thread.is_alive()):
            return
        now = self._clock()
        for job in self.jobs:
            job.next_at = now + job.interval
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="touchpoint-jobs", daemon=True)
        self._thread.start()

    def run_due(self) -> int:
        """Run every job that is due now; how many ran."""
        ran = 0
        for job in self.jobs:
            if self._stop.is_set():
                break
            if self._clock() < job.next_at:
                continue
            try:
                job.run()
            except Exception:
                job.failures += 1
                logger.exception("background job %s failed; it runs again later", job.name)
            job.runs += 1
            ran += 1
            job.last_run = time.time()
            job.next_at = self._clock() + job.interval
        return ran

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_due()
            due = min(job.next_at for job in self.jobs)
            self._stop.wait(max(0.05, due - self._clock()))

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the running job finishes, and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
