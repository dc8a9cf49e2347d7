"""`touchpoint sql` and `touchpoint warehouse …`: the analytics warehouse from a terminal."""

from __future__ import annotations

import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from touchpoint.cli.common import (
    ConfigOption,
    DataDirOption,
    console,
    errors,
    open_settings,
    open_workspace,
)
from touchpoint.core.clock import parse_timestamp
from touchpoint.core.errors import TouchpointError

if TYPE_CHECKING:
    import pyarrow as pa

    from touchpoint.runtime import Workspace
    from touchpoint.warehouse.store import Warehouse

warehouse_app = typer.Typer(
    help="The analytics warehouse (Parquet + DuckDB).", no_args_is_help=True
)


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


def _warehouse(workspace: Workspace) -> Warehouse:
    if workspace.warehouse is None:
        errors.print("[red]the warehouse is off[/red] (warehouse.enabled: false)")
        raise typer.Exit(2)
    return workspace.warehouse


def _sync(workspace: Workspace) -> int:
    """Copy what the processor has applied and the warehouse lacks; rows copied."""
    writer = workspace.warehouse_writer
    return 0 if writer is None else writer.run_once().rows


def sql(
    statement: Annotated[str, typer.Argument(help="One SQL statement (DuckDB dialect)")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    output: Annotated[OutputFormat, typer.Option("--format", "-f")] = OutputFormat.table,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here")] = None,
    limit: Annotated[int, typer.Option(help="Rows shown as a table")] = 50,
    sync: Annotated[
        bool, typer.Option(help="Copy applied events the warehouse lacks before the query")
    ] = True,
) -> None:
    """Query the warehouse: views `events`, `interactions`, `items` and the feature tables
    (`person_features`, `item_features`)."""
    workspace = open_workspace(open_settings(config, data_dir))
    try:
        warehouse = _warehouse(workspace)
        if sync:
            _sync(workspace)
        try:
            table = warehouse.query(statement)
        except TouchpointError as error:
            errors.print(f"[red]query failed[/red]: {escape(error.message)}")
            raise typer.Exit(1) from None
    finally:
        workspace.close()
    _write(table, output, out, limit)


def _write(table: pa.Table, output: OutputFormat, out: Path | None, limit: int) -> None:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if output is OutputFormat.parquet:
        if out is None:
            errors.print("[red]--format parquet needs --out FILE[/red]")
            raise typer.Exit(2)
        pq.write_table(table, out)
    elif output is OutputFormat.csv:
        if out is None:
            pacsv.write_csv(table, sys.stdout.buffer)
        else:
            pacsv.write_csv(table, out)
    elif output is OutputFormat.json:
        import orjson

        lines = b"".join(orjson.dumps(row, default=str) + b"\n" for row in table.to_pylist())
        if out is None:
            sys.stdout.buffer.write(lines)
        else:
            out.write_bytes(lines)
    else:
        shown = Table(*table.column_names, show_lines=False)
        for row in table.slice(0, limit).to_pylist():
            shown.add_row(*(escape("" if value is None else str(value)) for value in row.values()))
        console.print(shown)
        more = f", {limit} shown" if table.num_rows > limit else ""
        console.print(f"{table.num_rows} rows{more}")


@warehouse_app.command("sync")
def sync_command(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Copy every event the stream processor has applied into the warehouse now."""
    workspace = open_workspace(open_settings(config, data_dir))
    try:
        _warehouse(workspace)
        rows = _sync(workspace)
    finally:
        workspace.close()
    console.print(f"copied {rows} events into the warehouse")


@warehouse_app.command("features")
def features_command(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    as_of: Annotated[str | None, typer.Option(help="Cutoff (ISO-8601); default now")] = None,
) -> None:
    """Materialize the feature tables (person_features, item_features) as of a cutoff."""
    from touchpoint.warehouse.features import EventNames, materialize

    moment: datetime | None = None
    if as_of is not None:
        moment = parse_timestamp(as_of)
        if moment is None:
            errors.print(f"[red]--as-of is not a timestamp[/red]: {escape(as_of)}")
            raise typer.Exit(2)
    settings = open_settings(config, data_dir)
    workspace = open_workspace(settings)
    try:
        warehouse = _warehouse(workspace)
        _sync(workspace)
        models = settings.config.models
        names = EventNames(models.purchase_event, models.view_event, models.cart_event)
        counts = materialize(warehouse, as_of=moment, names=names)
    finally:
        workspace.close()
    for name, rows in counts.items():
        console.print(f"{name}: {rows} rows")
