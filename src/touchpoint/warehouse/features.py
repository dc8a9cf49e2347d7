"""Feature tables: per person and per item, materialized by a job, read by every model.

Each table is computed from the events before a cutoff (`as_of`), so the same SQL builds
the features of "now" for scoring and of an earlier cutoff for training on what happened
after it (a time-based split, without leakage). Event names come from the models
configuration (`purchase_event`, `view_event`, `cart_event`).

person_features: profile_id, as_of, first_seen, last_seen, recency_days, tenure_days,
frequency (orders), monetary (order value), average_order_value, days_since_last_order,
orders_30d, orders_90d, revenue_30d, revenue_90d, events_7d, events_30d, views_7d,
views_30d, cart_adds_30d, distinct_items_30d, active_days_30d, last_items (the last
distinct items touched, newest first), category_affinity (JSON: category -> share of
the person's item interactions).

item_features: item_id, as_of, interactions_1d/7d/30d, views_7d, views_30d,
purchases_7d, purchases_30d, buyers_30d, interactions_total, last_interaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from touchpoint.core.clock import utcnow

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from touchpoint.warehouse.store import Warehouse

PERSON_FEATURES = "person_features"
ITEM_FEATURES = "item_features"
LAST_ITEMS = 20

# Numeric per-person features, in the order models take them.
NUMERIC_PERSON_FEATURES = (
    "recency_days",
    "tenure_days",
    "frequency",
    "monetary",
    "average_order_value",
    "days_since_last_order",
    "orders_30d",
    "orders_90d",
    "revenue_30d",
    "revenue_90d",
    "events_7d",
    "events_30d",
    "views_7d",
    "views_30d",
    "cart_adds_30d",
    "distinct_items_30d",
    "active_days_30d",
)


@dataclass(frozen=True, slots=True)
class EventNames:
    """Which events mean a purchase, a product view and an add to cart."""

    purchase: str = "Order Completed"
    view: str = "Product Viewed"
    cart: str = "Product Added"


_PERSON_SQL = """
WITH e AS (
    SELECT * FROM events WHERE profile_id IS NOT NULL AND timestamp < $as_of
),
base AS (
    SELECT
        profile_id,
        min(timestamp) AS first_seen,
        max(timestamp) AS last_seen,
        (epoch($as_of) - epoch(max(timestamp))) / 86400.0 AS recency_days,
        (epoch($as_of) - epoch(min(timestamp))) / 86400.0 AS tenure_days,
        count(*) FILTER (WHERE event = $purchase) AS frequency,
        coalesce(sum(value) FILTER (WHERE event = $purchase), 0.0) AS monetary,
        avg(value) FILTER (WHERE event = $purchase) AS average_order_value,
        (epoch($as_of) - epoch(max(timestamp) FILTER (WHERE event = $purchase))) / 86400.0
            AS days_since_last_order,
        count(*) FILTER (WHERE event = $purchase AND timestamp >= $as_of - INTERVAL 30 DAY)
            AS orders_30d,
        count(*) FILTER (WHERE event = $purchase AND timestamp >= $as_of - INTERVAL 90 DAY)
            AS orders_90d,
        coalesce(sum(value) FILTER (
            WHERE event = $purchase AND timestamp >= $as_of - INTERVAL 30 DAY), 0.0)
            AS revenue_30d,
        coalesce(sum(value) FILTER (
            WHERE event = $purchase AND timestamp >= $as_of - INTERVAL 90 DAY), 0.0)
            AS revenue_90d,
        count(*) FILTER (WHERE timestamp >= $as_of - INTERVAL 7 DAY) AS events_7d,
        count(*) FILTER (WHERE timestamp >= $as_of - INTERVAL 30 DAY) AS events_30d,
        count(*) FILTER (WHERE event = $view AND timestamp >= $as_of - INTERVAL 7 DAY)
            AS views_7d,
        count(*) FILTER (WHERE event = $view AND timestamp >= $as_of - INTERVAL 30 DAY)
            AS views_30d,
        count(*) FILTER (WHERE event = $cart AND timestamp >= $as_of - INTERVAL 30 DAY)
            AS cart_adds_30d,
        count(DISTINCT item_id) FILTER (WHERE timestamp >= $as_of - INTERVAL 30 DAY)
            AS distinct_items_30d,
        count(DISTINCT CAST(timestamp AS DATE)) FILTER (
            WHERE timestamp >= $as_of - INTERVAL 30 DAY) AS active_days_30d
    FROM e
    GROUP BY profile_id
),
touched AS (
    SELECT profile_id, item_id, max(timestamp) AS touched_at
    FROM interactions WHERE timestamp < $as_of
    GROUP BY profile_id, item_id
),
recent AS (
    SELECT profile_id, list(item_id ORDER BY touched_at DESC, item_id)[1:$last_items] AS last_items
    FROM touched GROUP BY profile_id
),
categories AS (
    SELECT profile_id, category, count(*) AS n
    FROM interactions WHERE timestamp < $as_of AND category IS NOT NULL
    GROUP BY profile_id, category
),
affinity AS (
    SELECT profile_id,
           CAST(to_json(map(list(category ORDER BY category),
                            list(round(n / total, 4) ORDER BY category))) AS VARCHAR)
               AS category_affinity
    FROM (SELECT *, sum(n) OVER (PARTITION BY profile_id) AS total FROM categories)
    GROUP BY profile_id
)
SELECT base.profile_id, $as_of AS as_of, base.* EXCLUDE (profile_id),
       coalesce(recent.last_items, []::VARCHAR[]) AS last_items,
       affinity.category_affinity
