"""The decision log over HTTP: one decision with its outcomes, the list, and a placement's
report (impressions, clicks, conversions and rates per content over a window)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Query

from touchpoint.api.deps import AdminKey, WorkspaceDep
from touchpoint.api.schemas.decisions import DecisionDetail, DecisionPage, PlacementReport
from touchpoint.api.schemas.errors import ADMIN_ERRORS
from touchpoint.api.schemas.security import SecretKeyScheme
from touchpoint.core.clock import isoformat, parse_duration, parse_timestamp
from touchpoint.core.errors import InvalidInput, NotFound
from touchpoint.decide.decision_log.base import ContentReport, DecisionRecord, Outcome

router = APIRouter(
    tags=["decisions"], dependencies=[AdminKey, SecretKeyScheme], responses=ADMIN_ERRORS
)

DEFAULT_REPORT_WINDOW = timedelta(days=7)


def _record(record: DecisionRecord) -> dict[str, Any]:
    return {
        "decision_id": record.decision_id,
        "placement": record.placement,
        "content_id": record.content_id,
        "profile_id": record.profile_id,
        "subject": record.subject,
        "policy": record.policy,
        "definitions_version": record.definitions_version,
        "reason": record.reason,
        "propensity": record.propensity,
        "experiment": record.experiment,
        "arm": record.arm,
        "at": record.at,
    }


def _placement(record: DecisionRecord) -> dict[str, Any]:
    return {
        "placement": record.placement,
        "content_id": record.content_id,
        "reason": record.reason,
        "policy": record.policy,
        "propensity": record.propensity,
        "experiment": record.experiment,
        "arm": record.arm,
    }


def _outcome(outcome: Outcome) -> dict[str, Any]:
    return {
        "message_id": outcome.message_id,
        "kind": outcome.kind,
        "event": outcome.event,
        "placement": outcome.placement,
        "content_id": outcome.content_id,
        "at": outcome.at,
        "value": outcome.value,
    }


def _figures(
    decisions: int, impressions: int, clicks: int, conversions: int, value: float
) -> dict[str, Any]:
    return {
        "decisions": decisions,
        "impressions": impressions,
        "clicks": clicks,
        "conversions": conversions,
        "click_rate": clicks / impressions if impressions else None,
        "conversion_rate": conversions / impressions if impressions else None,
        "value": value,
    }


def _content(row: ContentReport) -> dict[str, Any]:
    figures = _figures(row.decisions, row.impressions, row.clicks, row.conversions, row.value)
    return {"content_id": row.content_id, **figures}


def _moment(parameter: str, text: str | None, now: datetime, default: datetime) -> datetime:
    """A report bound: an ISO-8601 time, or a duration back from now (`7d`, `24h`)."""
    if text is None or not text.strip():
        return default
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    except OverflowError:
        raise InvalidInput(
            f"{parameter}: {text!r} reaches back too far", details={"field": parameter}
        ) from None
    moment = parse_timestamp(text)
    if moment is None:
        raise InvalidInput(
            f"{parameter}: {text!r} is neither an ISO-8601 time nor a duration such as 7d or 24h",
            details={"field": parameter},
        )
    return moment


# Outcomes arrive as events sent with a public write key, so one decision may gather any
# number of them: the reply lists the first ones (oldest first) with the total.
LISTED_OUTCOMES = 100


@router.get(
    "/v1/decisions/{decision_id}",
    summary="A decision with its outcomes",
    response_model=DecisionDetail,
)
def get_decision(decision_id: str, workspace: WorkspaceDep) -> dict[str, Any]:
    records = workspace.decisions.get(decision_id)
    if not records:
        raise NotFound(f"no decision {decision_id!r}", details={"decision_id": decision_id})
    first = records[0]
    outcomes = workspace.decisions.outcomes(decision_id)
    return {
        "decision_id": decision_id,
        "profile_id": first.profile_id,
        "subject": first.subject,
        "at": first.at,
        "definitions_version": first.definitions_version,
        "placements": [_placement(record) for record in records],
        "outcomes_count": len(outcomes),
        "outcomes": [_outcome(item) for item in outcomes[:LISTED_OUTCOMES]],
    }


@router.get("/v1/decisions", summary="Decisions, newest first", response_model=DecisionPage)
def list_decisions(
    workspace: WorkspaceDep,
    placement: str | None = None,
    cursor: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict[str, Any]:
    page = workspace.decisions.list(placement=placement, cursor=cursor, limit=limit)
    return {
        "decisions": [_record(record) for record in page.items],
        "next_cursor": page.next_cursor,
    }


@router.get(
    "/v1/placements/{name}/report",
    summary="A placement's impressions, clicks, conversions and rates per content",
    response_model=PlacementReport,
)
def placement_report(
    name: str,
    workspace: WorkspaceDep,
    since: str | None = None,
    until: str | None = None,
) -> dict[str, Any]:
    current = workspace.definitions.current()
    if current is None or all(item.name != name for item in current.definitions.placements):
        raise NotFound(f"no placement {name!r}", details={"placement": name})
    now = workspace.clock.now()
    # By default the window ends with the current millisecond, so a decision made this
    # very millisecond is in it ([since, until) is half open).
    end = _moment("until", until, now, now + timedelta(milliseconds=1))
    try:
        default_start = end - DEFAULT_REPORT_WINDOW
    except OverflowError:
        default_start = datetime.min.replace(tzinfo=UTC)
    start = _moment("since", since, now, default_start)
    since_text, until_text = isoformat(start), isoformat(end)
    if since_text >= until_text:
        raise InvalidInput(
            f"since ({since_text}) must be before until ({until_text})",
            details={"field": "since"},
        )
    rows = workspace.decisions.report(name, since=since_text, until=until_text)
    totals = _figures(
        sum(row.decisions for row in rows),
        sum(row.impressions for row in rows),
        sum(row.clicks for row in rows),
        sum(row.conversions for row in rows),
        sum(row.value for row in rows),
    )
    return {
        "placement": name,
        "since": since_text,
        "until": until_text,
        "content": [_content(row) for row in rows],
        "totals": totals,
    }
