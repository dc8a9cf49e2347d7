"""Imports of events, profiles and items: reading CSV, Parquet and JSON lines with the
right line numbers, the column mapping and its types, bad rows reported and good rows
imported through the collector, applied to profiles with identity resolution, and
re-imports that add nothing."""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from touchpoint.collect.import_sources import UnreadableFile
from touchpoint.collect.import_values import convert, parse_moment
from touchpoint.collect.imports import (
    ImportOptions,
    ImportProgress,
    ImportResult,
    apply_imported,
    import_file,
    import_items,
    log_positions,
    message_id,
)
from touchpoint.config.settings import load_settings
from touchpoint.core.errors import InvalidInput
from touchpoint.runtime import Workspace

CONFIG: dict[str, Any] = {
    "workspace": "imports",
    "secret_key": "sk_test_imports_0123456789",
    "sources": [
        {"name": "web", "write_key": "wk_test_imports_web", "tracking_plan_mode": "flag"},
        {"name": "strict", "write_key": "wk_test_imports_strict", "tracking_plan_mode": "enforce"},
    ],
    "identity": {"hash_secret": "test-hash-secret-imports"},
    "tracking_plan": {
        "events": {
            "Order Completed": {
                "properties": {
                    "type": "object",
                    "required": ["revenue"],
                    "properties": {"revenue": {"type": "number", "minimum": 0}},
                }
            }
        }
    },
    "features": [
        {"name": "orders", "type": "count", "event": "Order Completed"},
        {"name": "revenue", "type": "sum", "event": "Order Completed", "property": "revenue"},
    ],
}


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    path = tmp_path / "touchpoint.yaml"
    path.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    opened = Workspace.open(load_settings(path, tmp_path / "data", environ={}))
    yield opened
    opened.close()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def logged(workspace: Workspace) -> list[dict[str, Any]]:
    """Every stored event in the log, ordered by the row's `line` property when present."""
    found = []
    for partition in range(workspace.log.partitions):
        for entry in workspace.log.read(partition, 0, 10_000):
            found.append(orjson.loads(entry.payload))
    return sorted(found, key=lambda event: str(event.get("properties", {}).get("n", "")))


def profile_of(workspace: Workspace, kind: str, value: str) -> str | None:
    identity = workspace.resolver.identity_for_lookup(kind, value, workspace.hasher)
    return workspace.profiles.find(identity)


def run(workspace: Workspace, kind: str, path: Path, **options: Any) -> ImportResult:
    source = options.pop("source", None)
    errors_file = options.pop("errors_file", None)
    return import_file(
        workspace,
        kind,  # type: ignore[arg-type]
        path,
        ImportOptions(**options),
        source=source,
        errors_file=errors_file,
    )


ORDERS_CSV = """user_id,event,timestamp,n,amount
u1,Order Completed,2024-05-01T10:00:00Z,1,10.5
u1,Order Completed,19970101,2,4
u2,Product Viewed,1997-01-02,3,
"""


# -- reading and mapping ---------------------------------------------------------------------


def test_csv_events_use_the_default_mapping_and_keep_csv_values_as_text(
    workspace: Workspace, tmp_path: Path
) -> None:
    result = run(workspace, "events", write(tmp_path / "orders.csv", ORDERS_CSV))

    assert (result.rows_read, result.imported, result.bad_row_count) == (3, 3, 0)
    assert result.succeeded and result.file_format == "csv"
    first, second, third = logged(workspace)
    assert first["type"] == "track" and first["userId"] == "u1"
    assert first["event"] == "Order Completed"
    assert first["timestamp"] == "2024-05-01T10:00:00.000Z"
    assert first["properties"] == {"n": "1", "amount": "10.5"}  # text unless typed
    assert second["timestamp"] == "1997-01-01T00:00:00.000Z"  # YYYYMMDD
    assert third["timestamp"] == "1997-01-02T00:00:00.000Z" and "amount" not in third["properties"]
    assert first["messageId"].startswith("import-") and first["source"] == "web"


