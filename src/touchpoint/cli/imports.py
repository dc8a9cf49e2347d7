"""`touchpoint import events|profiles|items FILE`: past events, CRM profiles and product
catalogs from CSV, Parquet or JSON lines, with a progress bar on stderr and a summary
naming the bad rows by line.

Exit codes: 0 when the good rows are in (bad ones reported), 1 when the file could not be
read (at all, or past some line) or every row was bad, 2 for a bad option.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from touchpoint.cli.common import (
    ConfigOption,
    DataDirOption,
    console,
    errors,
    open_settings,
    open_workspace,
)

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from touchpoint.collect.import_mapping import ImportKind
    from touchpoint.collect.imports import ImportProgress, ImportResult
    from touchpoint.runtime import Workspace

import_app = typer.Typer(
    help="Import past events, profiles or a product catalog from CSV, Parquet or JSON lines.",
    no_args_is_help=True,
)

FileArgument = Annotated[
    Path, typer.Argument(help="A .csv, .tsv, .parquet or .jsonl file (optionally .gz)")
]
MapOption = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        help="COLUMN=FIELD[:TYPE], repeatable: userId, properties.revenue:number, "
        "traits.plan, context.ip, timestamp; COLUMN=- drops a column. "
        "Types: string, number, int, bool, datetime",
    ),
]
SourceOption = Annotated[
    str | None, typer.Option("--source", help="The source the rows come from (default: first)")
]
FormatOption = Annotated[
    str | None, typer.Option("--format", help="csv, parquet or jsonl (default: by extension)")
]
ErrorsOption = Annotated[
    Path | None,
    typer.Option("--errors", help="Write every bad row to this CSV (line,column,reason)"),
]
ApplyOption = Annotated[
    bool,
    typer.Option(
        "--apply/--no-apply",
        help="Apply the imported events to profiles before returning (shares the log's "
        "partitions with a running `touchpoint serve`)",
    ),
]
SHOWN_BAD_ROWS = 10


@import_app.command("events")
def import_events(
    file: FileArgument,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    mapping: MapOption = None,
    event: Annotated[
        str | None, typer.Option("--event", help="The event name of every row")
    ] = None,
    source: SourceOption = None,
    file_format: FormatOption = None,
    errors_file: ErrorsOption = None,
    apply: ApplyOption = True,
) -> None:
    """Import past events (one `track` per row: who, what, when, properties)."""
    _run("events", file, config, data_dir, mapping, event, source, file_format, errors_file, apply)


@import_app.command("profiles")
def import_profiles(
    file: FileArgument,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    mapping: MapOption = None,
    source: SourceOption = None,
    file_format: FormatOption = None,
    errors_file: ErrorsOption = None,
    apply: ApplyOption = True,
) -> None:
    """Import profiles (one `identify` per row: ids and traits), e.g. a CRM export."""
    _run("profiles", file, config, data_dir, mapping, None, source, file_format, errors_file, apply)


@import_app.command("items")
def import_items(
    file: FileArgument,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    mapping: MapOption = None,
    file_format: FormatOption = None,
    errors_file: ErrorsOption = None,
) -> None:
    """Import the product catalog the recommenders use (item_id and attributes)."""
    _run("items", file, config, data_dir, mapping, None, None, file_format, errors_file, False)


def _run(
    kind: ImportKind,
    file: Path,
    config: Path | None,
    data_dir: Path | None,
    mapping: list[str] | None,
    event: str | None,
    source: str | None,
    file_format: str | None,
    errors_file: Path | None,
    apply: bool,
) -> None:
    from touchpoint.collect.import_mapping import parse_specs
    from touchpoint.collect.import_sources import UnreadableFile
    from touchpoint.collect.imports import ImportOptions, import_file, log_positions
    from touchpoint.core.errors import InvalidInput, TouchpointError
    from touchpoint.core.tables import detect_format

    try:  # the options first: a typo exits 2 before anything is opened
        parse_specs(mapping or (), kind)
        options = ImportOptions(
            mapping=tuple(mapping or ()),
            event=event,
            file_format=detect_format(file, file_format),
        )
    except InvalidInput as error:
        errors.print(f"[red]bad option[/red]: {escape(error.message)}")
        raise typer.Exit(2) from None
    settings = open_settings(config, data_dir)
    workspace = open_workspace(settings)
    try:
        since = log_positions(workspace.log)
        with _progress() as progress:
            task = progress.add_task(f"importing {file.name}", total=None, rows=0, rate=0.0)
            try:
                result = import_file(
                    workspace,
                    kind,
                    file,
                    options,
                    source=source,
                    errors_file=errors_file,
                    on_progress=lambda step: _advance(progress, task, step),
                )
            except UnreadableFile as error:
                errors.print(f"[red]cannot read the file[/red]: {escape(error.message)}")
                raise typer.Exit(1) from None
            except InvalidInput as error:
                errors.print(f"[red]bad option[/red]: {escape(error.message)}")
                raise typer.Exit(2) from None
            except TouchpointError as error:
                errors.print(f"[red]import failed[/red]: {escape(error.message)}")
                raise typer.Exit(1) from None
        _print_summary(result, errors_file)
        if apply and result.imported:
            try:
                _apply(workspace, since)
            except TouchpointError as error:
                errors.print(
                    f"[red]not applied to profiles yet[/red]: {escape(error.message)} "
                    "(a running `touchpoint serve` or worker applies them)"
                )
                raise typer.Exit(1) from None
    finally:
        workspace.close()
    if not result.succeeded:
        raise typer.Exit(1)


def _progress() -> Progress:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[rows]:,} rows"),
        TextColumn("{task.fields[rate]:,.0f} rows/s"),
        TimeElapsedColumn(),
        console=errors,
        disable=not errors.is_terminal,
    )


def _advance(progress: Progress, task: TaskID, step: ImportProgress) -> None:
    elapsed = progress.tasks[task].elapsed or 0.0
    rate = step.rows_read / elapsed if elapsed > 0 else 0.0
    if step.total_rows is not None:
        progress.update(task, completed=step.rows_read, total=step.total_rows)
    elif step.total_bytes:
        progress.update(task, completed=step.bytes_read, total=step.total_bytes)
    progress.update(task, rows=step.rows_read, rate=rate)


def _print_summary(result: ImportResult, errors_file: Path | None) -> None:
    parts = [f"{result.imported:,} imported"]
    if result.kind != "items":
        parts.append(f"{result.duplicates:,} duplicates")
    parts.append(f"{result.bad_row_count:,} bad")
    if result.flagged:
        parts.append(f"{result.flagged:,} flagged by the tracking plan")
    color = "green" if result.succeeded else "red"
    console.print(
        f"[{color}]{result.kind}[/{color}] {escape(result.path)} ({result.file_format}): "
        f"{result.rows_read:,} rows read, {', '.join(parts)} "
        f"in {result.elapsed_seconds:.1f} s ({result.rows_per_second:,.0f} rows/s)"
    )
    for note in result.notes:
        console.print(f"  note: {note}", markup=False)
    shown = result.bad_rows[:SHOWN_BAD_ROWS]
    for bad in shown:
        column = "" if bad.column == "<row>" else f", column {bad.column}"
        console.print(f"  line {bad.line}{column}: {bad.reason}", markup=False)
    more = result.bad_row_count - len({bad.line for bad in shown})
    if more > 0:
        where = f"all are in {errors_file}" if errors_file else "--errors FILE writes them all"
        console.print(f"  … and {more:,} more bad rows ({where})", markup=False)
    elif result.bad_row_count and errors_file:
        console.print(f"  bad rows written to {errors_file}", markup=False)
    if result.aborted:
        errors.print(f"[red]stopped early[/red]: {escape(result.aborted)}")


def _apply(workspace: Workspace, since: dict[int, int]) -> None:
    from touchpoint.collect.imports import apply_imported
    from touchpoint.decide.outcomes import OUTCOMES_GROUP

    with _progress() as progress:
        task = progress.add_task("applying to profiles", total=None, rows=0, rate=0.0)

        def advance(done: int, total: int) -> None:
            elapsed = progress.tasks[task].elapsed or 0.0
            rate = done / elapsed if elapsed > 0 else 0.0
            progress.update(task, completed=done, total=total, rows=done, rate=rate)

        outcomes = workspace.loops.consumer(OUTCOMES_GROUP)
        applied = apply_imported(workspace, since, followers=[outcomes], on_progress=advance)
    if applied.remaining:
        errors.print(
            f"[yellow]{applied.remaining:,} imported events not applied yet[/yellow]: "
            "another processor holds their partitions; it will apply them"
        )
    else:
        console.print(
            f"profiles up to date: {applied.applied:,} events applied here "
            f"in {applied.elapsed_seconds:.1f} s"
        )
