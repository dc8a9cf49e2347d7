"""Erasure and export of a person."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from touchpoint.api.schemas.common import Out
from touchpoint.api.schemas.profiles import IdentityOut, MergeOut, ProfileDocument


class ErasureJobOut(Out):
    """An erasure: what was erased where. Asking again returns the same job
    (`already_erased` true)."""

    job_id: str
    status: str
    requested_at: str
    completed_at: str
    subject: str = Field(description="the tombstone hash of the identifier named")
    profile_ids: list[str]
    erased: dict[str, Any] = Field(description="counts per store")
    already_erased: bool
    leftovers: list[dict[str, str]] = Field(
        default_factory=list,
        description=(
            "where bytes of the erased rows may remain after every store was cleaned, and "
            "until when: `{store, where, until}`"
        ),
    )


class PersonExport(Out):
    """Everything the workspace holds about a person (the right of access)."""

    model_config = {"extra": "allow"}

    exported_at: str
    profile: ProfileDocument
    identities: list[IdentityOut]
    lineage: list[MergeOut]
    events: list[dict[str, Any]]
    segment_history: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    outcomes: list[dict[str, Any]]
    rejected_events: list[dict[str, Any]]