def test_typed_and_explicit_mappings(workspace: Workspace, tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.csv",
        "Customer ID,what,when,n,amount,qty,vip,shipped,ip,notes\n"
        "c1,Order Completed,2024-01-02 03:04:05,1,12.50,3,yes,2024-01-03,1.2.3.4,drop me\n",
    )
    result = run(
        workspace,
        "events",
        path,
        mapping=(
            "what=event",
            "when=timestamp",
            "amount=properties.revenue:number",
            "qty=properties.quantity:int",
            "vip=properties.vip:bool",
            "shipped=properties.shipped_at:datetime",
            "ip=context.ip",
            "notes=-",
        ),
    )
    assert result.imported == 1, result.bad_rows
    (event,) = logged(workspace)
    assert event["userId"] == "c1"  # `Customer ID` is customer_id by name
    assert event["event"] == "Order Completed"
    assert event["timestamp"] == "2024-01-02T03:04:05.000Z"
    assert event["properties"] == {
        "n": "1",
        "revenue": 12.5,
        "quantity": 3,
        "vip": True,
        "shipped_at": "2024-01-03T00:00:00.000Z",
    }
    assert event["context"]["ip"] == "1.2.3.0"  # imported like live events: truncated to /24


def test_event_option_names_every_row_and_an_event_column_becomes_a_property(
    workspace: Workspace, tmp_path: Path
) -> None:
    path = write(tmp_path / "e.csv", "user_id,event,n\nu1,legacy,1\n")
    result = run(workspace, "events", path, event="Order Completed")
    assert result.imported == 1
    (event,) = logged(workspace)
    assert event["event"] == "Order Completed" and event["properties"]["event"] == "legacy"


def test_bad_csv_rows_are_reported_by_physical_line_and_the_good_ones_imported(
    workspace: Workspace, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "bad.csv",
        "user_id,event,timestamp,n,amount\n"  # line 1
        'u1,"Order\nCompleted",2024-01-01,1,5\n'  # lines 2-3: a quoted newline
        "u2,Order Completed,31/12/2024,2,5\n"  # line 4: a date it cannot read
        "\n"  # line 5: blank, skipped
        ",Order Completed,2024-01-01,3,5\n"  # line 6: no id
        "u3,Order Completed,2024-01-01,4,five\n"  # line 7: not a number
        "u4,Order Completed,2024-01-01,5\n"  # line 8: a value short
        'u5,"Order Completed",2024-01-01,"6\nsix",7\n'  # lines 9-10: fine
        "u6,Order Completed,1950-01-01,7,1\n"  # line 11: before 1970
        "u7,Order Completed,2024-01-01,8,1\n",  # line 12: fine
    )
    errors_file = tmp_path / "errors.csv"
    result = run(
        workspace,
        "events",
        path,
        mapping=("amount=properties.revenue:number",),
        errors_file=errors_file,
    )

    assert (result.rows_read, result.imported, result.bad_row_count) == (8, 3, 5)
    assert [(bad.line, bad.column) for bad in result.bad_rows] == [
        (4, "timestamp"),
        (6, "user_id"),
        (7, "amount"),
        (8, "<row>"),
        (11, "timestamp"),
    ]
    reasons = {bad.line: bad.reason for bad in result.bad_rows}
    assert "31/12/2024" in reasons[4] and "five" in reasons[7] and "1970" in reasons[11]
    assert "4 values" in reasons[8] and "5 columns" in reasons[8]
    assert sorted(event["userId"] for event in logged(workspace)) == ["u1", "u5", "u7"]
    lines = errors_file.read_text().splitlines()
    assert lines[0] == "line,column,reason" and len(lines) == 6
    assert lines[1].startswith("4,timestamp,")


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_quoted_newline_pushes_the_following_lines_down(
    workspace: Workspace, tmp_path: Path, newline: str
) -> None:
    text = 'user_id,event,note\nu1,Signed Up,"one\ntwo\nthree"\n,Signed Up,x\nu2,Signed Up,y\n'
    path = tmp_path / "q.csv"
    path.write_bytes(text.replace("\n", newline).encode())
    result = run(workspace, "events", path)
    assert result.imported == 2
    assert [(bad.line, bad.column) for bad in result.bad_rows] == [(5, "user_id")]
    notes = {event["userId"]: event["properties"]["note"] for event in logged(workspace)}
    assert notes == {"u1": f"one{newline}two{newline}three", "u2": "y"}


