"""Export: everything this system holds about one person, as one JSON document.

The right of access: the profile as decisions see it, the identities as stored (PII
kinds hashed: the plain value was never kept), how the profile was merged, every event
of the timeline, every segment entered and left, every decision and outcome, and the
rejected events that name the person. Each export is recorded in the audit log.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from touchpoint.audit.base import AuditLog
from touchpoint.collect.rejected.base import RejectedStore, names_any
from touchpoint.core.clock import isoformat, utcnow
from touchpoint.core.errors import NotFound
from touchpoint.decide.decision_log.base import DecisionLog
from touchpoint.profiles.lookup import PersonFinder
from touchpoint.profiles.store.base import ProfileStore

logger = logging.getLogger(__name__)

EXPORT_ACTION = "profile.export"
_PAGE = 500
_REJECTED_PAGE = 1000


def export_person(
    kind: str,
    value: str,
    *,
    people: PersonFinder,
    decisions: DecisionLog,
    rejected: RejectedStore,
    audit: AuditLog,
    actor: str,
    clock: Callable[[], datetime] = utcnow,
) -> dict[str, Any]:
    """The export of the person with identifier `kind`/`value` (as a caller writes it),
    JSON-ready; records a `profile.export` audit entry. NotFound for an undeclared kind or
    an unknown person (the message never echoes the value, which may be PII).

    Keys: `exported_at`, `profile` (the profile document at that time), `identities`
    ([{kind, value}], as stored), `lineage`, `events` (the whole timeline, oldest first),
    `segment_history` (oldest first), `decisions`, `outcomes` (oldest first),
    `rejected_events` (those naming the person, oldest first).
    """
    profile = people.find_one(kind, value).profile
    if profile is None:
        raise NotFound(f"no profile for {kind}", details={"kind": kind})
    profiles = people.profiles
    now = clock()
    lineage = profiles.lineage(profile.profile_id)
    profile_ids = list(dict.fromkeys([profile.profile_id, *(m.merged_id for m in lineage)]))
    events = _timeline(profiles, profile.profile_id)
    decision_records, outcomes = decisions.for_person(
        profile_ids=profile_ids,
        subjects=[f"{i.kind}:{i.value}" for i in profile.identities],
    )
    message_ids = {m for event in events if isinstance(m := event.get("messageId"), str)}
    document = {
        "exported_at": isoformat(now),
        "profile": people.document(profile, now),
        "identities": [{"kind": i.kind, "value": i.value} for i in profile.identities],
        "lineage": [
            {
                "survivor_id": merge.survivor_id,
                "merged_id": merge.merged_id,
                "identity": {"kind": merge.identity.kind, "value": merge.identity.value},
                "message_id": merge.message_id,
                "at": merge.at,
            }
            for merge in lineage
        ],
        "events": events,
        "segment_history": [
            dataclasses.asdict(change) for change in profiles.segment_history(profile.profile_id)
        ],
        "decisions": [dataclasses.asdict(record) for record in decision_records],
        "outcomes": [dataclasses.asdict(outcome) for outcome in outcomes],
        "rejected_events": _rejected(rejected, [i.value for i in profile.identities], message_ids),
    }
    audit.record(
        actor=actor,
        action=EXPORT_ACTION,
        target=profile.profile_id,
        details={
            "events": len(events),
            "decisions": len(decision_records),
            "outcomes": len(outcomes),
            "rejected_events": len(document["rejected_events"]),
        },
    )
    logger.info("exported profile %s for %s", profile.profile_id, actor)
    return document


def _timeline(profiles: ProfileStore, profile_id: str) -> list[dict[str, Any]]:
    """Every event of the timeline (all pages), oldest first."""
    events: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = profiles.events(profile_id, cursor=cursor, limit=_PAGE)
        events.extend(item.event for item in page.items)
        cursor = page.next_cursor
        if cursor is None:
            events.reverse()
            return events


def _rejected(
    rejected: RejectedStore, values: list[str], message_ids: set[str]
) -> list[dict[str, Any]]:
    """The rejected events naming one of `values` or carrying one of `message_ids`, oldest
    first (a scan: the store holds only the exceptions)."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = rejected.list(cursor=cursor, limit=_REJECTED_PAGE)
        for item in page.items:
            if item.message_id in message_ids or names_any(item.event, values):
                found.append(
                    {
                        "source": item.source,
                        "message_id": item.message_id,
                        "received_at": item.received_at,
                        "reason": item.reason,
                        "errors": item.errors,
                        "event": item.event,
                    }
                )
        cursor = page.next_cursor
        if cursor is None:
            found.reverse()
            return found