FROM base
LEFT JOIN recent USING (profile_id)
LEFT JOIN affinity USING (profile_id)
ORDER BY base.profile_id
"""

_ITEM_SQL = """
SELECT
    item_id,
    $as_of AS as_of,
    count(*) FILTER (WHERE timestamp >= $as_of - INTERVAL 1 DAY) AS interactions_1d,
    count(*) FILTER (WHERE timestamp >= $as_of - INTERVAL 7 DAY) AS interactions_7d,
    count(*) FILTER (WHERE timestamp >= $as_of - INTERVAL 30 DAY) AS interactions_30d,
    count(*) FILTER (WHERE event = $view AND timestamp >= $as_of - INTERVAL 7 DAY) AS views_7d,
    count(*) FILTER (WHERE event = $view AND timestamp >= $as_of - INTERVAL 30 DAY)
        AS views_30d,
    count(*) FILTER (WHERE event = $purchase AND timestamp >= $as_of - INTERVAL 7 DAY)
        AS purchases_7d,
    count(*) FILTER (WHERE event = $purchase AND timestamp >= $as_of - INTERVAL 30 DAY)
        AS purchases_30d,
    count(DISTINCT profile_id) FILTER (
        WHERE event = $purchase AND timestamp >= $as_of - INTERVAL 30 DAY) AS buyers_30d,
    count(*) AS interactions_total,
    max(timestamp) AS last_interaction
FROM interactions
WHERE timestamp < $as_of
GROUP BY item_id
ORDER BY item_id
"""


def _run(
    connection: duckdb.DuckDBPyConnection, sql: str, as_of: datetime, names: EventNames
) -> pa.Table:
    parameters = {
        "as_of": as_of,
        "purchase": names.purchase,
        "view": names.view,
        "cart": names.cart,
    }
    if "$last_items" in sql:
        parameters["last_items"] = LAST_ITEMS
    used = {key: value for key, value in parameters.items() if f"${key}" in sql}
    return connection.sql(sql, params=used).to_arrow_table()


def person_features(
    warehouse: Warehouse, *, as_of: datetime | None = None, names: EventNames | None = None
) -> pa.Table:
    """One row per person seen before `as_of` (default now), from events before it."""
    connection = warehouse.connect()
    try:
        return _run(connection, _PERSON_SQL, as_of or utcnow(), names or EventNames())
    finally:
        connection.close()


def item_features(
    warehouse: Warehouse, *, as_of: datetime | None = None, names: EventNames | None = None
) -> pa.Table:
    """One row per item interacted with before `as_of` (default now): popularity by window."""
    connection = warehouse.connect()
    try:
        return _run(connection, _ITEM_SQL, as_of or utcnow(), names or EventNames())
    finally:
        connection.close()


def materialize(
    warehouse: Warehouse,
    *,
    as_of: datetime | None = None,
    names: EventNames | None = None,
    people: pa.Table | None = None,
) -> dict[str, int]:
    """Compute both feature tables as of `as_of` (default now) and replace the stored ones
    (`people`: the person table as of that cutoff, when the caller has it already); rows
    per table."""
    moment = as_of or utcnow()
    if people is None:
        people = person_features(warehouse, as_of=moment, names=names)
    items = item_features(warehouse, as_of=moment, names=names)
    warehouse.write_feature_table(PERSON_FEATURES, people)
    warehouse.write_feature_table(ITEM_FEATURES, items)
    return {PERSON_FEATURES: people.num_rows, ITEM_FEATURES: items.num_rows}