def test_jsonl_keeps_types_nested_objects_and_reports_lines(
    workspace: Workspace, tmp_path: Path
) -> None:
    lines = [
        {"userId": "u1", "event": "Order Completed", "properties": {"revenue": 3, "n": 1}},
        {"anonymous_id": "a1", "event": "Viewed", "price": 2.5, "tags": ["x"], "n": 2},
    ]
    text = "\n".join(orjson.dumps(line).decode() for line in lines)
    path = write(tmp_path / "e.jsonl", text + "\n\n{not json\n[1, 2]\n" + '{"event": "x"}\n')
    result = run(workspace, "events", path)

    assert result.imported == 2
    assert [(bad.line, bad.column) for bad in result.bad_rows] == [
        (4, "<row>"),
        (5, "<row>"),
        (6, "userId / anonymous_id"),
    ]
    first, second = logged(workspace)
    assert first["properties"] == {"revenue": 3, "n": 1}
    assert second["anonymousId"] == "a1" and second["event"] == "Viewed"
    assert second["properties"] == {"price": 2.5, "tags": ["x"], "n": 2}


def test_a_jsonl_mapping_naming_a_key_no_line_has_is_noted(
    workspace: Workspace, tmp_path: Path
) -> None:
    path = write(tmp_path / "e.jsonl", '{"user_id": "u1", "event": "X", "revenue": 2}\n')
    result = run(workspace, "events", path, mapping=("revnue=properties.amount:number",))
    assert result.imported == 1
    assert result.notes == ("--map names columns no row had a value in: revnue",)


def test_gzipped_jsonl_is_read(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"user_id": 7, "event": "Signed Up"}\n'))
    result = run(workspace, "events", path)
    assert result.imported == 1 and logged(workspace)[0]["userId"] == "7"


def test_parquet_rows_are_numbered_from_one_and_keep_their_types(
    workspace: Workspace, tmp_path: Path
) -> None:
    table = pa.table(
        {
            "cust": [1, 2, None, 4],
            "event": ["Order Completed"] * 4,
            "at": [datetime(2024, 1, d, 12, tzinfo=UTC) for d in (1, 2, 3, 4)],
            "revenue": [1.5, 2.0, 3.0, float("nan")],
            "n": [1, 2, 3, 4],
            "day": [date(2024, 1, 1)] * 4,
        }
    )
    path = tmp_path / "orders.parquet"
    pq.write_table(table, path)
    seen: list[ImportProgress] = []
    result = import_file(
        workspace,
        "events",
        path,
        ImportOptions(mapping=("cust=userId", "at=timestamp"), batch_size=2),
        on_progress=seen.append,
    )
    assert result.imported == 3
    assert [(bad.line, bad.column) for bad in result.bad_rows] == [(3, "cust")]
    assert seen[-1].rows_read == 4 and seen[-1].total_rows == 4
    first, second, fourth = logged(workspace)
    assert first["userId"] == "1" and first["timestamp"] == "2024-01-01T12:00:00.000Z"
    assert second["userId"] == "2" and fourth["userId"] == "4"
    assert first["properties"] == {"revenue": 1.5, "n": 1, "day": "2024-01-01"}
    assert "revenue" not in fourth["properties"]  # NaN is absent


def test_two_columns_that_default_to_one_field_keep_the_first_there(
    workspace: Workspace, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "c.csv",
        "user_id,customer_id,event,created_at,timestamp\nu1,c1,Signed Up,2024-01-01,2024-02-02\n",
    )
    run(workspace, "events", path)
    (event,) = logged(workspace)
    assert event["userId"] == "u1" and event["properties"]["customer_id"] == "c1"
    assert event["timestamp"] == "2024-01-01T00:00:00.000Z"
    assert event["properties"]["timestamp"] == "2024-02-02"


@pytest.mark.parametrize(
    ("mapping", "event", "text", "words"),
    [
        (("nope=userId",), None, "user_id,event\n", "does not have: nope"),
        (("user_id=userId:number",), None, "user_id,event\n", "cannot be typed"),
        (("a=properties.x:money",), None, "a,user_id,event\n", "unknown type 'money'"),
        (("a=traits.plan",), None, "a,user_id,event\n", "context.traits"),
        (("a",), None, "a,user_id,event\n", "COLUMN=FIELD"),
        ((), None, "who,event\n", "userId or anonymousId"),
        ((), None, "user_id,n\n", "event name"),
        (("what=event",), "Signed Up", "user_id,what\n", "both name the event"),
        (("a=properties.b",), None, "a,b,user_id,event\n", "'b' would go to properties.b"),
    ],
)
def test_bad_options_are_refused_before_importing(
    workspace: Workspace,
    tmp_path: Path,
    mapping: tuple[str, ...],
    event: str | None,
    text: str,
    words: str,
) -> None:
    path = write(tmp_path / "x.csv", text + "u1,Signed Up\n")
    with pytest.raises(InvalidInput) as raised:
        run(workspace, "events", path, mapping=mapping, event=event)
    assert words in raised.value.message
    assert logged(workspace) == []


