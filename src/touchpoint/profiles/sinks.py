"""Sinks: what else the stream processor feeds besides profiles.

After a batch's profile transaction commits and before the log position is
committed, the processor hands every entry of the batch to each sink. A crash in
between re-delivers the batch, so a sink must be idempotent (key its writes by
message id or log position). A sink that raises makes the processor retry the
batch later (the profile side of it is then a replay, which changes nothing).

Entries of erased people never reach a sink; entries without analytics consent
arrive anonymized, with no profile.

The interface lives with the profile, below the processor (`stream`), so an area that
implements a sink (decide's outcome joiner) depends on what a sink receives, not on the
pipeline that feeds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from touchpoint.log.base import LogEntry


@dataclass(frozen=True, slots=True)
class AppliedEvent:
    """A log entry as the processor handled it.

    `event`: the decoded event (anonymized when the person has no analytics consent);
    `profile_id`: the profile it was applied to, None when it reached no profile (no
    identity, no consent); `duplicate`: it had already been applied (a replay), so a sink
    that counts must not count it again unless its own writes are idempotent.
    """

    entry: LogEntry
    event: dict[str, Any]
    profile_id: str | None
    duplicate: bool = False


class EventSink(Protocol):
    """Receives every batch the processor applied."""

    name: str

    def write(self, events: Sequence[AppliedEvent]) -> None:
        """Take a batch; idempotent (the same batch may come again after a crash)."""
