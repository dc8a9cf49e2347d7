"""Erasure: a person removed from every store this system has, for good.

`Eraser.erase` finds the person by any identifier and erases, in this order: the profile
store (profile, everything merged into it, identity graph, timeline, segments, lineage),
writing tombstones in the same transaction, then the event log, the decision log, the
rejected store, the durable timers (a journey's pending steps), the warehouse and the
stored models (recommenders forget the person's
profile ids), and finally records the job in the audit log. Tombstones come first so
that an event processed meanwhile (a late event, a replay, a retry) is dropped by the
stream processor instead of rebuilding the person from what is not yet erased.

Deleting rows is not the end of it: their bytes can outlive them in the stores' files.
Every store then scrubs (`scrub`: SQLite files are opened with secure delete, so deleted
rows are zeroed, and their write-ahead logs are truncated; PostgreSQL tables are vacuumed)
and the job's `leftovers` say where bytes may still remain and until when (see
docs/adr/0005-consent-and-erasure.md).

The job record names the person only by their tombstone hash, never by an identifier.
Asking again (by the same or another of their identifiers) returns the same job, marked
`already_erased`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from touchpoint.audit.base import AuditLog
from touchpoint.collect.rejected.base import RejectedStore
from touchpoint.core.clock import isoformat, new_id, utcnow
from touchpoint.core.errors import NotFound
from touchpoint.core.leftovers import Leftover
from touchpoint.core.metrics import Metrics
from touchpoint.decide.decision_log.base import DecisionLog
from touchpoint.log.base import EventLog
from touchpoint.profiles.lookup import PersonFinder
from touchpoint.profiles.model import Identity
from touchpoint.timers.base import TimerStore

if TYPE_CHECKING:
    from touchpoint.warehouse.store import Warehouse

logger = logging.getLogger(__name__)

ERASE_ACTION = "profile.erase"
# Identity kinds whose raw value is the event log's routing key (see collect.ingest).
_ROUTING_SOURCES = frozenset({"user_id", "anonymous_id"})


@dataclass(frozen=True, slots=True)
class ErasureJob:
    """What one erasure did, where: the record the API returns and the audit log keeps.

    `subject`: the tombstone hash of the identifier the caller named (no plain identifier).
    `erased`: `profile_store` (rows per kind), `event_log` (records), `decision_log`
    (`decisions`, `outcomes`), `rejected_store` (events), `warehouse` (rows per table) and
    `models` (`versions_rewritten`: stored recommenders that forgot the person).
    `leftovers`: where bytes of the erased rows may still be on disk after every store
    scrubbed, and until when (`store`, `where`, `until`; empty when nowhere).
    `already_erased`: this call found the person erased before and returns that job again.
    """

    job_id: str
    status: str
    requested_at: str
    completed_at: str
    subject: str
    profile_ids: tuple[str, ...]
    erased: dict[str, Any] = field(default_factory=dict)
    leftovers: tuple[dict[str, str], ...] = ()
    already_erased: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what the API returns and the audit entry's details hold)."""
        return {
            "job_id": self.job_id,
            "status": self.status,
            "requested_at": self.requested_at,
            "completed_at": self.completed_at,
            "subject": self.subject,
            "profile_ids": list(self.profile_ids),
            "erased": self.erased,
            "leftovers": [dict(item) for item in self.leftovers],
            "already_erased": self.already_erased,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErasureJob:
        """Rebuild a job from `to_dict` output (an audit entry's details)."""
        return cls(
            job_id=str(data["job_id"]),
            status=str(data.get("status", "completed")),
            requested_at=str(data.get("requested_at", "")),
            completed_at=str(data.get("completed_at", "")),
            subject=str(data.get("subject", "")),
            profile_ids=tuple(str(item) for item in data.get("profile_ids", ())),
            erased=dict(data.get("erased") or {}),
            leftovers=tuple(
                {str(k): str(v) for k, v in item.items()} for item in data.get("leftovers", ())
            ),
            already_erased=bool(data.get("already_erased", False)),
        )


class Eraser:
    """Erases people from every store and audits it; see the module docstring.

    One erasure at a time per process (a lock): erasures are rare, and two requests for the
    same person must not both do the work.
    """

    def __init__(
        self,
        *,
        log: EventLog,
        people: PersonFinder,
        warehouse: Warehouse | None = None,
        decisions: DecisionLog,
        rejected: RejectedStore,
        audit: AuditLog,
        timers: TimerStore | None = None,
        forget_in_models: Callable[[Sequence[str]], int] | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.log = log
        self.people = people
        self.profiles = people.profiles
        self.warehouse = warehouse
        self.decisions = decisions
        self.rejected = rejected
        self.audit = audit
        self.timers = timers
        self.forget_in_models = forget_in_models
        self.metrics = metrics
        self._clock = clock
        self._tombstone_key: Callable[[Identity], str] = people.tombstone_key
        self._routing_kinds = frozenset(
            kind.name for kind in people.resolver.kinds if kind.source in _ROUTING_SOURCES
        )
        self._lock = threading.Lock()

    def erase(self, kind: str, value: str, *, actor: str) -> ErasureJob:
        """Erase the person with identifier `kind`/`value` (as a caller writes it: PII is
        hashed here). Idempotent: a person already erased gets their job again, with
        `already_erased` set. Raises NotFound for an undeclared kind or an unknown person."""
        identity = self.people.identity(kind, value)
        subject = self._tombstone_key(identity)
        with self._lock:
            requested_at = isoformat(self._clock())
            job_id = new_id()
            profile_id = self.people.find([identity], load=False).profile_id
            erased = None
            if profile_id is not None:
                erased = self.profiles.erase(
                    profile_id,
                    tombstone_key=self._tombstone_key,
                    extra_tombstones=(subject,),
                    job_id=job_id,
                    at=requested_at,
                )
            if erased is None:
                return self._again(kind, identity, subject, actor)
            elsewhere = self._erase_elsewhere(
                profile_ids=erased.profile_ids,
                identities=erased.identities,
                message_ids=erased.message_ids,
            )
            job = ErasureJob(
                job_id=job_id,
                status="completed",
                requested_at=requested_at,
                completed_at=isoformat(self._clock()),
                subject=subject,
                profile_ids=erased.profile_ids,
                erased={"profile_store": dict(erased.counts), **elsewhere},
                leftovers=self._scrub(),
            )
            self.audit.record(
                actor=actor, action=ERASE_ACTION, target=job_id, details=job.to_dict()
            )
        if self.metrics is not None:
            self.metrics.erasures.inc()
        logger.info("erasure job %s erased profiles %s", job_id, ",".join(erased.profile_ids))
        return job

    def _erase_elsewhere(
        self,
        *,
        profile_ids: Sequence[str],
        identities: Sequence[Identity],
        message_ids: Sequence[str],
    ) -> dict[str, Any]:
        """Erase the person from the event log, the decision log, the rejected store, the
        timers, the warehouse and the models; what each removed (the job record's `erased`
        entries)."""
        routing_keys = [i.value for i in identities if i.kind in self._routing_kinds]
        erased_log = self.log.erase(message_ids=message_ids, keys=routing_keys)
        erased_decisions = self.decisions.erase(
            profile_ids=profile_ids, subjects=[f"{i.kind}:{i.value}" for i in identities]
        )
        erased_rejected = self.rejected.erase_identities([i.value for i in identities])
        if message_ids:
            erased_rejected += self.rejected.erase_message_ids(message_ids)
        erased: dict[str, Any] = {}
        if self.warehouse is not None:
            erased["warehouse"] = self.warehouse.erase(
                profile_ids=profile_ids, message_ids=message_ids, keys=routing_keys
            )
        if self.timers is not None and profile_ids:
            erased["timers"] = self.timers.erase_profiles(profile_ids)
        if self.forget_in_models is not None and profile_ids:
            erased["models"] = {"versions_rewritten": self.forget_in_models(profile_ids)}
        return {
            **erased,
            "event_log": erased_log,
            "decision_log": {
                "decisions": erased_decisions.decisions,
                "outcomes": erased_decisions.outcomes,
            },
            "rejected_store": erased_rejected,
        }

    def _scrub(self) -> tuple[dict[str, str], ...]:
        """Every store overwrites what the erased rows left in its files, where it can; what
        may remain (the job's `leftovers`). A store that fails to scrub is a leftover too:
        its rows are deleted already, so the erasure itself stands."""
        leftovers: list[Leftover] = []
        stores: list[tuple[str, Callable[[], list[Leftover]]]] = [
            ("profile_store", self.profiles.scrub),
            ("event_log", self.log.scrub),
            ("decision_log", self.decisions.scrub),
            ("rejected_store", self.rejected.scrub),
        ]
        if self.timers is not None:
            stores.append(("timers", self.timers.scrub))
        for name, scrub in stores:
            try:
                leftovers.extend(scrub())
            except Exception:
                logger.exception("scrubbing the %s after an erasure failed", name)
                leftovers.append(
                    Leftover(name, "its files (the scrub failed: see the log)", "the next scrub")
                )
        return tuple(leftover.to_dict() for leftover in leftovers)

    def _again(self, kind: str, identity: Identity, subject: str, actor: str) -> ErasureJob:
        """The job of an earlier erasure of this identifier, or NotFound."""
        job_id = self.profiles.tombstone(subject)
        if job_id is None:
            raise NotFound(f"no profile for {kind}", details={"kind": kind})
        entries = self.audit.list(action=ERASE_ACTION, target=job_id, limit=1).items
        if entries:
            return replace(ErasureJob.from_dict(entries[0].details), already_erased=True)
        # The tombstone committed but the job never reached the audit log (the process
        # stopped in between): erase what can still be found by this identifier, and audit.
        requested_at = isoformat(self._clock())
        elsewhere = self._erase_elsewhere(profile_ids=(), identities=(identity,), message_ids=())
        job = ErasureJob(
            job_id=job_id,
            status="completed",
            requested_at=requested_at,
            completed_at=isoformat(self._clock()),
            subject=subject,
            profile_ids=(),
            erased={"profile_store": {}, **elsewhere, "resumed": True},
            leftovers=self._scrub(),
        )
        self.audit.record(actor=actor, action=ERASE_ACTION, target=job_id, details=job.to_dict())
        logger.warning("resumed erasure job %s, which had not reached the audit log", job_id)
        return replace(job, already_erased=True)
