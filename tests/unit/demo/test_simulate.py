"""The demo catalog and the visitor simulator: determinism, shape, and the scenarios."""

from __future__ import annotations

import base64
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from touchpoint.collect.events import IncomingEvent
from touchpoint.core.clock import isoformat
from touchpoint.demo.catalog import CATEGORIES, build_catalog
from touchpoint.demo.run import send_events
from touchpoint.demo.simulate import Journey, simulate_journeys, simulate_visitors

START = datetime(2025, 3, 1, tzinfo=UTC)
DAYS = 14
CATALOG = build_catalog()


def journeys(n: int = 120, seed: int = 3) -> list[Journey]:
    return list(simulate_journeys(n, seed=seed, catalog=CATALOG, start=START, days=DAYS))


JOURNEYS = journeys()
MESSAGES = [message for journey in JOURNEYS for message in journey.messages]


def test_catalog_is_deterministic_and_covers_every_category() -> None:
    again = build_catalog()
    assert again == CATALOG
    assert build_catalog(seed=8) != CATALOG
    assert len(CATALOG) == 300
    assert set(CATALOG.categories) == {spec.name for spec in CATEGORIES}
    assert {"Running Shoes", "Trail Shoes", "Jackets", "Tents", "Watches"} <= set(
        CATALOG.categories
    )
    ids = [product.product_id for product in CATALOG.products]
    assert len(set(ids)) == len(ids)
    for product in CATALOG.products:
        spec = next(spec for spec in CATEGORIES if spec.name == product.category)
        assert spec.low_price - 1 <= product.price <= spec.high_price + 1
        assert product.brand in spec.brands
        assert CATALOG.get(product.product_id) is product
    assert sum(len(CATALOG.in_category(name)) for name in CATALOG.categories) == 300


def test_catalog_refuses_fewer_products_than_categories() -> None:
    with pytest.raises(ValueError, match="at least"):
        build_catalog(3)


def test_same_seed_same_messages_other_seed_different() -> None:
    first = list(simulate_visitors(40, seed=11, catalog=CATALOG, start=START, days=DAYS))
    second = list(simulate_visitors(40, seed=11, catalog=CATALOG, start=START, days=DAYS))
    other = list(simulate_visitors(40, seed=12, catalog=CATALOG, start=START, days=DAYS))
    assert orjson.dumps(first) == orjson.dumps(second)
    assert {m["messageId"] for m in first}.isdisjoint({m["messageId"] for m in other})


def test_a_visitor_does_not_depend_on_how_many_are_simulated() -> None:
    fewer = journeys(10)
    assert [j.messages for j in fewer] == [j.messages for j in JOURNEYS[:10]]


def test_every_message_has_a_unique_id_and_an_identity() -> None:
    ids = [message["messageId"] for message in MESSAGES]
    assert all(isinstance(value, str) and value for value in ids)
    assert len(set(ids)) == len(ids)
    assert all(message.get("anonymousId") for message in MESSAGES)


def test_timestamps_are_in_order_per_visitor_and_inside_the_window() -> None:
    low, high = isoformat(START), isoformat(START + timedelta(days=DAYS))
    for journey in JOURNEYS:
        stamps = [message["timestamp"] for message in journey.messages]
        assert stamps, "every visitor sends something"
        assert stamps == sorted(stamps)
        assert len(set(stamps)) == len(stamps)
        assert low <= stamps[0] and stamps[-1] < high


def test_messages_validate_as_incoming_segment_events() -> None:
    for message in MESSAGES:
        event = IncomingEvent.model_validate(message)
        assert event.timestamp is not None
        assert event.context and event.context["userAgent"] and event.context["ip"]
        assert event.context["page"]["url"].startswith("https://")


def test_the_shop_funnel_is_all_there() -> None:
    kinds = Counter(message.get("event") or message["type"] for message in MESSAGES)
    for name in (
        "page",
        "identify",
        "Product Viewed",
        "Product Added",
        "Product Removed",
        "Checkout Started",
        "Order Completed",
        "Consent Updated",
    ):
        assert kinds[name] > 0, name
    assert kinds["page"] > kinds["Product Viewed"] > kinds["Product Added"]
    assert kinds["Product Added"] > kinds["Order Completed"]


def test_orders_carry_revenue_and_their_products() -> None:
    orders = [m for m in MESSAGES if m.get("event") == "Order Completed"]
    for order in orders:
        props = order["properties"]
        lines = props["products"]
        assert lines and all(CATALOG.get(line["product_id"]) for line in lines)
        expected = sum(line["price"] * line["quantity"] for line in lines)
        assert props["revenue"] == pytest.approx(expected)
        assert props["total"] >= props["revenue"] > 0


