"""The collector: from raw messages to durably logged events.

Per message: size limit, validation against the Segment spec, normalization,
identity verification (a source that requires it rejects a `userId` without its
valid `context.user_hash`), the tracking plan (enforce rejects, flag marks), the
privacy policy (PII hashed, IP addresses truncated, look-alike emails refused:
collect.privacy), routing key. The
good ones are appended to the log in one call (durable, deduplicated on
`messageId`), the bad ones stored in the rejected store with their reasons;
only then does `collect` return, so a 200 built from its result means nothing
acknowledged can be lost.

`collect` is `prepare` (pure CPU: no I/O, never blocks) then `commit` (the
writes, which block until the log's group commit). Callers may run the two on
different threads: the HTTP handlers prepare on the event loop and commit on
the threadpool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from touchpoint.collect.events import (
    event_errors,
    normalize_fields,
    validate_event,
)
from touchpoint.collect.plan import TrackingPlan
from touchpoint.collect.privacy import PrivacyPolicy, may_hold_email
from touchpoint.collect.rejected.base import NewRejected, RejectedStore
from touchpoint.collect.shape import ShapeLimits, may_exceed, prune, shape_problem
from touchpoint.config.workspace import TouchpointConfig
from touchpoint.core.clock import isoformat, utcnow
from touchpoint.core.config_sources import SourceConfig
from touchpoint.core.errors import BadRequest, TouchpointError, Unavailable
from touchpoint.core.identity_verification import (
    IDENTITY_VERIFIED,
    IdentityNotVerified,
    verify_event_identity,
)
from touchpoint.core.metrics import Metrics
from touchpoint.log.base import EventLog, LogRecord
from touchpoint.profiles.pii import IdentityHasher

logger = logging.getLogger(__name__)

# A reply lists at most this many rejected (and flagged) events, with their total counts: a
# batch of 2,500 bad events must not make a reply of megabytes.
LISTED_PROBLEMS = 100


@dataclass(frozen=True, slots=True)
class EventProblem:
    """Why the message at `index` of the request was rejected or flagged."""

    index: int
    message_id: str | None
    reason: str
    errors: list[dict[str, str]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "messageId": self.message_id,
            "reason": self.reason,
            "errors": self.errors,
        }


@dataclass(frozen=True, slots=True)
class CollectResult:
    """What happened to each message of one request."""

    accepted: int
    duplicates: int
    rejected: list[EventProblem] = field(default_factory=list)
    flagged: list[EventProblem] = field(default_factory=list)
    accepted_indexes: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The reply: counts, and the first `LISTED_PROBLEMS` rejected and flagged events
        (in request order) with their reasons."""
        return {
            "success": not self.rejected,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected_count": len(self.rejected),
            "rejected": [problem.to_dict() for problem in self.rejected[:LISTED_PROBLEMS]],
            "flagged_count": len(self.flagged),
            "flagged": [problem.to_dict() for problem in self.flagged[:LISTED_PROBLEMS]],
        }


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """A request's messages checked and turned into log records; nothing written yet.

    `record_indexes[i]` is the index in the request of `records[i]`; `to_store` holds the
    rejected messages as the rejected store keeps them (PII hashed).
    """

    source: SourceConfig
    records: list[LogRecord]
    record_indexes: list[int]
    rejected: list[EventProblem]
    flagged: list[EventProblem]
    to_store: list[NewRejected]


@dataclass(frozen=True, slots=True)
class _Request:
    """What every message of one request shares (`received_text` formatted once)."""

    source: SourceConfig
    received_at: datetime
    received_text: str
    sent_at: datetime | None
    context: dict[str, Any] | None
    context_has_at: bool = False  # whether the batch context holds an `@` (see _prepare)


