"""`touchpoint apply FILE`: show what a workspace file changes in placements and content,
then store it as the next definitions version, after confirmation.

It opens only the definition store and the audit log, never the whole workspace, so
nothing else is touched; a running `touchpoint serve` on the same data directory
picks the new version up by itself.
"""

from __future__ import annotations

import getpass
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from touchpoint.audit.base import build_audit_log
from touchpoint.config.settings import Settings
from touchpoint.core.errors import DefinitionError
from touchpoint.definitions.apply import (
    DefinitionDiff,
    KindDiff,
    apply_definitions,
    diff_definitions,
)
from touchpoint.definitions.store.base import DEFAULT_DEFINITIONS_FILE, build_definition_store


def cli_actor() -> str:
    """`cli:<user>` for the audit log (`cli:unknown` when the system cannot say)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def print_kind(console: Console, label: str, diff: KindDiff) -> None:
    """One kind's changes, one line per item: `+` added, `-` removed, `~` changed (fields)."""
    if diff.empty:
        return
    console.print(f"[bold]{label}[/bold]")
    for name in diff.added:
        console.print(f"  [green]+ {escape(name)}[/green]")
    for name in diff.removed:
        console.print(f"  [red]- {escape(name)}[/red]")
    for item in diff.changed:
        fields = ", ".join(item.fields)
        console.print(f"  [yellow]~ {escape(item.id)}[/yellow]: {escape(fields)}")
    if diff.reordered:
        console.print("  [yellow]~ order changed[/yellow]")


def print_diff(console: Console, diff: DefinitionDiff) -> None:
    """The whole diff, or `No changes.`."""
    if diff.empty:
        console.print("No changes.")
        return
    print_kind(console, "Placements", diff.placements)
    print_kind(console, "Content", diff.content)


def stdin_is_terminal() -> bool:
    """Whether someone can answer a question (the confirmation needs a terminal)."""
    return sys.stdin.isatty()


def _store_exists(settings: Settings) -> bool:
    configured = settings.config.definitions_store.path
    path = Path(configured) if configured else settings.data_dir / DEFAULT_DEFINITIONS_FILE
    return path.exists()


def apply_file(
    settings: Settings,
    *,
    dry_run: bool,
    yes: bool,
    console: Console,
    errors: Console,
    interactive: Callable[[], bool] | None = None,
) -> int:
    """Diff the settings' placements and content against the current version, then (unless
    a dry run, and once confirmed) apply them. Returns the exit code: 0 applied or nothing
    to do, 1 not confirmed, 2 cannot apply."""
    definitions = settings.config.definitions()
    source = settings.config_path.name if settings.config_path else "the file"
    if dry_run and not _store_exists(settings):
        console.print(f"No definitions applied yet in {settings.data_dir}.")
        print_diff(console, diff_definitions(None, definitions))
        console.print("Dry run: nothing applied.")
        return 0
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = build_definition_store(settings.config.definitions_store, settings.data_dir)
    except (OSError, sqlite3.Error) as error:
        errors.print(f"[red]cannot open the definition store in {settings.data_dir}[/red]: {error}")
        return 2
    try:
        current = store.current()
        diff = diff_definitions(current.definitions if current else None, definitions)
        if current is None:
            console.print(f"No definitions applied yet in {settings.data_dir}.")
        else:
            console.print(
                f"Current version {current.version} (applied {current.applied_at} "
                f"by {escape(current.actor)}); changes from {escape(source)}:"
            )
        if not definitions.placements and not definitions.content:
            console.print(f"[yellow]{escape(source)} declares no placements or content.[/yellow]")
        print_diff(console, diff)
        if diff.empty:
            return 0
        if dry_run:
            console.print("Dry run: nothing applied.")
            return 0
        if not yes:
            if not (interactive or stdin_is_terminal)():
                errors.print(
                    "[red]not applied[/red]: confirmation needs a terminal; "
                    "pass --yes to apply without asking"
                )
                return 1
            if not typer.confirm("Apply these changes?", default=False):
                console.print("Nothing applied.")
                return 1
        audit = build_audit_log(settings.config.audit, settings.data_dir)
        try:
            version, _ = apply_definitions(
                store,
                definitions,
                audit=audit,
                actor=cli_actor(),
                note=f"touchpoint apply {source}",
            )
        finally:
            audit.close()
        console.print(f"[green]Applied[/green] definitions version {version.version}.")
        return 0
    except DefinitionError as error:
        errors.print(f"[red]invalid definitions[/red] {error.path}: {escape(error.reason)}")
        return 2
    except (OSError, sqlite3.Error) as error:
        errors.print(f"[red]cannot apply[/red]: {error}")
        return 2
    finally:
        store.close()
