"""The decision log over HTTP: decisions, their outcomes, and a placement's report."""

from __future__ import annotations

from pydantic import Field

from touchpoint.api.schemas.common import Out


class DecisionRecordOut(Out):
    """One placement of one decision, as the decision log keeps it."""

    decision_id: str
    placement: str
    content_id: str | None
    profile_id: str | None
    subject: str = Field(description="the identity decisions are keyed on (hashed)")
    policy: str
    definitions_version: int
    reason: str
    propensity: float
    experiment: str | None
    arm: str | None
    at: str


class DecisionPlacement(Out):
    """What one placement of a decision showed, and why."""

    placement: str
    content_id: str | None
    reason: str
    policy: str
    propensity: float
    experiment: str | None
    arm: str | None


class OutcomeOut(Out):
    """An event joined to a decision: a view, a click or a conversion."""

    message_id: str
    kind: str = Field(description="impression, click or conversion")
    event: str
    placement: str | None
    content_id: str | None
    at: str
    value: float | None


class DecisionDetail(Out):
    """A decision with each placement and its outcomes so far (the first 100, oldest first,
    with the total in `outcomes_count`)."""

    decision_id: str
    profile_id: str | None
    subject: str
    at: str
    definitions_version: int
    placements: list[DecisionPlacement]
    outcomes_count: int
    outcomes: list[OutcomeOut]


class DecisionPage(Out):
    """Decisions, newest first; pass `next_cursor` as `cursor` for the next page."""

    decisions: list[DecisionRecordOut]
    next_cursor: str | None


class ReportFigures(Out):
    """Counts over the window; rates are per impression (None without impressions)."""

    decisions: int
    impressions: int
    clicks: int
    conversions: int
    click_rate: float | None
    conversion_rate: float | None
    value: float


class ContentFigures(ReportFigures):
    """One content item's figures (`content_id` None: nothing could be shown)."""

    content_id: str | None


class PlacementReport(Out):
    """A placement's figures per content over [since, until), and their totals."""

    placement: str
    since: str
    until: str
    content: list[ContentFigures]
    totals: ReportFigures
