"""What every `touchpoint` command shares: the consoles, the common options, and opening
the settings or the whole workspace with a clear message (exit code 2) when they are wrong."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from touchpoint.config.settings import Settings, load_settings
from touchpoint.core.errors import DefinitionError, TouchpointError

if TYPE_CHECKING:
    from touchpoint.runtime import Workspace

console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="touchpoint.yaml (default: built-in workspace)"),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Where data lives (TOUCHPOINT_DATA_DIR, ./touchpoint-data)"),
]
LogFormat = Annotated[str, typer.Option("--log-format", help="json or text")]


def open_settings(config: Path | None, data_dir: Path | None, **options: Any) -> Settings:
    try:
        return load_settings(config, data_dir, **options)
    except DefinitionError as error:
        errors.print(f"[red]invalid configuration[/red] {error.path}: {error.reason}")
        raise typer.Exit(2) from None
    except OSError as error:
        errors.print(f"[red]cannot read the configuration[/red]: {error}")
        raise typer.Exit(2) from None


def open_workspace(settings: Settings) -> Workspace:
    """Open the workspace's stores, or exit with a message naming what is wrong."""
    from touchpoint.runtime import Workspace

    try:
        return Workspace.open(settings)
    except TouchpointError as error:
        errors.print(f"[red]cannot open the workspace[/red]: {error.message}")
    except (OSError, sqlite3.Error) as error:
        errors.print(f"[red]cannot open the workspace in {settings.data_dir}[/red]: {error}")
    raise typer.Exit(2)
