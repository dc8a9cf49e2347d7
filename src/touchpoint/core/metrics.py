"""Prometheus metrics, one registry per running workspace (never the global one),
so several apps in one test process do not collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The counters and histograms the areas update; gauges are read at scrape time by
    collectors the runtime registers (log lag, processor counters)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events_accepted = Counter(
            "touchpoint_events_accepted",
            "Events durably appended to the log.",
            ["source"],
            registry=self.registry,
        )
        self.events_rejected = Counter(
            "touchpoint_events_rejected",
            "Events refused and kept in the rejected store.",
            ["source", "reason"],
            registry=self.registry,
        )
        self.rejected_not_stored = Counter(
            "touchpoint_rejected_not_stored",
            "Rejected events refused but not kept: their source was at collect."
            "rejected_per_source rows in the rejected store.",
            ["source"],
            registry=self.registry,
        )
        self.events_deduplicated = Counter(
            "touchpoint_events_deduplicated",
            "Events dropped because their messageId was already logged in the dedup window.",
            ["source"],
            registry=self.registry,
        )
        self.events_flagged = Counter(
            "touchpoint_events_flagged",
            "Events accepted with tracking-plan violations (flag mode).",
            ["source"],
            registry=self.registry,
        )
        self.decisions = Counter(
            "touchpoint_decisions",
            "Placement decisions made, by placement and reason (eligible, fallback, no_consent, "
            "render_error, empty).",
            ["placement", "reason"],
            registry=self.registry,
        )
        self.template_errors = Counter(
            "touchpoint_template_errors",
            "Content skipped because its Liquid template failed to render.",
            ["content_id"],
            registry=self.registry,
        )
        self.candidate_errors = Counter(
            "touchpoint_candidate_errors",
            "Candidates skipped because checking them failed while deciding, by content and "
            "stage (active, eligibility, caps, recommendations).",
            ["content_id", "stage"],
            registry=self.registry,
        )
        self.erasures = Counter(
            "touchpoint_erasures",
            "People erased (profile, identities, events, decisions, rejected events).",
            registry=self.registry,
        )
        self.profile_cache = Counter(
            "touchpoint_profile_cache",
            "Profile cache lookups (find and get) by result: hit, miss (read from the profile "
            "store, then cached) or error (Redis failed or is paused after a failure: the "
            "lookup read the profile store; a failed invalidation, kept to retry, counts too).",
            ["result"],
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "touchpoint_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
