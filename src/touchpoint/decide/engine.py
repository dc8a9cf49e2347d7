"""The decision engine: a profile, a context and placements in; one decision out, logged.

For each requested placement the engine takes its candidates from the compiled
catalog of the current definitions version, keeps those active now, eligible for
this person and under their frequency caps, lets the placement's policy choose,
renders the choice, and falls back when nothing is eligible or the choice does
not render. Without `personalization` consent every placement gets its fallback,
rendered with no profile data. Every placement's decision is stored in the
decision log (one write per request) before the result is returned, with the
policy, the definitions version, the propensity, the experiment and arm and the
features the policy read, so outcomes can be joined to it and policies evaluated
and taught later.

Cost is kept to what the person changes: the catalog's index shortlists the
candidates, each distinct eligibility condition is evaluated at most once per
request, the policy reads tiers lazily, caps are read from the log only when a
capped candidate is reached (once per window), and renders are remembered (see
`render`).

The engine is shared by every request thread: the catalog is immutable and
swapped whole when `definitions.latest_version()` moves (checked at most every
`reload_interval` seconds, compiled off the request path), policies are built
once per placement and policy config (from `decide.policies.registry`, seeded with
the placement's name) and are safe to share, and per-request state (cap counts,
condition results) lives on the stack.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from touchpoint.config.workspace import TouchpointConfig
from touchpoint.core.clock import isoformat, new_id, utcnow
from touchpoint.core.consent import PERSONALIZATION
from touchpoint.core.errors import InvalidInput, NotFound
from touchpoint.core.metrics import Metrics
from touchpoint.decide.caps import RequestCaps
from touchpoint.decide.catalog import Catalog, CompiledContent, CompiledPlacement
from touchpoint.decide.decision_log.base import DecisionLog, DecisionRecord
from touchpoint.decide.policies.base import Policy, PolicyInput
from touchpoint.decide.policies.registry import build_policy
from touchpoint.decide.render import TemplateRenderError
from touchpoint.decide.results import (
    ELIGIBLE,
    EMPTY,
    FALLBACK,
    NO_CONSENT,
    RENDER_ERROR,
    DecideRequest,
    DecideResult,
    PlacementDecision,
)
from touchpoint.definitions.store.base import DefinitionStore
from touchpoint.models.recommend.source import RecommendationSource, RecommendedItems
from touchpoint.profiles.lookup import PersonFinder
from touchpoint.profiles.model import Identity

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Person:
    """One request's person and moment, shared by its placements. `conditions`: the
    results of eligibility conditions evaluated so far, by condition slot."""

    document: Mapping[str, Any]
    subject_document: Mapping[str, Any]
    subject: str
    context: Mapping[str, Any]
    now: datetime
    at: str
    decision_id: str
    caps: RequestCaps
    conditions: dict[int, bool] = field(default_factory=dict)
    recommended: dict[tuple[str, int], RecommendedItems | None] = field(default_factory=dict)


class Decider:
    """Decides what placements show a person, and logs every decision.

    Thread-safe: call `decide` from any number of threads.
    """

    def __init__(
        self,
        *,
        config: TouchpointConfig,
        definitions: DefinitionStore,
        decisions: DecisionLog,
        people: PersonFinder,
        metrics: Metrics,
        clock: Callable[[], datetime] = utcnow,
        reload_interval: float = 1.0,
        recommendations: RecommendationSource | None = None,
    ) -> None:
        self._consent = config.consent
        self.recommendations = recommendations
        self._definitions = definitions
        self._decisions = decisions
        self._people = people
        self._features = people.features
        self._metrics = metrics
        self._clock = clock
        self._reload_interval = reload_interval
        self._policies: dict[tuple[str, Any], Policy] = {}
        self._kind_rank = {kind.name: rank for rank, kind in enumerate(people.resolver.kinds)}
        self._catalog = Catalog.empty()
        self._checked_at = float("-inf")  # monotonic time of the last version check
        self._lock = threading.Lock()
        self._reloading = False  # a background reload is under way
        self._counters: dict[tuple[str, str], Any] = {}

    # -- definitions --------------------------------------------------------------------------

    @property
    def identity_kinds(self) -> tuple[str, ...]:
        """The identity kinds a request may name, highest priority first."""
        return tuple(self._kind_rank)

    def catalog(self) -> Catalog:
        """The compiled current definitions.

        Whether a new version was applied is checked at most every `reload_interval`
        seconds. A new version is compiled on a background thread (500 items take a few
        hundred milliseconds) while requests keep deciding with the old one, then swapped
        in whole; only the first load, with nothing to serve meanwhile, happens in the
        calling thread.
        """
        if time.monotonic() - self._checked_at < self._reload_interval:
            return self._catalog
        if self._catalog.version == 0:
            with self._lock:
                if time.monotonic() - self._checked_at >= self._reload_interval:
                    self._reload()
                return self._catalog
        if self._lock.acquire(blocking=False):  # else another thread is on it
            try:
                if time.monotonic() - self._checked_at >= self._reload_interval:
                    self._check()
            finally:
                self._lock.release()
        return self._catalog

    def refresh(self) -> Catalog:
        """Load the latest version now, in this thread (after an `apply` in this process)."""
        with self._lock:
            self._reload()
            return self._catalog

    def _check(self) -> None:
        """With the lock held: start a background reload if the version moved."""
        self._checked_at = time.monotonic()
        try:
            latest = self._definitions.latest_version()
        except Exception:
            logger.exception("could not read the definitions version")
            return
        if latest != self._catalog.version:
            threading.Thread(target=self.refresh, name="definitions-reload", daemon=True).start()

    def _reload(self) -> None:
        """With the lock held: swap in the latest version if it moved; keep deciding with the
        old one if it cannot be loaded."""
        try:
            latest = self._definitions.latest_version()
            if latest != self._catalog.version:
                current = self._definitions.current()
                if current is None:
                    self._catalog = Catalog.empty()
                else:
                    self._catalog = Catalog.compile(current.definitions, current.version)
        except Exception:
            logger.exception(
                "could not load definitions; still deciding with version %d", self._catalog.version
            )
        self._checked_at = time.monotonic()

    def describe(self) -> dict[str, Any]:
        """The current version and every placement with its content and fallback."""
        return self.catalog().describe()

    def describe_placement(self, name: str) -> dict[str, Any]:
        """One placement with its content and fallback; NotFound if unknown."""
        catalog = self.catalog()
        placement = catalog.placements.get(name)
        if placement is None:
            raise NotFound(f"unknown placement {name!r}", details={"placement": name})
        return {"version": catalog.version, **placement.describe()}

    # -- deciding -----------------------------------------------------------------------------

    def decide(self, request: DecideRequest) -> DecideResult:
        """Decide every requested placement for the person, log it, return it.

        Raises NotFound naming the first unknown placement (nothing is logged then) and
        InvalidInput for an undeclared identity kind or an empty identity.
        """
        catalog = self.catalog()
        placements = self._placements(catalog, request.placements)
        identities = self._identities(request.identities)
        now = self._clock()
        at = isoformat(now)
        found = self._people.find(identities)
        profile = found.profile
        tombstones = {} if found.known else self._people.tombstones(identities)
        subjects = self._subjects(identities, tombstones)
        profile_id = profile.profile_id if profile is not None else None
        document = (
            self._people.document(profile, now)
            if profile is not None
            else self._empty_document(now)
        )
        context = request.context
        decision_id = new_id()
        if self._consent.allows(document["consent"], PERSONALIZATION):
            person = _Person(
                document=document,
                subject_document={**document, "context": context},
                subject=subjects[0],
                context=context,
                now=now,
                at=at,
                decision_id=decision_id,
                caps=RequestCaps(self._decisions, catalog, profile_id, subjects, now),
            )
            decided = [self._decide_placement(placement, person) for placement in placements]
        else:
            empty = self._empty_document(now)
            decided = [
                self._fallback(placement, empty, context, NO_CONSENT) for placement in placements
            ]

        stored_context = dict(context)
        self._decisions.record(
            [
                DecisionRecord(
                    decision_id=decision_id,
                    placement=item.placement,
                    content_id=item.content_id,
                    profile_id=profile_id,
                    subject=subjects[0],
                    policy=item.policy,
                    definitions_version=catalog.version,
                    reason=item.reason,
                    propensity=item.propensity,
                    at=at,
                    experiment=item.experiment,
                    arm=item.arm,
                    context=stored_context,
                    features=dict(item.features),
                )
                for item in decided
            ]
        )
        for item in decided:
            self._decision_counter(item.placement, item.reason).inc()
        return DecideResult(
            decision_id=decision_id,
            profile_id=profile_id,
            subject=subjects[0],
            definitions_version=catalog.version,
            at=at,
            placements={item.placement: item for item in decided},
        )

    def _decision_counter(self, placement: str, reason: str) -> Any:
        """The decisions counter's child for these labels (looked up once, then kept)."""
        key = (placement, reason)
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = self._metrics.decisions.labels(placement, reason)
        return child

    def _placements(self, catalog: Catalog, names: Sequence[str]) -> list[CompiledPlacement]:
        placements = []
        for name in dict.fromkeys(names):
            placement = catalog.placements.get(name)
            if placement is None:
                raise NotFound(f"unknown placement {name!r}", details={"placement": name})
            placements.append(placement)
        return placements

    def _identities(self, given: Mapping[str, str]) -> list[Identity]:
        """The request's identities in stored form, highest-priority kind first."""
        if not given:
            raise InvalidInput(
                f"name the person with one of: {', '.join(self._kind_rank)}",
                details={"field": "identity"},
            )
        for kind, value in given.items():
            if kind not in self._kind_rank:
                raise InvalidInput(
                    f"{kind}: not an identity kind (declared: {', '.join(self._kind_rank)})",
                    details={"field": kind},
                )
            if not isinstance(value, str) or not value.strip():
                raise InvalidInput(f"{kind}: must be a non-empty string", details={"field": kind})
        ordered = sorted(given, key=self._kind_rank.__getitem__)
        return [self._people.identity(kind, given[kind]) for kind in ordered]

    @staticmethod
    def _subjects(identities: Sequence[Identity], tombstones: Mapping[Identity, str]) -> list[str]:
        """How the decision log names the person: `kind:value` per identity, except for an
        identity an erasure tombstoned, which is named only by its tombstone (someone erased
        who comes back is decided for as a stranger, and their identifier is not recorded
        again)."""
        return [
            f"erased:{key}"
            if (key := tombstones.get(identity)) is not None
            else f"{identity.kind}:{identity.value}"
            for identity in identities
        ]

    def _empty_document(self, now: datetime) -> dict[str, Any]:
        """The document of someone without a profile: profile_document's keys, empty."""
        return {
            "profile_id": None,
            "identities": {},
            "traits": {},
            "features": self._features.values({}, now),
            "segments": [],
            "segment_memberships": {},
            "consent": {},
            "scores": {},
            "first_seen": None,
            "last_seen": None,
            "created_at": None,
            "profile": {"id": None, "first_seen": None, "last_seen": None},
        }

    def _policy(self, placement: CompiledPlacement) -> Policy:
        """The placement's policy, built on first use and kept while its config is the same
        (so a policy that learns keeps what it learned across definitions versions)."""
        config = placement.config.policy
        key = (placement.name, config)
        policy = self._policies.get(key)
        if policy is None:
            policy = self._policies.setdefault(key, build_policy(config, seed=placement.name))
        return policy

    def _decide_placement(self, placement: CompiledPlacement, person: _Person) -> PlacementDecision:
        policy = self._policy(placement)
        subject_document, now, at = person.subject_document, person.now, person.at
        caps, conditions = person.caps, person.conditions

        def eligible_tiers() -> Iterator[list[CompiledContent]]:
            # The shortlist is in rank order, so equal priorities are adjacent.
            tier: list[CompiledContent] = []
            priority = None
            for _, item in placement.shortlist(subject_document):
                if item.priority != priority:
                    if tier:
                        yield tier
                        tier = []
                    priority = item.priority
                stage = "active"
                try:
                    if item.windowed and not item.active(at):
                        continue
                    condition = item.condition
                    if condition is not None:
                        stage = "eligibility"
                        holds = conditions.get(item.condition_slot)
                        if holds is None:
                            holds = condition(subject_document, now)
                            conditions[item.condition_slot] = holds
                        if not holds:
                            continue
                    stage = "caps"
                    if item.caps and caps.reached(item):
                        continue
                    stage = "recommendations"
                    if item.config.recommendations is not None and not self._filled(item, person):
                        continue
                except Exception as error:
                    # A definition that validated but cannot be checked for this person (a
                    # store that failed, a value no check foresaw): this candidate is out, the
                    # placement goes on to the next one or its fallback.
                    self._candidate_failed(item, placement.name, stage, error)
                    continue
                tier.append(item)
            if tier:
                yield tier

        document, context = person.document, person.context
        choice = policy.choose(
            PolicyInput(
                placement=placement.name,
                candidates=eligible_tiers(),
                subject=person.subject,
                decision_id=person.decision_id,
                now=now,
                document=subject_document,
                context=context,
            )
        )
        if choice is None:
            return self._fallback(placement, document, context, FALLBACK)
        item = choice.content
        if item.caps:
            caps.shown(item)
        payload = item.payload
        slot = item.config.recommendations
        if slot is not None:
            filled = person.recommended[(slot.model, slot.k)]
            assert filled is not None  # only filled items are eligible
            items = [dict(entry) for entry in filled.items]
            payload = {**(payload or {}), "items": items, "recommender": filled.describe()}
            document = {**document, "items": items}
        try:
            html = self._render(item, placement.name, document, context)
        except TemplateRenderError as error:
            self._template_failed(error, placement.name)
            return self._fallback(placement, person.document, context, FALLBACK, after_error=True)
        return PlacementDecision(
            placement.name,
            item.id,
            payload,
            html,
            ELIGIBLE,
            choice.policy,
            choice.propensity,
            choice.experiment,
            choice.arm,
            choice.features,
        )

    def _filled(self, item: CompiledContent, person: _Person) -> bool:
        """Whether a recommender gives this content enough items for the person (asked once
        per model and size in a request; a failing recommender fills nothing, logged)."""
        slot = item.config.recommendations
        assert slot is not None
        key = (slot.model, slot.k)
        if key not in person.recommended:
            found = None
            if self.recommendations is not None:
                try:
                    found = self.recommendations.recommend(
                        profile_id=person.document.get("profile_id"),
                        document=person.subject_document,
                        model=slot.model,
                        k=slot.k,
                    )
                except Exception:
                    logger.exception(
                        "recommender %s failed; content %s skipped", slot.model, item.id
                    )
            person.recommended[key] = found
        filled = person.recommended[key]
        return filled is not None and len(filled.items) >= slot.min_items

    def _fallback(
        self,
        placement: CompiledPlacement,
        document: Mapping[str, Any],
        context: Mapping[str, Any],
        reason: str,
        *,
        after_error: bool = False,
    ) -> PlacementDecision:
        """The placement's fallback with `reason`; `empty` without one, `render_error` if it
        (or, with no fallback, the chosen item: `after_error`) failed to render. Without
        consent the reason stays `no_consent` whatever is shown."""
        fallback = placement.fallback
        if fallback is None:
            if reason != NO_CONSENT:
                reason = RENDER_ERROR if after_error else EMPTY
            return PlacementDecision(
                placement.name, None, None, None, reason, placement.policy, 1.0
            )
        try:
            html = self._render(fallback, placement.name, document, context)
        except TemplateRenderError as error:
            self._template_failed(error, placement.name)
            if reason != NO_CONSENT:
                reason = RENDER_ERROR
            return PlacementDecision(
                placement.name, None, None, None, reason, placement.policy, 1.0
            )
        return PlacementDecision(
            placement.name, fallback.id, fallback.payload, html, reason, placement.policy, 1.0
        )

    @staticmethod
    def _render(
        item: CompiledContent,
        placement: str,
        document: Mapping[str, Any],
        context: Mapping[str, Any],
    ) -> str | None:
        if item.template is None:
            return None
        return item.template.render_for(document, context=context, placement=placement)

    def _candidate_failed(
        self, item: CompiledContent, placement: str, stage: str, error: Exception
    ) -> None:
        logger.warning(
            "content %s on placement %s skipped: its %s check failed: %s: %s",
            item.id,
            placement,
            stage,
            type(error).__name__,
            error,
            exc_info=not isinstance(error, ArithmeticError | ValueError),
        )
        self._metrics.candidate_errors.labels(item.id, stage).inc()

    def _template_failed(self, error: TemplateRenderError, placement: str) -> None:
        logger.warning(
            "content %s on placement %s skipped: %s", error.content_id, placement, error.reason
        )
        self._metrics.template_errors.labels(error.content_id).inc()
