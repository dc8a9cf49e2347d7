"""Simulated reactions to decisions: deterministic, and always about the decision shown."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from touchpoint.collect.events import IncomingEvent
from touchpoint.core.identity_verification import user_hash
from touchpoint.demo.engagement import decide_body, reactions, sign_message

DECISION: dict[str, Any] = {
    "decision_id": "dec_1",
    "placements": {
        "home_hero": {"content_id": "hero_vip", "reason": "eligible", "payload": None},
        "product_recs": {
            "content_id": "recs_tents",
            "reason": "eligible",
            "payload": {"products": [{"product_id": "p0004", "name": "Tent", "price": 199.0}]},
        },
        "cart_banner": {"content_id": "cart_default", "reason": "fallback"},
        "email_banner": {"content_id": None, "reason": "empty"},
    },
}


def test_decide_body_names_the_person_and_the_placements() -> None:
    body = decide_body("user_id", "u1", ("home_hero", "cart_banner"), "/c/tents")
    assert body["user_id"] == "u1" and body["placements"] == ["home_hero", "cart_banner"]
    assert body["context"]["page"]["path"] == "/c/tents"


def test_the_shop_backend_signs_user_ids_for_decisions_and_events() -> None:
    secret = "demo-identity-secret-0123"
    body = decide_body("user_id", "u1", ("home_hero",), secret=secret)
    assert body["user_hash"] == user_hash(secret, "u1")
    assert "user_hash" not in decide_body("anonymous_id", "a1", ("home_hero",), secret=secret)
    message = {"type": "track", "userId": "u1", "context": {"page": {"path": "/"}}}
    signed_message = sign_message(message, secret)
    assert signed_message["context"] == {
        "page": {"path": "/"},
        "user_hash": user_hash(secret, "u1"),
    }
    assert "user_hash" not in message["context"]  # a copy, the original untouched
    anonymous = {"type": "track", "anonymousId": "a1"}
    assert sign_message(anonymous, secret) is anonymous


def test_every_shown_placement_is_viewed_and_every_event_names_the_decision() -> None:
    messages = reactions(DECISION, "anonymous_id", "a1", random.Random(1))
    viewed = [m for m in messages if m["event"] == "Decision Viewed"]
    assert sorted(m["properties"]["placement"] for m in viewed) == [
        "cart_banner",
        "home_hero",
        "product_recs",
    ]
    for message in messages:
        assert message["anonymousId"] == "a1" and "userId" not in message
        assert message["properties"]["decision_id"] == "dec_1"
        IncomingEvent.model_validate(message)


def test_clicks_and_conversions_come_often_enough_and_deterministically() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    runs = [reactions(DECISION, "user_id", "u1", random.Random(seed), at=at) for seed in range(300)]
    again = [reactions(DECISION, "user_id", "u1", random.Random(s), at=at) for s in range(300)]
    assert runs == again
    events = [m["event"] for run in runs for m in run]
    assert events.count("Decision Viewed") == 900
    assert 30 < events.count("Decision Clicked") < 200
    added = [m for run in runs for m in run if m["event"] == "Product Added"]
    assert added and all(m["properties"]["product_id"] == "p0004" for m in added)
    assert all(m["properties"]["placement"] == "product_recs" for m in added)


def test_a_malformed_decision_gets_no_reaction() -> None:
    assert reactions({"placements": {}}, "user_id", "u1", random.Random(1)) == []
    assert (
        reactions({"decision_id": "d", "placements": []}, "user_id", "u1", random.Random(1)) == []
    )


def test_message_ids_are_unique_per_decision_and_stable() -> None:
    first = reactions(DECISION, "user_id", "u1", random.Random(1))
    again = reactions(DECISION, "user_id", "u1", random.Random(1))
    other = reactions({**DECISION, "decision_id": "dec_2"}, "user_id", "u1", random.Random(1))
    ids = [m["messageId"] for m in first]
    assert len(set(ids)) == len(ids) and ids == [m["messageId"] for m in again]
    assert set(ids).isdisjoint(m["messageId"] for m in other)
