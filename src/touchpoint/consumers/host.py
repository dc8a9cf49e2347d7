"""The loops one process runs beside its requests: log consumers, the timer runner.

`serve` (embedded) and `worker` host the same loops: every consumer of the workspace
(profiles, outcomes, the warehouse copy when it is on) and whatever other
`BackgroundLoop` a part adds (the durable timer runner). Each runs in its own thread, so
a slow one never delays another; the host only starts, stops and reports them together.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from touchpoint.consumers.consumer import LogConsumer
from touchpoint.core.background import BackgroundLoop


class LoopHost:
    """Several background loops started, stopped and watched as one, in the order given."""

    def __init__(self, loops: Sequence[BackgroundLoop] = ()) -> None:
        self._loops: list[BackgroundLoop] = []
        for loop in loops:
            self.add(loop)

    def add(self, loop: BackgroundLoop) -> None:
        """Host one more loop (its name must be new in this host)."""
        if any(existing.name == loop.name for existing in self._loops):
            raise ValueError(f"a loop named {loop.name} is already hosted")
        self._loops.append(loop)

    def __iter__(self) -> Iterator[BackgroundLoop]:
        return iter(tuple(self._loops))

    def __len__(self) -> int:
        return len(self._loops)

    def consumers(self) -> list[LogConsumer]:
        """The hosted log consumers, in order."""
        return [loop for loop in self._loops if isinstance(loop, LogConsumer)]

    def consumer(self, group: str) -> LogConsumer:
        """The hosted consumer of `group` (KeyError when there is none)."""
        for consumer in self.consumers():
            if consumer.group == group:
                return consumer
        raise KeyError(f"no consumer of group {group} is hosted")

    def start(self) -> None:
        """Start every loop's thread (a loop already running is left alone)."""
        for loop in self._loops:
            loop.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop every loop after its current step, in reverse order (followers first)."""
        for loop in reversed(self._loops):
            loop.stop(timeout)

    @property
    def running(self) -> bool:
        """Whether any hosted loop runs now."""
        return any(loop.running for loop in self._loops)

    def failing(self) -> list[BackgroundLoop]:
        """The loops whose last step failed (each says why in `failure`)."""
        return [loop for loop in self._loops if loop.failing]

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every loop is idle (for tests and the demo); False after `timeout`."""
        deadline = time.monotonic() + timeout
        return all(loop.wait_idle(max(0.0, deadline - time.monotonic())) for loop in self._loops)