class Collector:
    """Turns requests of raw messages into logged events and rejected-store entries."""

    def __init__(
        self,
        config: TouchpointConfig,
        log: EventLog,
        rejected: RejectedStore,
        hasher: IdentityHasher,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._log = log
        self._rejected = rejected
        self._plan = TrackingPlan(config.tracking_plan)
        self._privacy = PrivacyPolicy(config, hasher)
        self._max_event_bytes = config.collect.max_event_bytes
        self._shape = ShapeLimits(
            max_depth=config.collect.max_depth,
            max_object_keys=config.collect.max_object_keys,
            max_array_items=config.collect.max_array_items,
        )
        self._metrics = metrics
        self._clock = clock

    def collect(
        self,
        source: SourceConfig,
        messages: Sequence[Any],
        *,
        sent_at: datetime | None = None,
        batch_context: dict[str, Any] | None = None,
        store_rejections: bool = True,
    ) -> CollectResult:
        """Validate, log the good messages and store the bad; durable when it returns."""
        prepared = self.prepare(source, messages, sent_at=sent_at, batch_context=batch_context)
        return self.commit(prepared, store_rejections=store_rejections)

    def prepare(
        self,
        source: SourceConfig,
        messages: Sequence[Any],
        *,
        sent_at: datetime | None = None,
        batch_context: dict[str, Any] | None = None,
    ) -> PreparedBatch:
        """Check every message and build its log record or its rejection. CPU only: no I/O,
        so it may run on an event loop; `commit` then does the writes.

        A `batch_context` over the shape limits is a BadRequest naming its path (it would be
        merged into every event)."""
        if batch_context is not None:
            # Merged key by key under each event's own context, so at the event's level 2.
            too_deep = shape_problem({"context": batch_context}, self._shape)
            if too_deep is not None:
                raise BadRequest(
                    f"{too_deep.path}: {too_deep.reason}", details={"field": too_deep.path}
                )
        received_at = self._clock()
        request = _Request(
            source,
            received_at,
            isoformat(received_at),
            sent_at,
            batch_context,
            batch_context is not None and may_hold_email(orjson.dumps(batch_context)),
        )
        records: list[LogRecord] = []
        record_indexes: list[int] = []
        rejected: list[EventProblem] = []
        flagged: list[EventProblem] = []
        to_store: list[NewRejected] = []
        for index, message in enumerate(messages):
            stored, problem = self._prepare(index, message, request)
            if stored is None:
                assert problem is not None
                rejected.append(problem)
                to_store.append(self._rejection(request, message, problem))
                continue
            if problem is not None:
                flagged.append(problem)
            records.append(
                LogRecord(
                    key=stored["anonymousId"] or stored["userId"],
                    message_id=stored["messageId"],
                    payload=orjson.dumps(stored),
                )
            )
            record_indexes.append(index)
        return PreparedBatch(source, records, record_indexes, rejected, flagged, to_store)

    def commit(self, prepared: PreparedBatch, *, store_rejections: bool = True) -> CollectResult:
        """Append the records (durable, deduplicated) and store the rejections; blocks until
        the log's group commit, so what it returns may be acknowledged."""
        records = prepared.records
        not_stored = 0
        try:
            result = self._log.append(records) if records else None
            if prepared.to_store and store_rejections:
                not_stored = self._rejected.add(prepared.to_store).count(None)
        except TouchpointError:
            raise
        except Exception as error:
            # Nothing was acknowledged: the client keeps the events and retries.
            logger.exception("collect: the stores refused a write of %d events", len(records))
            raise Unavailable("the event store cannot take writes now; retry shortly") from error
        accepted_indexes = tuple(
            prepared.record_indexes[position]
            for position, placed in enumerate(result.positions if result else ())
            if placed is not None
        )
        outcome = CollectResult(
            accepted=result.appended if result else 0,
            duplicates=result.duplicates if result else 0,
            rejected=prepared.rejected,
            flagged=prepared.flagged,
            accepted_indexes=accepted_indexes,
        )
        self._count(prepared.source, outcome)
        if not_stored:
            self._over_cap(prepared.source, not_stored)
        return outcome

    def _over_cap(self, source: SourceConfig, not_stored: int) -> None:
        """Rejections the store had no room for: refused all the same, counted, not kept."""
        logger.warning(
            "rejected store: source %r is at its cap; %d rejected events counted, not stored",
            source.name,
            not_stored,
        )
        if self._metrics is not None:
            self._metrics.rejected_not_stored.labels(source.name).inc(not_stored)

    def _prepare(
        self, index: int, message: Any, request: _Request
    ) -> tuple[dict[str, Any] | None, EventProblem | None]:
        """(stored event, None) | (stored event, flag) | (None, rejection)."""
        if not isinstance(message, dict):
            errors = [{"field": "<event>", "reason": "an event must be a JSON object"}]
            return None, EventProblem(index, None, "invalid", errors)
        raw_id = message.get("messageId")
        message_id = raw_id if isinstance(raw_id, str) else None
        try:
            encoded: bytes | None = orjson.dumps(message)
        except orjson.JSONEncodeError:  # nested past orjson's 254 levels, for one
            encoded = None
        if encoded is None or may_exceed(encoded, self._shape):
            shape = shape_problem(message, self._shape)
            if shape is not None:
                errors = [{"field": shape.path, "reason": shape.reason}]
                return None, EventProblem(index, message_id, "invalid", errors)
            if encoded is None:
                errors = [{"field": "<event>", "reason": "the event cannot be written as JSON"}]
                return None, EventProblem(index, message_id, "invalid", errors)
        size = len(encoded)
        if size > self._max_event_bytes:
            reason = f"the event is {size} bytes; the limit is {self._max_event_bytes}"
            return None, EventProblem(
                index, message_id, "too_large", [{"field": "<event>", "reason": reason}]
            )
        try:
            fields, extra = validate_event(message)
        except ValidationError as error:
            return None, EventProblem(index, message_id, "invalid", event_errors(error))
        stored = normalize_fields(
            fields,
            extra,
            source=request.source.name,
            received_at=request.received_at,
            batch_sent_at=request.sent_at,
            batch_context=request.context,
            received_text=request.received_text,
        )
        stored.pop(IDENTITY_VERIFIED, None)  # only the collector says so
        if request.source.verifies_events:
            refused = verify_event_identity(stored, request.source)
            if refused is not None:
                return None, EventProblem(
                    index, stored["messageId"], IdentityNotVerified.code, [refused]
                )
        problem = None
        mode = request.source.tracking_plan_mode
        if mode != "off":
            violations = self._plan.violations(stored)
            if violations:
                problem = EventProblem(index, stored["messageId"], "tracking_plan", violations)
                if mode == "enforce":
                    return None, problem
                stored["violations"] += [
                    f"{item['field']}: {item['reason']}" for item in violations
                ]
        # Identifiers refused (look-alike emails) come back. Whether the email scan has
        # anything to find is read off the bytes already encoded for the size check: the
        # stored event adds only the batch context and fields the server writes.
        unusable = self._privacy.apply(
            stored,
            may_hold_email=request.context_has_at or may_hold_email(encoded),
        )
        if unusable:
            return None, EventProblem(index, stored["messageId"], "invalid", unusable)
        return stored, problem

    def _rejection(self, request: _Request, message: Any, problem: EventProblem) -> NewRejected:
        event = message
        if isinstance(message, dict):
            # A private copy to hash PII in, cut at the depth limit: a message refused for
            # nesting too deeply must still be storable and readable.
            event = prune(message, self._shape.max_depth)
            self._privacy.apply(event, lenient=True)
        return NewRejected(
            source=request.source.name,
            message_id=problem.message_id,
            received_at=request.received_text,
            reason=problem.reason,
            errors=problem.errors,
            event=event,
        )

    def _count(self, source: SourceConfig, outcome: CollectResult) -> None:
        if self._metrics is None:
            return
        name = source.name
        if outcome.accepted:
            self._metrics.events_accepted.labels(name).inc(outcome.accepted)
        if outcome.duplicates:
            self._metrics.events_deduplicated.labels(name).inc(outcome.duplicates)
        if outcome.flagged:
            self._metrics.events_flagged.labels(name).inc(len(outcome.flagged))
        for problem in outcome.rejected:
            self._metrics.events_rejected.labels(name, problem.reason).inc()
