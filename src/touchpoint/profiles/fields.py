"""What one event does to a profile's own fields (seen times, traits, consent), and the
forms an event takes when its person has not consented to analytics.

Consent comes from an identify call's `traits.consent` or a `Consent Updated` track
event's `properties.consent`, both `{purpose: bool}`. Without `analytics` consent an
event must not grow a profile: it is kept only anonymized (`anonymize_event`: no
identifier of any kind, no traits) or dropped. A consent change itself is the
exception: it is the record of the person's choice, so it is kept with its
identity but stripped of everything else (`consent_record`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from touchpoint.profiles.model import Profile

CONSENT_EVENT = "Consent Updated"
_NOT_TRAITS = frozenset({"consent"})
# What an anonymized event keeps: what happened and when, never who.
_ANONYMOUS_KEYS = ("type", "event", "name", "properties", "timestamp", "receivedAt", "messageId")
_ANONYMOUS_CONTEXT_KEYS = ("page", "library", "locale", "campaign", "app", "screen")
# What a consent record keeps besides the consent: who and when.
_RECORD_KEYS = (
    "type",
    "event",
    "messageId",
    "timestamp",
    "receivedAt",
    "userId",
    "anonymousId",
    "source",
)


def consent_update(event: Mapping[str, Any]) -> dict[str, bool] | None:
    """The consent choices an event carries (`{purpose: bool}`), or None."""
    event_type = event.get("type")
    consent: Any = None
    if event_type == "identify":
        traits = event.get("traits")
        consent = traits.get("consent") if isinstance(traits, dict) else None
    elif event_type == "track" and event.get("event") == CONSENT_EVENT:
        properties = event.get("properties")
        consent = properties.get("consent") if isinstance(properties, dict) else None
    if not isinstance(consent, dict):
        return None
    choices = {key: allowed for key, allowed in consent.items() if isinstance(allowed, bool)}
    return choices or None


def anonymize_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event with every identifier removed: no user or anonymous id, no traits, no IP,
    device or user agent; only what happened, when, on which page. Marked `anonymized`."""
    kept: dict[str, Any] = {key: event[key] for key in _ANONYMOUS_KEYS if key in event}
    context = event.get("context")
    if isinstance(context, dict):
        kept["context"] = {key: context[key] for key in _ANONYMOUS_CONTEXT_KEYS if key in context}
    properties = kept.get("properties")
    if isinstance(properties, dict) and "consent" in properties:
        kept["properties"] = {key: value for key, value in properties.items() if key != "consent"}
    kept["anonymized"] = True
    return kept


def consent_record(event: Mapping[str, Any], consent: Mapping[str, bool]) -> dict[str, Any]:
    """A consent change reduced to who chose what, when: the person's ids, the time, and
    the consent (as identify `traits.consent` or the track's `properties.consent`)."""
    record: dict[str, Any] = {key: event[key] for key in _RECORD_KEYS if key in event}
    if event.get("type") == "identify":
        record["traits"] = {"consent": dict(consent)}
    else:
        record["properties"] = {"consent": dict(consent)}
    return record


def apply_profile_fields(
    profile: Profile, event: Mapping[str, Any], moment: str, hidden_traits: frozenset[str]
) -> None:
    """Fold one event's seen times, traits and consent into `profile`.

    Traits come from identify `traits` and any event's `context.traits`; per key the latest
    event timestamp wins, whatever the arrival order (`trait_times`). `hidden_traits` (PII
    identity traits, which live hashed in identities) and `consent` are never stored as
    traits. Consent is kept latest per purpose (`consent_times`).
    """
    if profile.first_seen is None or moment < profile.first_seen:
        profile.first_seen = moment
    if profile.last_seen is None or moment > profile.last_seen:
        profile.last_seen = moment
    if profile.last_event_at is None or moment > profile.last_event_at:
        profile.last_event_at = moment
    event_type = event.get("type")
    context = event.get("context")
    context_traits = context.get("traits") if isinstance(context, dict) else None
    own_traits = event.get("traits") if event_type == "identify" else None
    times = profile.trait_times
    for source in (context_traits, own_traits):
        if not isinstance(source, dict):
            continue
        for key, value in source.items():
            if key in hidden_traits or key in _NOT_TRAITS:
                continue
            if moment >= times.get(key, ""):
                profile.traits[key] = value
                times[key] = moment
    consent = consent_update(event)
    if consent:
        apply_consent(profile, consent, moment)


def apply_consent(profile: Profile, consent: Mapping[str, bool], moment: str) -> None:
    """Record consent choices made at `moment`, latest per purpose."""
    for purpose, allowed in consent.items():
        if moment >= profile.consent_times.get(purpose, ""):
            profile.consent[purpose] = allowed
            profile.consent_times[purpose] = moment
