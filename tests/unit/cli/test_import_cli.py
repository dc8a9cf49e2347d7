"""`touchpoint import events|profiles FILE` end to end on a temporary data directory: the
summary, the bad rows by line, the `--errors` file, profiles applied, and the exit codes
(0 good rows in, 1 unreadable or nothing good, 2 a bad option)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import typer
import yaml
from typer.testing import CliRunner

from touchpoint.cli.imports import import_app
from touchpoint.config.settings import load_settings
from touchpoint.runtime import Workspace

app = typer.Typer()
app.add_typer(import_app, name="import")


@app.callback()
def _root() -> None:
    """A root with a callback, so `import` is a subcommand as in `touchpoint`."""


runner = CliRunner()

CONFIG: dict[str, Any] = {
    "workspace": "import-cli",
    "secret_key": "sk_test_import_cli_0123456789",
    "sources": [
        {"name": "web", "write_key": "wk_test_import_cli_web"},
        {
            "name": "strict",
            "write_key": "wk_test_import_cli_strict",
            "tracking_plan_mode": "enforce",
        },
    ],
    "identity": {"hash_secret": "test-hash-secret-import-cli"},
    "tracking_plan": {
        "events": {
            "Order Completed": {
                "properties": {
                    "type": "object",
                    "properties": {"revenue": {"type": "number", "minimum": 0}},
                }
            }
        }
    },
    "features": [{"name": "orders", "type": "count", "event": "Order Completed"}],
}

ORDERS = (
    "customer_id,event,date,amount\n"
    "c1,Order Completed,19970101,29.33\n"
    "c1,Order Completed,19970118,n/a\n"  # line 3: not a number
    "c2,Order Completed,19970102,12\n"
    ",Order Completed,19970103,1\n"  # line 5: no id
)


def invoke(tmp_path: Path, *args: str) -> Any:
    config = tmp_path / "touchpoint.yaml"
    if not config.exists():
        config.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    return runner.invoke(
        app, ["import", *args, "--config", str(config), "--data-dir", str(tmp_path / "data")]
    )


def opened(tmp_path: Path) -> Workspace:
    return Workspace.open(
        load_settings(tmp_path / "touchpoint.yaml", tmp_path / "data", environ={})
    )


def orders_of(workspace: Workspace, user_id: str) -> int | None:
    identity = workspace.resolver.identity_for_lookup("user_id", user_id, workspace.hasher)
    person = workspace.profiles.find(identity)
    profile = workspace.profiles.get(person) if person else None
    return None if profile is None else int(profile.features.get("orders", 0))


def test_events_import_prints_a_summary_writes_the_errors_and_applies(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(ORDERS)
    errors_file = tmp_path / "bad.csv"
    result = invoke(
        tmp_path,
        "events",
        str(path),
        "--map",
        "amount=properties.revenue:number",
        "--errors",
        str(errors_file),
    )

    assert result.exit_code == 0, result.output
    assert "4 rows read, 2 imported, 0 duplicates, 2 bad" in result.output
    assert "line 3, column amount: not a number: 'n/a'" in result.output
    assert "line 5, column customer_id" in result.output
    assert "profiles up to date: 2 events applied" in result.output
    assert errors_file.read_text().splitlines() == [
        "line,column,reason",
        "3,amount,not a number: 'n/a'",
        "5,customer_id,empty: a row needs userId or anonymousId",
    ]
    workspace = opened(tmp_path)
    try:
        assert orders_of(workspace, "c1") == 1 and orders_of(workspace, "c2") == 1
    finally:
        workspace.close()

    again = invoke(tmp_path, "events", str(path), "--map", "amount=properties.revenue:number")
    assert again.exit_code == 0, again.output
    assert "0 imported, 2 duplicates, 2 bad" in again.output


def test_no_apply_leaves_the_events_in_the_log(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(ORDERS)
    result = invoke(tmp_path, "events", str(path), "--no-apply")
    assert result.exit_code == 0, result.output
    assert "profiles up to date" not in result.output
    workspace = opened(tmp_path)
    try:
        assert workspace.log.count() == 3  # n/a stays text without a type: only line 5 is bad
        assert orders_of(workspace, "c1") is None
    finally:
        workspace.close()


def test_profiles_from_jsonl_with_a_chosen_source(tmp_path: Path) -> None:
    path = tmp_path / "crm.jsonl"
    rows = [{"user_id": "c1", "email": "c1@x.org", "plan": "gold"}, {"user_id": "c2", "age": 41}]
    path.write_bytes(b"\n".join(orjson.dumps(row) for row in rows))
    result = invoke(tmp_path, "profiles", str(path), "--source", "strict")
    assert result.exit_code == 0, result.output
    assert "2 imported" in result.output
    workspace = opened(tmp_path)
    try:
        identity = workspace.resolver.identity_for_lookup("email", "C1@x.org", workspace.hasher)
        person = workspace.profiles.find(identity)
        profile = workspace.profiles.get(person) if person else None
        assert profile is not None and profile.traits["plan"] == "gold"
    finally:
        workspace.close()


def test_tracking_plan_rejections_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("user_id,event,amount\nu1,Order Completed,3\nu2,Order Completed,-1\n")
    result = invoke(
        tmp_path,
        "events",
        str(path),
        "--source",
        "strict",
        "--map",
        "amount=properties.revenue:number",
    )
    assert result.exit_code == 0, result.output
    assert "line 3, column amount: tracking plan:" in result.output


def test_a_file_of_only_bad_rows_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("user_id,event\n,Signed Up\n,Signed Up\n")
    result = invoke(tmp_path, "events", str(path))
    assert result.exit_code == 1
    assert "0 imported" in result.output and "2 bad" in result.output


def test_many_bad_rows_are_summarized_and_printed_literally(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    rows = "".join(f"u{n},Order Completed,[bold]{n}\n" for n in range(15))
    path.write_text("user_id,event,amount\nu0,Order Completed,1\n" + rows)
    result = invoke(tmp_path, "events", str(path), "--map", "amount=properties.revenue:number")
    assert result.exit_code == 0, result.output
    assert "line 3, column amount: not a number: '[bold]0'" in result.output
    assert "line 12, column amount" in result.output and "line 13," not in result.output
    assert "and 5 more bad rows (--errors FILE writes them all)" in result.output


def test_an_unreadable_file_exits_1(tmp_path: Path) -> None:
    result = invoke(tmp_path, "events", str(tmp_path / "missing.csv"))
    assert result.exit_code == 1
    assert "cannot read" in result.output and "missing.csv" in result.output
    broken = tmp_path / "broken.parquet"
    broken.write_text("nope")
    assert invoke(tmp_path, "profiles", str(broken)).exit_code == 1


def test_bad_options_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(ORDERS)
    cases = [
        (["--map", "amount=properties.revenue:money"], "unknown type 'money'"),
        (["--map", "nope=userId"], "does not have: nope"),
        (["--format", "xlsx"], "unknown format 'xlsx'"),
        (["--source", "mobile"], "no source named 'mobile'"),
    ]
    for options, words in cases:
        result = invoke(tmp_path, "events", str(path), *options)
        assert result.exit_code == 2, (options, result.output)
        assert words in result.output, (options, result.output)
    no_event = tmp_path / "people.csv"
    no_event.write_text("user_id,plan\nu1,gold\n")
    result = invoke(tmp_path, "events", str(no_event))
    assert result.exit_code == 2 and "--event NAME" in result.output
    assert invoke(tmp_path, "events", str(no_event), "--event", "Plan Chosen").exit_code == 0
    odd = tmp_path / "orders.txt"
    odd.write_text(ORDERS)
    result = invoke(tmp_path, "events", str(odd))
    assert result.exit_code == 2 and "--format" in result.output
    assert invoke(tmp_path, "events", str(odd), "--format", "csv").exit_code == 0


def test_items_land_in_the_warehouse_catalog(tmp_path: Path) -> None:
    path = tmp_path / "catalog.csv"
    path.write_text(
        "sku,name,category,price\n"
        "A1,Red shoe,shoes,59.5\n"
        ",No id,shoes,1\n"  # line 3: no id
        "B2,Hat,hats,12\n"
    )
    result = invoke(tmp_path, "items", str(path), "--map", "price=price:number")
    assert result.exit_code == 0, result.output
    assert "line 3" in result.output
    workspace = opened(tmp_path)
    try:
        assert workspace.warehouse is not None
        rows = workspace.warehouse.query(
            "SELECT item_id, name, price FROM items ORDER BY item_id"
        ).to_pylist()
    finally:
        workspace.close()
    assert rows == [
        {"item_id": "A1", "name": "Red shoe", "price": 59.5},
        {"item_id": "B2", "name": "Hat", "price": 12.0},
    ]


def test_imported_outcomes_are_joined_to_their_decisions(tmp_path: Path) -> None:
    """The outcome joiner runs on its own consumer group: the import's apply runs it too, so
    a click in an imported file reaches its decision as it did when it was a profile sink."""
    from touchpoint.decide.decision_log.base import DecisionRecord

    invoke(tmp_path, "events", str(tmp_path / "none.jsonl"))  # writes the config
    workspace = opened(tmp_path)
    try:
        workspace.decisions.record(
            [
                DecisionRecord(
                    decision_id="d1",
                    placement="home_hero",
                    content_id="hero_sale",
                    profile_id=None,
                    subject="user_id:c1",
                    policy="priority",
                    definitions_version=1,
                    reason="eligible",
                    propensity=1.0,
                    at="1997-01-01T00:00:00.000Z",
                )
            ]
        )
    finally:
        workspace.close()
    path = tmp_path / "clicks.jsonl"
    click = {
        "type": "track",
        "userId": "c1",
        "event": "Decision Clicked",
        "timestamp": "1997-01-01T00:01:00.000Z",
        "properties": {"decision_id": "d1", "placement": "home_hero"},
    }
    path.write_bytes(orjson.dumps(click) + b"\n")
    result = invoke(tmp_path, "events", str(path))
    assert result.exit_code == 0, result.output
    workspace = opened(tmp_path)
    try:
        assert [outcome.kind for outcome in workspace.decisions.outcomes("d1")] == ["click"]
    finally:
        workspace.close()
