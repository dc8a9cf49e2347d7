"""What a consumer of the event log runs: a handler.

A handler names itself (`name`, for logs and metrics) and the consumer group whose
committed positions record its progress (`group`); every handler has its own group, so
a slow one (an SMTP call, a webhook) never holds another back. `handle(entries)` takes a
batch in offset order within each partition and must be idempotent: a crash between
`handle` returning and the consumer committing hands the same entries over again.

What `handle` raises decides what happens to the batch:

- `core.errors.Unavailable`: a store cannot take the writes now. Nothing is skipped; the
  consumer backs off and hands the same batch over again.
- anything else: the batch holds a poison entry. The consumer re-runs it per partition,
  then one entry at a time, and skips (logs and counts) only the entries that still fail.

`follows` names another group: the handler then sees only entries below that group's
committed position. The warehouse copy and the outcome joiner follow `profiles`, so they
see the log as the profile pipeline's gates left it (erased people's events gone, events
without analytics consent anonymized).

Two optional hooks, each a protocol of its own so a handler states only what it needs:
`Ticking` (something to do every `tick_seconds` whatever arrives: the time-dependent
segment sweep) and `Accumulating` (a handler that writes better in large batches: the
consumer leaves entries in the log until `Accumulate` says there are enough or the oldest
has waited long enough; the log is the buffer, nothing is held in memory).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from touchpoint.log.base import LogEntry


@runtime_checkable
class Handler(Protocol):
    """Receives the entries of the log for one consumer group; see the module docstring."""

    @property
    def name(self) -> str:
        """What the handler is called in logs, metrics and thread names."""

    @property
    def group(self) -> str:
        """The consumer group whose committed positions record this handler's progress."""

    @property
    def follows(self) -> str | None:
        """A group this one stays behind (reads only below its committed position), or None."""

    def handle(self, entries: Sequence[LogEntry]) -> None:
        """Apply a batch, idempotently; `Unavailable` = retry it all later, any other error
        = a poison entry in it."""


@runtime_checkable
class Ticking(Protocol):
    """A handler with periodic work of its own (run in the consumer's thread, between
    batches, never concurrently with `handle`)."""

    @property
    def tick_seconds(self) -> float:
        """How often `tick` runs."""

    def tick(self) -> int:
        """Do the periodic work; how much changed (for logs)."""


@dataclass(frozen=True, slots=True)
class Accumulate:
    """When an accumulating handler wants its entries: once at least `min_entries` are
    pending, or the oldest pending one was appended `max_age_seconds` ago. Until then the
    consumer does not read them (a step that waits does no work)."""

    min_entries: int
    max_age_seconds: float

    def __post_init__(self) -> None:
        if self.min_entries < 1 or self.max_age_seconds < 0:
            raise ValueError("accumulate needs min_entries >= 1 and max_age_seconds >= 0")


@runtime_checkable
class Accumulating(Protocol):
    """A handler that writes better in large batches (large files under a trickle)."""

    @property
    def accumulate(self) -> Accumulate:
        """When the handler wants its pending entries."""
