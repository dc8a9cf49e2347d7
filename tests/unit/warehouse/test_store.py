"""The warehouse's files, SQL views, feature tables and erasure, on hand-made rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from touchpoint.core.errors import InvalidInput
from touchpoint.warehouse.features import materialize, person_features
from touchpoint.warehouse.schema import EVENTS_SCHEMA, event_row, events_table
from touchpoint.warehouse.store import Warehouse

NOW = datetime(2026, 11, 20, tzinfo=UTC)


def event(offset: int, person: str, name: str, days_ago: float, **properties: Any) -> dict:
    stored = {
        "type": "track",
        "event": name,
        "messageId": f"m{offset}",
        "userId": person,
        "timestamp": (NOW - timedelta(days=days_ago)).isoformat(),
        "receivedAt": NOW.isoformat(),
        "properties": properties,
    }
    return event_row(stored, partition=0, offset=offset, profile_id=f"P{person}")


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    store = Warehouse(tmp_path / "warehouse")
    rows = [
        event(1, "ada", "Product Viewed", 3, product_id="shoe", category="shoes"),
        event(
            2,
            "ada",
            "Order Completed",
            2,
            revenue=30,
            products=[
                {"product_id": "shoe", "price": 10, "category": "shoes"},
                {"product_id": "hat", "price": 20, "category": "hats"},
            ],
        ),
        event(3, "bob", "Product Viewed", 40, product_id="hat", category="hats"),
        event(4, "bob", "Product Viewed", 0.5, product_id="hat", category="hats"),
    ]
    store.append_events(events_table(rows), {0: 5})
    return store


def test_an_empty_warehouse_answers_with_the_stable_schema(tmp_path: Path) -> None:
    store = Warehouse(tmp_path / "empty")
    assert store.query("SELECT count(*) AS n FROM events").to_pylist() == [{"n": 0}]
    columns = store.query("SELECT * FROM events").column_names
    assert columns[: len(EVENTS_SCHEMA)] == EVENTS_SCHEMA.names


def test_rows_land_in_one_file_per_date_listed_by_the_manifest(warehouse: Warehouse) -> None:
    dates = sorted(path.parent.name for path in warehouse.event_files())
    assert dates == ["date=2026-10-11", "date=2026-11-17", "date=2026-11-18", "date=2026-11-19"]
    assert warehouse.manifest().positions == {0: 5}


def test_files_the_manifest_does_not_list_are_never_read(warehouse: Warehouse) -> None:
    """What a copy that crashed before its manifest change left behind: invisible, then
    deleted by the next change."""
    live = warehouse.event_files()[0]
    stray = live.with_name("crashed.parquet")
    stray.write_bytes(live.read_bytes())
    assert warehouse.query("SELECT count(*) AS n FROM events").to_pylist() == [{"n": 4}]
    warehouse.append_events(events_table([event(5, "cy", "Product Viewed", 1)]), {0: 6})
    assert not stray.exists()
    assert warehouse.query("SELECT count(*) AS n FROM events").to_pylist() == [{"n": 5}]


def test_typed_columns_and_the_interactions_view(warehouse: Warehouse) -> None:
    order = warehouse.query("SELECT value, properties FROM events WHERE event = 'Order Completed'")
    assert order["value"].to_pylist() == [30.0]
    lines = warehouse.query(
        "SELECT item_id, price FROM interactions WHERE event = 'Order Completed' ORDER BY 1"
    ).to_pylist()
    assert lines == [{"item_id": "hat", "price": 20.0}, {"item_id": "shoe", "price": 10.0}]


def test_person_features_use_only_events_before_the_cutoff(warehouse: Warehouse) -> None:
    now = {row["profile_id"]: row for row in person_features(warehouse, as_of=NOW).to_pylist()}
    assert now["Pada"]["frequency"] == 1 and now["Pada"]["monetary"] == 30.0
    assert now["Pada"]["recency_days"] == pytest.approx(2.0)
    assert now["Pada"]["last_items"][0] in {"shoe", "hat"}
    assert now["Pbob"]["views_7d"] == 1 and now["Pbob"]["views_30d"] == 1
    earlier = person_features(warehouse, as_of=NOW - timedelta(days=10)).to_pylist()
    assert [row["profile_id"] for row in earlier] == ["Pbob"]  # ada had no event yet
    assert earlier[0]["frequency"] == 0 and earlier[0]["events_7d"] == 0


def test_materialized_tables_become_views(warehouse: Warehouse) -> None:
    counts = materialize(warehouse, as_of=NOW)
    assert counts == {"person_features": 2, "item_features": 2}
    rows = warehouse.query("SELECT item_id, purchases_7d FROM item_features ORDER BY 1")
    assert rows.to_pylist() == [
        {"item_id": "hat", "purchases_7d": 1},
        {"item_id": "shoe", "purchases_7d": 1},
    ]


def test_erasure_rewrites_the_files_that_hold_the_person(warehouse: Warehouse) -> None:
    materialize(warehouse, as_of=NOW)
    removed = warehouse.erase(profile_ids=["Pada"])
    assert removed == {"events": 2, "features": 1}
    left = warehouse.query("SELECT DISTINCT profile_id FROM events").to_pylist()
    assert left == [{"profile_id": "Pbob"}]
    assert len(warehouse.event_files()) == 2  # ada's two dates held only her events
    assert warehouse.query("SELECT profile_id FROM person_features").to_pylist() == [
        {"profile_id": "Pbob"}
    ]


def test_erasure_by_routing_key_and_message_id(warehouse: Warehouse) -> None:
    assert warehouse.erase(keys=["bob"])["events"] == 2
    assert warehouse.erase(message_ids=["m1"])["events"] == 1
    assert warehouse.query("SELECT message_id FROM events").to_pylist() == [{"message_id": "m2"}]


def test_a_bad_statement_is_invalid_input_naming_the_problem(warehouse: Warehouse) -> None:
    with pytest.raises(InvalidInput) as raised:
        warehouse.query("SELECT nope FROM events")
    assert "nope" in raised.value.message and raised.value.details == {"field": "sql"}


def test_items_are_upserted_by_id(warehouse: Warehouse) -> None:
    warehouse.write_items(pa.table({"item_id": ["a", "b"], "name": ["A", "B"]}))
    written = warehouse.write_items(pa.table({"item_id": [2, None], "name": ["two", "x"]}))
    assert written == 3  # a, b, 2; the row without an id is dropped
    rows = warehouse.query("SELECT item_id, name FROM items ORDER BY 1").to_pylist()
    assert rows == [
        {"item_id": "2", "name": "two"},
        {"item_id": "a", "name": "A"},
        {"item_id": "b", "name": "B"},
    ]
    warehouse.write_items(pa.table({"item_id": ["a"], "name": ["A2"], "price": [3.5]}))
    rows = warehouse.query("SELECT item_id, name, price FROM items ORDER BY 1").to_pylist()
    assert rows[1] == {"item_id": "a", "name": "A2", "price": 3.5}
    with pytest.raises(InvalidInput):
        warehouse.write_items(pa.table({"sku": ["a"]}))


def test_feature_table_names_are_checked(warehouse: Warehouse) -> None:
    with pytest.raises(InvalidInput):
        warehouse.write_feature_table("../escape", pa.table({"a": [1]}))


def test_a_message_copied_twice_is_one_event(warehouse: Warehouse) -> None:
    """Sent again after the log's dedup window: appended and copied again, counted once."""
    again = event(9, "ada", "Product Viewed", 3, product_id="shoe", category="shoes")
    again["message_id"] = "m1"
    warehouse.append_events(events_table([again]), {0: 10})
    rows = warehouse.query("SELECT \"offset\" FROM events WHERE message_id = 'm1'").to_pylist()
    assert rows == [{"offset": 1}]
    assert warehouse.query("SELECT count(*) AS n FROM events").to_pylist() == [{"n": 4}]
