"""Simulated reactions to decisions: views, clicks and conversions, through the real API.

After the visitors' history is loaded, the demo asks `POST /v1/decide` for the
page of a sample of them (with the public write key, as the storefront does)
and answers each decision as a browser would: a `Decision Viewed` for every
placement that showed something, a `Decision Clicked` now and then (more often
for content chosen for the person than for a fallback), and sometimes a
conversion the placement declares (`Product Added` from the recommendations,
`Checkout Started` from the cart banner). So `GET /v1/placements/{name}/report`
has impressions, clicks and conversions to show from the first minute.

The demo's source lets pages decide, so it verifies identities: a visitor named
by user id is signed with the source's identity secret (`user_hash`), as a real
shop's backend signs its signed-in visitors for the page (`decide_body`,
`sign_message`; docs/threat-model.md).

`reactions` is pure (seeded); `engage` does the HTTP.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from touchpoint.core.clock import isoformat, utcnow
from touchpoint.core.identity_verification import USER_HASH_FIELD, user_hash
from touchpoint.demo.simulate import LIBRARY, SHOP_URL

logger = logging.getLogger(__name__)

VIEWED = "Decision Viewed"
CLICKED = "Decision Clicked"
CLICK_RATE = {"eligible": 0.18}
FALLBACK_CLICK_RATE = 0.05
_MESSAGE_IDS = uuid.UUID("5b0c7f3e-2f6d-4c1e-9a51-7d0f3c2b8e11")
CONVERSION_RATE = 0.4


def decide_body(
    kind: str,
    value: str,
    placements: Sequence[str],
    path: str = "/",
    *,
    secret: str | None = None,
) -> dict[str, Any]:
    """The body of a decide request for one person on one page of the shop; a user id is
    signed with the source's identity `secret` when given (what the page gets from the
    shop's backend)."""
    body: dict[str, Any] = {
        kind: value,
        "context": {"page": {"path": path, "url": SHOP_URL + path}, "channel": "web"},
        "placements": list(placements),
    }
    if kind == "user_id" and secret is not None:
        body[USER_HASH_FIELD] = user_hash(secret, value)
    return body


def sign_message(message: dict[str, Any], secret: str | None) -> dict[str, Any]:
    """The message with `context.user_hash` for its `userId`, as the shop's page sends it
    once its backend signed the visitor in (a copy; unchanged without a user id or secret)."""
    user_id = message.get("userId")
    if secret is None or not isinstance(user_id, str):
        return message
    context = {**(message.get("context") or {}), USER_HASH_FIELD: user_hash(secret, user_id)}
    return {**message, "context": context}


def signed(messages: Iterable[dict[str, Any]], secret: str | None) -> Iterator[dict[str, Any]]:
    """`sign_message` over `messages`, lazily."""
    return (sign_message(message, secret) for message in messages)


def _identity(kind: str, value: str) -> dict[str, str]:
    return {"userId": value} if kind == "user_id" else {"anonymousId": value}


def reactions(
    decision: Mapping[str, Any],
    kind: str,
    value: str,
    rng: random.Random,
    *,
    at: datetime | None = None,
) -> list[dict[str, Any]]:
    """The events one visitor sends after seeing `decision` (a decide response body), at
    `at` (now by default)."""
    messages: list[dict[str, Any]] = []
    now = isoformat(at or utcnow())
    decision_id = decision.get("decision_id")
    placements = decision.get("placements")
    if not isinstance(decision_id, str) or not isinstance(placements, Mapping):
        return messages

    def track(event: str, properties: dict[str, Any]) -> None:
        messages.append(
            {
                "type": "track",
                "event": event,
                # Derived from the decision: unique per decision (a rerun's reactions are
                # new events, not duplicates), the same for the same decision.
                "messageId": str(uuid.uuid5(_MESSAGE_IDS, f"{decision_id}:{len(messages)}")),
                "timestamp": now,
                "properties": properties,
                "context": {"library": dict(LIBRARY), "page": {"path": "/", "url": SHOP_URL}},
                **_identity(kind, value),
            }
        )

    for name, shown in sorted(placements.items()):
        if not isinstance(shown, Mapping) or not shown.get("content_id"):
            continue
        about = {"decision_id": decision_id, "placement": name, "content_id": shown["content_id"]}
        track(VIEWED, dict(about))
        rate = CLICK_RATE.get(str(shown.get("reason")), FALLBACK_CLICK_RATE)
        if rng.random() >= rate:
            continue
        track(CLICKED, dict(about))
        if rng.random() >= CONVERSION_RATE:
            continue
        payload = shown.get("payload")
        products = None
        if isinstance(payload, Mapping):  # rule content lists `products`, recommended `items`
            products = payload.get("products") or payload.get("items")
        if name == "product_recs" and isinstance(products, list) and products:
            product = rng.choice(products)
            if isinstance(product, Mapping):
                track("Product Added", {**about, **product, "quantity": 1})
        elif name == "cart_banner":
            track("Checkout Started", dict(about))
    return messages


@dataclass
class Engagement:
    """What `engage` did: decisions asked for and their reasons, events it produced."""

    decisions: int = 0
    failures: int = 0
    first_failure: str | None = None
    reasons: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    messages: list[dict[str, Any]] = field(default_factory=list)


def engage(
    client: httpx.Client,
    visitors: Sequence[tuple[str, str]],
    placements: Sequence[str],
    *,
    seed: int,
    secret: str | None = None,
) -> Engagement:
    """Ask for a decision for each (kind, value) in `visitors` and collect their reactions
    (to be sent with `send_events`, signed with `secret` as the decide requests are).
    `client` carries the base URL and the write key; a failed decide is counted, never
    raised (the first failure is kept to show)."""
    rng = random.Random(f"touchpoint-demo-engage:{seed}")  # noqa: S311 (simulation)
    result = Engagement()
    for kind, value in visitors:
        try:
            body = decide_body(kind, value, placements, secret=secret)
            response = client.post("/v1/decide", json=body)
        except httpx.HTTPError as error:
            result.failures += 1
            result.first_failure = result.first_failure or type(error).__name__
            continue
        if response.status_code != 200:
            result.failures += 1
            detail = f"HTTP {response.status_code}: {response.text[:200]}"
            result.first_failure = result.first_failure or detail
            continue
        decision = response.json()
        result.decisions += 1
        for shown in (decision.get("placements") or {}).values():
            result.reasons[str(shown.get("reason"))] += 1
        messages = [sign_message(item, secret) for item in reactions(decision, kind, value, rng)]
        result.events.update(message["event"] for message in messages)
        result.messages.extend(messages)
    if result.failures:
        logger.warning("%d decide requests failed: %s", result.failures, result.first_failure)
    return result
