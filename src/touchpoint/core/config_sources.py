"""Where events come from and what collection accepts: sources with their keys, rate limits
and identity verification, the tracking plan, and collection's limits (a section each of
`touchpoint.yaml`; `config.workspace` assembles them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from touchpoint.core.config_base import ConfigModel, check_duration


class RateLimitConfig(ConfigModel):
    """How fast one source may send, as a rate and a burst of requests and of events (a
    cell-rate limit: `burst` may arrive at once, then `per_second` on average). Over either,
    `/v1/batch` and the single-event routes answer 429 with `Retry-After`. `null` turns a
    rate off. The requests default is Segment's documented figure for its HTTP API (1,000
    requests/s); the events default is half of what one embedded node acknowledges, so one
    public write key cannot take the whole node.
    """

    requests_per_second: float | None = Field(default=1000.0, gt=0)
    request_burst: int = Field(default=2000, ge=1)
    events_per_second: float | None = Field(default=10_000.0, gt=0)
    event_burst: int = Field(default=25_000, ge=1)


class IdentityVerificationConfig(ConfigModel):
    """How a source proves who its visitors are (see docs/threat-model.md).

    `secret` signs user ids (`user_hash` = hex HMAC-SHA256(secret, user id), computed by the
    site's backend). It need not be written here: name an environment variable in
    `secret_env`, or leave both out and one is generated once and kept in
    `<data-dir>/workspace-keys.json` (printed by `touchpoint serve`). `events`: whether every
    event with a `userId` must carry `context.user_hash`; unset, it follows
    `allow_client_decisions`, because a source whose pages may decide must not let them link
    a device to anyone they name.
    """

    secret: str | None = Field(default=None, min_length=16)
    secret_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    events: bool | None = None


class SourceConfig(ConfigModel):
    """A source of events (a website, an app, a server) and its public write key.

    With `allow_client_decisions`, its write key may also ask `POST /v1/decide`, for the
    device it names, or for a user id signed with the source's identity secret.

    `rate_limit`: this source's own limits (default: `collect.rate_limit`).
    """

    name: str
    write_key: str = Field(min_length=8)
    tracking_plan_mode: Literal["enforce", "flag", "off"] = "flag"
    allow_client_decisions: bool = False
    rate_limit: RateLimitConfig | None = None
    identity_verification: IdentityVerificationConfig = Field(
        default_factory=IdentityVerificationConfig
    )

    @property
    def verifies_events(self) -> bool:
        """Whether this source's events naming a user id must carry a valid `user_hash`."""
        events = self.identity_verification.events
        return self.allow_client_decisions if events is None else events

    @property
    def needs_identity_secret(self) -> bool:
        """Whether anything this source does checks a signature."""
        return self.allow_client_decisions or self.verifies_events


class PlannedEvent(ConfigModel):
    """One event of the tracking plan: JSON Schema for its properties (or traits)."""

    description: str = ""
    properties: dict[str, Any] = Field(
        default_factory=dict,
        description="JSON Schema of `properties` (track/page/screen) or `traits` (identify).",
    )


class TrackingPlanConfig(ConfigModel):
    """Declared events. `allow_unplanned`: whether events not listed are violations."""

    allow_unplanned: bool = True
    events: dict[str, PlannedEvent] = Field(default_factory=dict)
    identify_traits: dict[str, Any] | None = Field(
        default=None, description="JSON Schema of identify traits, if the plan declares them."
    )


MAX_EVENT_DEPTH = 128
"""The deepest nesting `collect.max_depth` may allow: far enough below orjson's 254 levels
(and SQLite's JSON limit of 1,000) that an accepted event is always readable and exportable,
with the levels a response wraps around it."""


class CollectConfig(ConfigModel):
    """Collection limits and dedup.

    Per request: `max_event_bytes` (32 KB) and `max_batch_bytes` (500 KB, after gzip is
    undone) and `max_batch_events` (2,500), Segment's limits. Per source: `rate_limit`, the
    default of every source without its own. The rejected store keeps a refused event for
    `rejected_retention` after it was last seen, at most `rejected_per_source` of them per
    source (beyond that new ones are counted, not stored); identical refusals share a row.
    `max_depth`: how deeply objects and arrays may nest in one event (the event itself is
    level 1); `max_object_keys` / `max_array_items`: how wide one object or array may be.
    An event over a limit is rejected naming the path (see `collect.shape`).
    """

    dedup_window: str = "24h"
    max_event_bytes: int = 32 * 1024
    max_batch_bytes: int = 500 * 1024
    max_batch_events: int = Field(default=2500, ge=1)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    rejected_retention: str = "7d"
    rejected_per_source: int = Field(default=50_000, ge=1)
    max_depth: int = Field(default=32, ge=2, le=MAX_EVENT_DEPTH)
    max_object_keys: int = Field(default=1000, ge=1)
    max_array_items: int = Field(default=1000, ge=1)

    @field_validator("dedup_window", "rejected_retention")
    @classmethod
    def _window(cls, value: str) -> str:
        return check_duration(value)