def test_views_follow_the_visitors_favourite_categories() -> None:
    in_favourites = total = 0
    for journey in JOURNEYS:
        for message in journey.messages:
            if message.get("event") == "Product Viewed":
                total += 1
                category = message["properties"]["category"]
                in_favourites += category in journey.visitor.favourite_categories
    assert total > 100
    assert in_favourites / total > 0.7


def test_identified_visitors_carry_user_id_after_they_sign_in() -> None:
    identified = [j for j in JOURNEYS if j.visitor.user_id is not None]
    assert 0.2 * len(JOURNEYS) < len(identified) < 0.6 * len(JOURNEYS)
    for journey in identified:
        identifies = [m for m in journey.messages if m["type"] == "identify"]
        assert identifies
        for message in identifies:
            assert message["userId"] == journey.visitor.user_id
            assert {"email", "name", "plan"} <= set(message["traits"])
            assert message["traits"]["email"].endswith("@example.com")
        first = journey.messages.index(identifies[0])
        assert all("userId" not in m for m in journey.messages[:first])
    for journey in JOURNEYS:
        if journey.visitor.user_id is None:
            assert all("userId" not in m for m in journey.messages)


def test_some_visitors_come_back_on_a_second_device_and_sign_in_again() -> None:
    movers = [j for j in JOURNEYS if len(j.visitor.anonymous_ids) == 2]
    assert movers
    for journey in movers:
        first_device, second_device = journey.visitor.anonymous_ids
        assert first_device != second_device
        on_second = [m for m in journey.messages if m["anonymousId"] == second_device]
        assert on_second[0]["type"] == "page" and "userId" not in on_second[0]
        sign_ins = [m for m in on_second if m["type"] == "identify"]
        assert sign_ins and sign_ins[0]["userId"] == journey.visitor.user_id
        before = [m for m in journey.messages if m["anonymousId"] == first_device]
        assert any(m["type"] == "identify" for m in before)
        assert before[-1]["timestamp"] < on_second[0]["timestamp"]


def test_some_visitors_leave_a_full_cart_and_some_update_consent() -> None:
    abandoners = 0
    for journey in JOURNEYS:
        cart: Counter[str] = Counter()
        for message in journey.messages:
            event, props = message.get("event"), message.get("properties", {})
            if event == "Product Added":
                cart[props["product_id"]] += props["quantity"]
            elif event == "Product Removed":
                cart[props["product_id"]] -= props["quantity"]
            elif event == "Order Completed":
                cart.clear()
        abandoners += any(quantity > 0 for quantity in cart.values())
    assert abandoners >= 3
    consents = [m for m in MESSAGES if m.get("event") == "Consent Updated"]
    for message in consents:
        consent = message["properties"]["consent"]
        assert set(consent) == {"analytics", "personalization", "marketing"}
        assert all(isinstance(value, bool) for value in consent.values())


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        next(simulate_visitors(1, seed=1, catalog=CATALOG, start=datetime(2025, 1, 1), days=3))
    with pytest.raises(ValueError, match="negative"):
        next(simulate_visitors(-1, seed=1, catalog=CATALOG, start=START, days=3))


class FakeCollector:
    """A `/v1/batch` that fails the first `failures` calls with 503, then accepts."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.bodies: list[dict[str, Any]] = []
        self.auth: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "POST" and request.url.path == "/v1/batch"
        self.auth.add(request.headers["authorization"])
        if self.failures:
            self.failures -= 1
            return httpx.Response(503, json={"code": "unavailable"})
        body = orjson.loads(request.content)
        self.bodies.append(body)
        return httpx.Response(200, json={"accepted": len(body["batch"]), "duplicates": 0})


def test_send_events_batches_with_basic_auth_and_retries_5xx() -> None:
    collector = FakeCollector(failures=2)
    messages = MESSAGES[:250]
    stats = send_events(
        "http://touchpoint.test",
        "wk_demo_key",
        iter(messages),
        batch_size=100,
        concurrency=2,
        backoff=0.01,
        transport=httpx.MockTransport(collector),
    )
    assert stats.accepted == stats.events == 250
    assert (stats.batches, stats.retries, stats.failed_batches) == (3, 2, 0)
    assert sorted(len(body["batch"]) for body in collector.bodies) == [50, 100, 100]
    sent = sorted(m["messageId"] for body in collector.bodies for m in body["batch"])
    assert sent == sorted(m["messageId"] for m in messages)
    expected = "Basic " + base64.b64encode(b"wk_demo_key:").decode()
    assert collector.auth == {expected}
    assert stats.events_per_second > 0


def test_send_events_gives_up_after_its_retries() -> None:
    collector = FakeCollector(failures=100)
    stats = send_events(
        "http://touchpoint.test",
        "wk_demo_key",
        MESSAGES[:10],
        retries=1,
        backoff=0.01,
        concurrency=1,
        transport=httpx.MockTransport(collector),
    )
    assert (stats.batches, stats.failed_batches, stats.accepted, stats.retries) == (1, 1, 0, 1)
