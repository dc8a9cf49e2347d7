"""Tests of the computed-feature engine (touchpoint.profiles.features and .reducers)."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from touchpoint.config.workspace import FeatureConfig
from touchpoint.core.clock import isoformat
from touchpoint.core.errors import DefinitionError
from touchpoint.profiles.features import FeatureEngine
from touchpoint.profiles.reducers import bucket_width, to_number

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def at(**offset: float) -> str:
    return isoformat(T0 + timedelta(**offset))


def track(name: str, when: str, /, **properties: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "messageId": f"m-{name}-{when}-{sorted(properties.items())!r}",
        "anonymousId": "a1",
        "userId": None,
        "event": name,
        "properties": properties,
        "traits": {},
        "context": {},
        "timestamp": when,
        "receivedAt": when,
        "source": "web",
        "violations": [],
    }


def other(kind: str, when: str, **fields: Any) -> dict[str, Any]:
    event = track("", when)
    del event["event"]
    event["type"] = kind
    event.update(fields)
    return event


def engine(*features: dict[str, Any]) -> FeatureEngine:
    return FeatureEngine([FeatureConfig(**feature) for feature in features])


def fold(feature_engine: FeatureEngine, events: list[dict[str, Any]]) -> dict[str, Any]:
    states: dict[str, Any] = {}
    for event in events:
        feature_engine.apply(states, event)
    return states


MIXED = (
    {"name": "orders", "type": "count", "event": "Order Completed"},
    {"name": "orders_7d", "type": "count", "event": "Order Completed", "window": "7d"},
    {"name": "revenue", "type": "sum", "event": "Order Completed", "property": "revenue"},
    {
        "name": "revenue_30d",
        "type": "sum",
        "event": "Order Completed",
        "property": "revenue",
        "window": "30d",
    },
    {"name": "plan", "type": "last", "event": "type:identify", "property": "plan"},
    {
        "name": "viewed",
        "type": "last_distinct",
        "event": "Product Viewed",
        "property": "sku",
        "n": 3,
    },
    {"name": "first_order", "type": "first_time", "event": "Order Completed"},
    {"name": "last_seen", "type": "last_time", "event": ["type:page", "type:screen"]},
)
ORDER_INSENSITIVE_NAMES = [feature["name"] for feature in MIXED]


def mixed_timeline(seed: int, size: int = 60) -> list[dict[str, Any]]:
    """Events with distinct timestamps spread over 50 days, in time order."""
    generator = random.Random(seed)
    minutes = sorted(generator.sample(range(50 * 24 * 60), size))
    events = []
    for minute in minutes:
        when = at(minutes=minute)
        choice = generator.randrange(5)
        if choice == 0:
            events.append(
                track("Order Completed", when, revenue=generator.choice([10, "2.5", 7.25]))
            )
        elif choice == 1:
            events.append(track("Product Viewed", when, sku=generator.choice("abcdef")))
        elif choice == 2:
            events.append(other("identify", when, traits={"plan": generator.choice(["a", "b"])}))
        elif choice == 3:
            events.append(other("page", when, name="Home"))
        else:
            events.append(track("Signed Up", when))
    return events


def test_neutral_values_before_any_event() -> None:
    features = engine(*MIXED, {"name": "cart", "type": "cart"})
    values = features.values({}, T0)
    assert values == {
        "orders": 0,
        "orders_7d": 0,
        "revenue": 0,
        "revenue_30d": 0,
        "plan": None,
        "viewed": [],
        "first_order": None,
        "last_seen": None,
        "cart": {"items": [], "count": 0, "value": 0, "updated_at": None},
    }
    assert features.names == (*ORDER_INSENSITIVE_NAMES, "cart")
    assert features.time_dependent == frozenset({"orders_7d", "revenue_30d"})


def test_count_matches_names_lists_and_event_types() -> None:
    features = engine(
        {"name": "orders", "type": "count", "event": "Order Completed"},
        {"name": "carts", "type": "count", "event": ["Product Added", "Product Removed"]},
        {"name": "pages", "type": "count", "event": "type:page"},
        {"name": "identifies", "type": "count", "event": "type:identify"},
        {"name": "tracks", "type": "count", "event": "type:track"},
    )
    states = fold(
        features,
        [
            track("Order Completed", at(hours=1)),
            track("Order Completed", at(hours=2)),
            track("Product Added", at(hours=3)),
            track("Product Removed", at(hours=4)),
            track("Other", at(hours=5)),
            other("page", at(hours=6), name="Home"),
            other("screen", at(hours=7), name="Home"),
            other("identify", at(hours=8), traits={"plan": "pro"}),
        ],
    )
    assert features.values(states, T0) == {
        "orders": 2,
        "carts": 2,
        "pages": 1,
        "identifies": 1,
        "tracks": 5,
    }


def test_count_ignores_a_property_and_sum_skips_events_without_it() -> None:
    features = engine(
        {"name": "orders", "type": "count", "event": "Paid", "property": "amount"},
        {
            "name": "orders_1d",
            "type": "count",
            "event": "Paid",
            "property": "amount",
            "window": "1d",
        },
        {"name": "paid", "type": "sum", "event": "Paid", "property": "amount"},
        {"name": "paid_1d", "type": "sum", "event": "Paid", "property": "amount", "window": "1d"},
    )
    states = fold(features, [track("Paid", at(hours=1), amount=5), track("Paid", at(hours=2))])
    assert features.values(states, T0 + timedelta(hours=3)) == {
        "orders": 2,
        "orders_1d": 2,
        "paid": 5,
        "paid_1d": 5,
    }


def test_apply_reports_changes_and_relevance() -> None:
    features = engine(
        {"name": "orders", "type": "count", "event": "Order Completed"},
        {"name": "first_order", "type": "first_time", "event": "Order Completed"},
        {"name": "last_page", "type": "last_time", "event": "type:page"},
    )
    states: dict[str, Any] = {}
    assert not features.relevant(track("Signed Up", at()))
    assert not features.apply(states, track("Signed Up", at()))
    assert not features.relevant(other("identify", at()))
    assert features.relevant(other("page", at()))
    assert features.apply(states, track("Order Completed", at(hours=2)))
    assert features.apply(states, other("page", at(hours=2)))
    assert not features.apply(states, other("page", at(hours=1)))
    assert states == {"orders": 1, "first_order": at(hours=2), "last_page": at(hours=2)}


def test_event_time_falls_back_to_received_at_and_needs_one() -> None:
    features = engine({"name": "seen", "type": "last_time", "event": "type:page"})
    states: dict[str, Any] = {}
    event = other("page", at(hours=1))
    event["timestamp"] = None
    event["receivedAt"] = at(hours=3)
    assert features.apply(states, event)
    assert states["seen"] == at(hours=3)
    event["receivedAt"] = None
    assert not features.apply(states, event)


def test_sum_accepts_numbers_and_numeric_strings_only() -> None:
    features = engine({"name": "revenue", "type": "sum", "event": "Paid", "property": "amount"})
    events = [
        track("Paid", at(hours=hour), amount=amount)
        for hour, amount in enumerate([10, "2.5", 0.1, 0.2, " 3 ", "abc", True, None, "nan", [1]])
    ]
    states = fold(features, [*events, track("Paid", at(hours=20))])
    assert features.values(states, T0) == {"revenue": 15.8}
    assert features.values(fold(features, events[:1]), T0) == {"revenue": 10}


def test_to_number_rules() -> None:
    assert to_number("12.50") == 12.5
    assert to_number("-4") == -4
    assert to_number("1e3") == 1000.0
    for bad in ("1_000", "0x10", "inf", "", "  ", True, None, {"a": 1}, float("nan")):
        assert to_number(bad) is None


def test_property_paths_resolve_roots() -> None:
    features = engine(
        {"name": "path", "type": "last", "event": "type:page", "property": "context.page.path"},
        {"name": "title", "type": "last", "event": "type:page", "property": "properties.title"},
        {"name": "plan", "type": "last", "event": "type:identify", "property": "plan"},
        {"name": "explicit", "type": "last", "event": "type:identify", "property": "traits.plan"},
        {"name": "tier", "type": "last", "event": "Upgraded", "property": "plan.tier"},
    )
    states = fold(
        features,
        [
            other("page", at(), context={"page": {"path": "/pricing"}}, properties={"title": "P"}),
            other("identify", at(), traits={"plan": "pro"}),
            track("Upgraded", at(), plan={"tier": "gold"}),
        ],
    )
    assert features.values(states, T0) == {
        "path": "/pricing",
        "title": "P",
        "plan": "pro",
        "explicit": "pro",
        "tier": "gold",
    }


def test_last_is_the_newest_by_timestamp_and_ties_go_to_the_later_applied() -> None:
    features = engine({"name": "plan", "type": "last", "event": "Plan", "property": "plan"})
    states: dict[str, Any] = {}
    assert features.apply(states, track("Plan", at(hours=2), plan="pro"))
    assert not features.apply(states, track("Plan", at(hours=1), plan="free"))
    assert not features.apply(states, track("Plan", at(hours=3)))
    assert features.values(states, T0)["plan"] == "pro"
    assert features.apply(states, track("Plan", at(hours=2), plan="team"))
    assert features.values(states, T0)["plan"] == "team"
    assert not features.apply(states, track("Plan", at(hours=2), plan="team"))


def test_last_distinct_keeps_n_newest_first_and_moves_repeats() -> None:
    features = engine(
        {"name": "viewed", "type": "last_distinct", "event": "Viewed", "property": "sku", "n": 3}
    )
    skus = ["a", "b", "a", "c", "d", "b"]
    states = fold(features, [track("Viewed", at(hours=i), sku=s) for i, s in enumerate(skus)])
    assert features.values(states, T0)["viewed"] == ["b", "d", "c"]
    assert not features.apply(states, track("Viewed", at(minutes=30), sku="a"))
    assert not features.apply(states, track("Viewed", at(hours=4), sku="d"))
    assert features.apply(states, track("Viewed", at(hours=9), sku="c"))
    assert features.values(states, T0)["viewed"] == ["c", "b", "d"]


def test_last_distinct_keeps_true_apart_from_one() -> None:
    features = engine(
        {"name": "flags", "type": "last_distinct", "event": "Flag", "property": "v", "n": 5}
    )
    states = fold(features, [track("Flag", at(hours=1), v=1), track("Flag", at(hours=2), v=True)])
    assert features.values(states, T0)["flags"] == [True, 1]


def test_first_and_last_time() -> None:
    features = engine(
        {"name": "first", "type": "first_time", "event": "Login"},
        {"name": "last", "type": "last_time", "event": "Login"},
    )
    hours = [5, 2, 9, 7]
    states = fold(features, [track("Login", at(hours=h)) for h in hours])
    assert features.values(states, T0) == {"first": at(hours=2), "last": at(hours=9)}
    assert not features.apply(states, track("Login", at(hours=2)))
    assert not features.apply(states, track("Login", at(hours=9)))
    assert features.apply(states, track("Login", at(hours=1)))


def test_bucket_width_is_about_one_percent_of_the_window() -> None:
    assert bucket_width(7 * 86400) == 3600
    assert bucket_width(30 * 86400) == 21600
    assert bucket_width(86400) == 600
    assert bucket_width(3600) == 30
    assert bucket_width(10) == 1
    for days in (1, 7, 30, 90, 365):
        window = days * 86400
        assert 100 <= window / bucket_width(window) <= 400


WINDOWED = (
    {"name": "orders_7d", "type": "count", "event": "Order Completed", "window": "7d"},
    {
        "name": "revenue_7d",
        "type": "sum",
        "event": "Order Completed",
        "property": "revenue",
        "window": "7d",
    },
)


def test_window_counts_only_events_inside_now_minus_window() -> None:
    features = engine(*WINDOWED)
    now = T0 + timedelta(days=10)
    lower = now - timedelta(days=7)
    events = [
        track("Order Completed", isoformat(lower - timedelta(days=1)), revenue=100),
        track("Order Completed", isoformat(lower - timedelta(milliseconds=1)), revenue=50),
        track("Order Completed", isoformat(lower), revenue=1),
        track("Order Completed", isoformat(now - timedelta(days=1)), revenue="2.5"),
        track("Order Completed", isoformat(now), revenue=4),
    ]
    states = fold(features, events)
    assert features.values(states, now) == {"orders_7d": 3, "revenue_7d": 7.5}
    future = track("Order Completed", isoformat(now + timedelta(hours=1)), revenue=1000)
    assert features.apply(states, future)
    assert features.values(states, now) == {"orders_7d": 2, "revenue_7d": 6.5}
    later = now + timedelta(days=6, hours=23)
    assert features.values(states, later) == {"orders_7d": 2, "revenue_7d": 1004}
    assert features.values(states, now + timedelta(days=30)) == {"orders_7d": 0, "revenue_7d": 0}


def test_window_buckets_stay_bounded_and_old_events_are_dropped() -> None:
    features = engine(*WINDOWED)
    states = fold(
        features,
        [track("Order Completed", at(hours=h), revenue=1) for h in range(0, 60 * 24, 3)],
    )
    buckets = states["orders_7d"]["buckets"]
    assert len(buckets) <= 7 * 24 + 2
    assert not features.apply(states, track("Order Completed", at(days=1), revenue=1))
    assert features.values(states, T0 + timedelta(days=60)) == {
        "orders_7d": 56,
        "revenue_7d": 56,
    }


def test_windowed_state_is_independent_of_arrival_order() -> None:
    features = engine(*WINDOWED)
    events = [
        track("Order Completed", at(minutes=m), revenue=m % 7)
        for m in random.Random(3).sample(range(20 * 24 * 60), 200)
    ]
    ordered = fold(features, sorted(events, key=lambda event: event["timestamp"]))
    for seed in range(5):
        shuffled = events[:]
        random.Random(seed).shuffle(shuffled)
        assert fold(features, shuffled) == ordered


@pytest.mark.parametrize("seed", range(6))
def test_order_insensitive_types_give_the_in_order_state_for_any_arrival_order(seed: int) -> None:
    features = engine(*MIXED)
    timeline = mixed_timeline(seed)
    expected = fold(features, timeline)
    shuffled = timeline[:]
    random.Random(seed + 100).shuffle(shuffled)
    assert fold(features, shuffled) == expected
    assert features.recompute(shuffled) == expected
    assert not features.order_sensitive()


def test_recompute_equals_sequential_apply_in_timestamp_order_with_a_cart() -> None:
    features = engine(*MIXED, {"name": "cart", "type": "cart"})
    timeline = [
        *mixed_timeline(7),
        track("Product Added", at(days=3, seconds=30), product_id="p1", price=5),
        track("Product Added", at(days=4, seconds=30), product_id="p2", price=3),
        track("Product Removed", at(days=5, seconds=30), product_id="p1"),
    ]
    in_order = sorted(timeline, key=lambda event: event["timestamp"])
    reversed_input = list(reversed(in_order))
    assert features.recompute(reversed_input) == fold(features, in_order)
    assert features.order_sensitive()


def test_states_survive_a_json_round_trip() -> None:
    features = engine(*MIXED, {"name": "cart", "type": "cart"})
    timeline = [
        *mixed_timeline(11),
        track("Product Added", at(days=60), product_id=7, price="1.5", quantity=2),
        track("Product Added", at(days=61), product_id="x", name="X"),
    ]
    direct: dict[str, Any] = {}
    reloaded: dict[str, Any] = {}
    for event in timeline:
        features.apply(direct, event)
        features.apply(reloaded, event)
        reloaded = orjson.loads(orjson.dumps(reloaded))
    assert reloaded == direct
    now = T0 + timedelta(days=62)
    assert features.values(reloaded, now) == features.values(direct, now)


def test_values_do_not_mutate_or_share_states() -> None:
    features = engine(*MIXED, {"name": "cart", "type": "cart"})
    states = fold(
        features, [*mixed_timeline(5), track("Product Added", at(days=1), product_id="p")]
    )
    before = copy.deepcopy(states)
    values = features.values(states, T0 + timedelta(days=51))
    values["viewed"].append("zzz")
    values["cart"]["items"][0]["quantity"] = 99
    assert states == before


def cart_value(states: dict[str, Any], features: FeatureEngine) -> dict[str, Any]:
    value: dict[str, Any] = features.values(states, T0)["cart"]
    return value


def test_cart_adds_removes_and_values_lines() -> None:
    features = engine({"name": "cart", "type": "cart"})
    states = fold(
        features,
        [
            track("Product Added", at(minutes=1), product_id="p1", price=10, name="Mug"),
            track("Product Added", at(minutes=2), product_id="p2", price="2.5", quantity="3"),
            track("Product Added", at(minutes=3), product_id="p1", quantity=2, category="Home"),
            track("Product Removed", at(minutes=4), product_id="p2"),
        ],
    )
    assert cart_value(states, features) == {
        "items": [
            {"product_id": "p1", "quantity": 3, "price": 10, "name": "Mug", "category": "Home"},
            {"product_id": "p2", "quantity": 2, "price": 2.5},
        ],
        "count": 5,
        "value": 35,
        "updated_at": at(minutes=4),
    }
    assert features.apply(
        states, track("Product Removed", at(minutes=5), product_id="p2", quantity=5)
    )
    assert [item["product_id"] for item in cart_value(states, features)["items"]] == ["p1"]


def test_cart_ignores_unusable_events() -> None:
    features = engine({"name": "cart", "type": "cart"})
    states = fold(features, [track("Product Added", at(minutes=1), product_id="p1")])
    before = copy.deepcopy(states)
    for event in (
        track("Product Removed", at(minutes=2), product_id="nope"),
        track("Product Added", at(minutes=2), product_id="p1", quantity=0),
        track("Product Added", at(minutes=2), product_id="p1", quantity="many"),
        track("Product Added", at(minutes=2)),
        track("Product Added", at(minutes=2), product_id=True),
    ):
        assert not features.apply(states, event)
    assert states == before


def test_order_completed_empties_the_cart() -> None:
    features = engine({"name": "cart", "type": "cart"})
    states = fold(
        features,
        [
            track("Product Added", at(minutes=1), product_id="p1", price=4),
            track("Product Added", at(minutes=2), sku="s2", price=1),
            track("Order Completed", at(minutes=3), products=[{"product_id": "p1"}]),
        ],
    )
    assert cart_value(states, features) == {
        "items": [],
        "count": 0,
        "value": 0,
        "updated_at": at(minutes=3),
    }


def test_cart_is_order_sensitive() -> None:
    features = engine({"name": "cart", "type": "cart"})
    added = track("Product Added", at(minutes=1), product_id="p1")
    completed = track("Order Completed", at(minutes=2))
    assert fold(features, [added, completed]) != fold(features, [completed, added])
    assert features.recompute([completed, added]) == fold(features, [added, completed])


@pytest.mark.parametrize(
    ("features", "path"),
    [
        (
            [
                {"name": "a", "type": "count", "event": "X"},
                {"name": "a", "type": "count", "event": "Y"},
            ],
            "features[1].name",
        ),
        ([{"name": "a", "type": "count", "event": "type:click"}], "features[0].event"),
        ([{"name": "a", "type": "count", "event": ["X", "type:nope"]}], "features[0].event[1]"),
        ([{"name": "a", "type": "last", "event": "X", "property": "a..b"}], "features[0].property"),
    ],
)
def test_bad_definitions_name_their_path(features: list[dict[str, Any]], path: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        FeatureEngine([FeatureConfig(**feature) for feature in features])
    assert caught.value.path == path


def test_a_feature_listing_an_event_twice_counts_it_once() -> None:
    features = engine(
        {"name": "orders", "type": "count", "event": ["Order Completed", "type:track"]}
    )
    assert fold(features, [track("Order Completed", at())]) == {"orders": 1}


def test_where_filters_events_in_dict_and_text_form() -> None:
    features = engine(
        {
            "name": "big_orders",
            "type": "count",
            "event": "Order Completed",
            "where": {"field": "properties.revenue", "gte": 100},
        },
        {
            "name": "eur_revenue",
            "type": "sum",
            "event": "Order Completed",
            "property": "revenue",
            "where": "properties.currency == 'EUR' and not context.channel == 'pos'",
        },
        {"name": "orders", "type": "count", "event": "Order Completed"},
    )
    events = [
        track("Order Completed", at(hours=1), revenue=150, currency="EUR"),
        track("Order Completed", at(hours=2), revenue=20, currency="EUR"),
        track("Order Completed", at(hours=3), revenue=500, currency="USD"),
        track("Order Completed", at(hours=4), revenue="not a number", currency="EUR"),
    ]
    pos = track("Order Completed", at(hours=5), revenue=1000, currency="EUR")
    pos["context"] = {"channel": "pos"}
    states = fold(features, [*events, pos])
    assert features.values(states, T0) == {"big_orders": 3, "eur_revenue": 170, "orders": 5}


def test_where_filter_is_rejected_with_its_path_when_invalid() -> None:
    with pytest.raises(DefinitionError) as caught:
        engine({"name": "a", "type": "count", "event": "X", "where": {"field": "x", "bogus": 1}})
    assert caught.value.path.startswith("features[0].where")


def test_time_dependent_where_is_judged_at_the_event_time() -> None:
    features = engine(
        {
            "name": "fresh_trials",
            "type": "count",
            "event": "Trial Started",
            "where": "properties.signed_up_at within 7d",
        }
    )
    events = [
        track("Trial Started", at(days=10), signed_up_at=at(days=5)),
        track("Trial Started", at(days=30), signed_up_at=at(days=5)),
        track("Trial Started", at(days=40), signed_up_at=at(days=39)),
    ]
    assert fold(features, events) == {"fresh_trials": 2}
    assert features.recompute(list(reversed(events))) == {"fresh_trials": 2}