def test_unreadable_files(workspace: Workspace, tmp_path: Path) -> None:
    with pytest.raises(UnreadableFile):
        run(workspace, "events", tmp_path / "missing.csv")
    with pytest.raises(UnreadableFile):
        run(workspace, "events", write(tmp_path / "broken.parquet", "not parquet"))
    with pytest.raises(UnreadableFile, match="empty"):
        run(workspace, "events", write(tmp_path / "empty.csv", ""))
    with pytest.raises(InvalidInput, match="--format"):
        run(workspace, "events", write(tmp_path / "x.xlsx", ""))


def test_a_file_that_breaks_midway_keeps_the_rows_before(
    workspace: Workspace, tmp_path: Path
) -> None:
    rows = "".join(f"u{n},Signed Up,{n}\n" for n in range(3000))
    whole = gzip.compress(("user_id,event,n\n" + rows).encode())
    path = tmp_path / "truncated.csv.gz"
    path.write_bytes(whole[: len(whole) * 2 // 3])  # a download cut short
    result = run(workspace, "events", path, batch_size=100)
    assert result.aborted is not None and "cannot be read past line" in result.aborted
    assert 1000 < result.imported == result.rows_read < 3000 and not result.succeeded
    read = result.rows_read
    assert f"past line {read + 1}" in result.aborted


def test_a_line_that_is_not_utf8_is_a_bad_row(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        "\ufeffuser_id,event,n\nu1,Signed Up,1\nu2,Caf\xe9,2\nu3,Signed Up,3\n".encode().replace(
            b"\xc3\xa9", b"\xe9"
        )
    )
    result = run(workspace, "events", path)
    assert result.imported == 2 and result.succeeded
    assert [(bad.line, bad.column, bad.reason) for bad in result.bad_rows] == [
        (3, "<row>", "not UTF-8 text")
    ]


def test_the_result_keeps_the_first_bad_rows_and_counts_the_rest(
    workspace: Workspace, tmp_path: Path
) -> None:
    rows = "".join(f",Signed Up,{n}\n" for n in range(30))
    path = write(tmp_path / "bad.csv", "user_id,event,n\n" + rows + "u1,Signed Up,x\n")
    result = run(workspace, "events", path, kept_bad_rows=5, batch_size=7)
    assert result.bad_row_count == 30 and len(result.bad_rows) == 5
    assert [bad.line for bad in result.bad_rows] == [2, 3, 4, 5, 6]
    assert result.imported == 1 and result.succeeded


def test_values_and_times() -> None:
    expected = datetime(1997, 1, 1, tzinfo=UTC)
    for value in ("19970101", 19970101, "1997-01-01", "1997-01-01T00:00:00Z", date(1997, 1, 1)):
        assert parse_moment(value) == expected
    assert parse_moment("2024-05-01T12:00:00+02:00") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert parse_moment(1_700_000_000) == parse_moment(1_700_000_000_000)
    for bad in ("31/12/2024", "19971301", "1950-01-01", True, "soon"):
        with pytest.raises(ValueError):
            parse_moment(bad)
    assert convert("0012", "int") == 12 and convert("3.0", "int") == 3
    assert convert("1e3", "number") == 1000.0 and convert("7", "number") == 7
    assert convert("No", "bool") is False and convert(12, "string") == "12"
    for value, value_type in (("1.5", "int"), ("nan", "number"), ("maybe", "bool")):
        with pytest.raises(ValueError):
            convert(value, value_type)  # type: ignore[arg-type]


def test_message_ids_are_deterministic_and_depend_on_the_content() -> None:
    message = {"type": "track", "userId": "u1", "event": "X", "properties": {"a": 1, "b": 2}}
    reordered = {"event": "X", "properties": {"b": 2, "a": 1}, "userId": "u1", "type": "track"}
    assert message_id("events", message) == message_id("events", reordered)
    assert message_id("events", message) != message_id("profiles", message)
    assert message_id("events", message) != message_id("events", {**message, "event": "Y"})


# -- through the collector and the processor -------------------------------------------------


def test_tracking_plan_rejections_are_reported_by_line_and_column(
    workspace: Workspace, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "orders.csv",
        "user_id,event,amount\n"
        "u1,Order Completed,5\n"
        "u2,Order Completed,-3\n"
        "u3,Order Completed,\n"
        "u4,Product Viewed,\n",
    )
    mapping = ("amount=properties.revenue:number",)
    strict = run(workspace, "events", path, mapping=mapping, source="strict")
    assert strict.imported == 2 and strict.bad_row_count == 2
    assert [(bad.line, bad.column) for bad in strict.bad_rows] == [(3, "amount"), (4, "properties")]
    assert all(bad.reason.startswith("tracking plan: ") for bad in strict.bad_rows)
    assert "revenue" in strict.bad_rows[1].reason

    flagged = run(workspace, "events", path, mapping=mapping, source="web")
    assert flagged.bad_row_count == 0 and flagged.flagged == 2
    with pytest.raises(InvalidInput, match="no source named 'nope'"):
        run(workspace, "events", path, mapping=mapping, source="nope")


def test_imported_events_and_profiles_resolve_to_one_profile(
    workspace: Workspace, tmp_path: Path
) -> None:
    since = log_positions(workspace.log)
    events = write(
        tmp_path / "orders.csv",
        "user_id,anonymous_id,event,timestamp,amount\n"
        "u1,,Order Completed,2024-01-01,10\n"
        ",a9,Order Completed,2024-01-02,5\n"
        "u1,a9,Order Completed,2024-01-03,2.5\n",
    )
    profiles = write(
        tmp_path / "crm.csv",
        "customer_id,email,plan,signup\nu1,Ann@Example.com,gold,2023-06-01\nu2,b@x.org,free,\n",
    )
    mapping = ("amount=properties.revenue:number",)
    assert run(workspace, "events", events, mapping=mapping).imported == 3
    assert (
        run(workspace, "profiles", profiles, mapping=("signup=traits.signup:datetime",)).imported
        == 2
    )

    applied = apply_imported(workspace, since)
    assert applied.remaining == 0 and applied.applied == 5

    person = profile_of(workspace, "user_id", "u1")
    assert person is not None
    assert profile_of(workspace, "email", "ann@example.com") == person
    assert profile_of(workspace, "anonymous_id", "a9") == person  # merged by the third order
    profile = workspace.profiles.get(person)
    assert profile is not None
    assert profile.traits["plan"] == "gold"
    assert profile.traits["signup"] == "2023-06-01T00:00:00.000Z"
    assert profile.features["orders"] == 3 and profile.features["revenue"] == 17.5
    assert profile_of(workspace, "user_id", "u2") not in (None, person)


def test_importing_the_same_file_twice_adds_nothing(workspace: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path / "orders.csv", ORDERS_CSV)
    mapping = ("amount=properties.revenue:number",)
    first = run(workspace, "events", path, mapping=mapping)
    apply_imported(workspace, {})
    after_first = log_positions(workspace.log)
    second = run(workspace, "events", path, mapping=mapping)

    assert (first.imported, first.duplicates) == (3, 0)
    assert (second.imported, second.duplicates) == (0, 3)
    assert log_positions(workspace.log) == after_first
    assert apply_imported(workspace, after_first).applied == 0
    assert orders_of(workspace, "u1") == 2


def test_a_reimport_past_the_log_dedup_window_changes_no_profile(tmp_path: Path) -> None:
    path = tmp_path / "touchpoint.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "collect": {"dedup_window": "1ms"}}))
    workspace = Workspace.open(load_settings(path, tmp_path / "data", environ={}))
    try:
        orders = write(tmp_path / "orders.csv", ORDERS_CSV)
        run(workspace, "events", orders)
        apply_imported(workspace, {})
        time.sleep(0.01)
        since = log_positions(workspace.log)
        again = run(workspace, "events", orders)
        assert again.imported == 3  # the log forgot the ids...
        applied = apply_imported(workspace, since)
        assert applied.applied == 3 and applied.remaining == 0
        assert orders_of(workspace, "u1") == 2  # ...the profile timelines did not
    finally:
        workspace.close()


def orders_of(workspace: Workspace, user_id: str) -> int:
    person = profile_of(workspace, "user_id", user_id)
    assert person is not None
    profile = workspace.profiles.get(person)
    assert profile is not None
    count: int = profile.features["orders"]
    return count


# -- items ----------------------------------------------------------------------------------


class FakeWarehouse:
    """Keeps what `write_items` receives, upserting by item id like the real catalog."""

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []
        self.items: dict[str, dict[str, Any]] = {}

    def write_items(self, table: pa.Table) -> int:
        self.tables.append(table)
        for row in table.to_pylist():
            self.items[row["item_id"]] = row
        return table.num_rows


def test_items_from_csv_keep_text_unless_typed_and_a_stable_schema(tmp_path: Path) -> None:
    path = write(
        tmp_path / "catalog.csv",
        "product_id,name,category,price,stock\n"
        "p1,Mug,kitchen,9.90,3\n"
        "p2,Pan,kitchen,expensive,1\n"
        ",Ghost,none,1,1\n"
        "3,Cup,,4,0\n"
        "p1,Mug XL,kitchen,12,3\n",
    )
    warehouse = FakeWarehouse()
    result = import_items(
        warehouse,
        path,
        ImportOptions(mapping=("price=price:number", "stock=stock:int"), batch_size=2),
    )
    assert (result.rows_read, result.imported, result.bad_row_count) == (5, 3, 2)
    assert [(bad.line, bad.column) for bad in result.bad_rows] == [(3, "price"), (4, "product_id")]
    assert {table.schema for table in warehouse.tables} == {warehouse.tables[0].schema}
    schema = warehouse.tables[0].schema
    assert (
        schema.field("item_id").type == pa.string() and schema.field("price").type == pa.float64()
    )
    assert schema.field("stock").type == pa.int64() and schema.field("name").type == pa.string()
    assert warehouse.items["p1"]["name"] == "Mug XL" and warehouse.items["p1"]["price"] == 12.0
    assert warehouse.items["3"]["category"] is None


def test_items_from_parquet_and_jsonl_keep_their_types(tmp_path: Path) -> None:
    parquet_path = tmp_path / "items.parquet"
    pq.write_table(
        pa.table({"sku": [1, 2], "price": [1.5, 2.5], "stock": [3, 4], "tags": [["a"], []]}),
        parquet_path,
    )
    warehouse = FakeWarehouse()
    assert import_items(warehouse, parquet_path).imported == 2
    schema = warehouse.tables[0].schema
    assert schema.field("price").type == pa.float64() and schema.field("stock").type == pa.int64()
    assert warehouse.items["1"]["tags"] == '["a"]'

    jsonl = write(
        tmp_path / "items.jsonl",
        '{"id": "x", "price": 3}\n'
        '{"id": "y", "price": 2.5, "new": true}\n'
        '{"id": "z", "price": "?"}\n',
    )
    other = FakeWarehouse()
    result = import_items(other, jsonl)
    assert result.imported == 2 and [bad.line for bad in result.bad_rows] == [3]
    assert other.items["x"]["price"] == 3.0 and other.items["y"]["new"] is True


def test_items_need_an_item_id_column(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="item id"):
        import_items(FakeWarehouse(), write(tmp_path / "c.csv", "name,price\nMug,1\n"))
    with pytest.raises(InvalidInput, match="the warehouse is off"):
        workspace_like = type("W", (), {"warehouse": None})()
        import_file(workspace_like, "items", tmp_path / "c.csv")  # type: ignore[arg-type]


def test_a_look_alike_email_is_a_bad_row_naming_its_column(
    workspace: Workspace, tmp_path: Path
) -> None:
    profiles = write(
        tmp_path / "crm.csv",
        "customer_id,email,phone\nu1,Kate@Example.com,0033 6 12 34 56 78\n"
        "u2,\u212aate@example.com,\n",
    )
    result = run(workspace, "profiles", profiles)
    assert result.imported == 1
    [bad] = result.bad_rows
    assert (bad.line, bad.column) == (3, "email")
    assert "compatibility characters" in bad.reason
    [event] = logged(workspace)
    assert event["traits"]["phone"] == workspace.hasher.hash("phone", "+33612345678")
