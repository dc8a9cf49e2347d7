"""The `touchpoint` command line."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from touchpoint.cli.common import (
    ConfigOption,
    DataDirOption,
    LogFormat,
    console,
    errors,
    open_settings,
    open_workspace,
)
from touchpoint.cli.imports import import_app
from touchpoint.cli.models import models_app, train
from touchpoint.cli.warehouse import sql, warehouse_app
from touchpoint.config.settings import Settings
from touchpoint.core.errors import DefinitionError, TouchpointError
from touchpoint.core.logs import configure_logging

if TYPE_CHECKING:
    pass

logger = logging.getLogger("touchpoint.worker")
app = typer.Typer(help="Touchpoint: collect, resolve, profile, decide.", no_args_is_help=True)
config_app = typer.Typer(help="Workspace configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(warehouse_app, name="warehouse")
app.command("sql")(sql)
app.add_typer(models_app, name="models")
app.add_typer(import_app, name="import")
app.command("train")(train)


def print_keys(settings: Settings, base_url: str) -> None:
    """Tell the person at the terminal how to reach the workspace (never logged)."""
    source = settings.config.sources[0]
    console.print(
        f"[bold]Touchpoint[/bold] workspace [cyan]{settings.config.workspace}[/cyan] "
        f"at {base_url}, data in {settings.data_dir}"
    )
    console.print(f"  write key ({source.name}): [green]{source.write_key}[/green]")
    console.print(f"  secret key: [yellow]{settings.secret_key}[/yellow]")
    for signing in settings.config.sources:
        secret = signing.identity_verification.secret
        if signing.needs_identity_secret and secret is not None:
            # For the site's backend: user_hash = hex HMAC-SHA256(secret, user id).
            console.print(f"  identity secret ({signing.name}): [yellow]{secret}[/yellow]")
    console.print(
        f"  send:   curl -u {source.write_key}: {base_url}/v1/track "
        "-H 'content-type: application/json' "
        '-d \'{"userId": "u1", "event": "Signed Up"}\''
    )
    console.print(
        f"  lookup: curl -H 'authorization: Bearer {settings.secret_key}' "
        f"{base_url}/v1/profiles/user_id/u1"
    )


@app.command()
def serve(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    processor: Annotated[
        bool, typer.Option(help="Run the log consumers (profiles, outcomes, warehouse) here")
    ] = True,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=64, help="API processes to run")
    ] = 1,
    noop_endpoint: Annotated[bool, typer.Option(hidden=True)] = False,
    log_format: LogFormat = "json",
    log_level: Annotated[str, typer.Option()] = "info",
) -> None:
    """Run the HTTP API (and, by default, the log consumers: profiles, outcomes and the
    warehouse copy, each sharing its group's partitions with the workspace's workers)."""
    import uvicorn

    from touchpoint.api.app import create_app

    configure_logging(log_level, log_format)
    settings = open_settings(
        config, data_dir, run_processor=processor, enable_noop_endpoint=noop_endpoint
    )
    workspace = open_workspace(
        settings
    )  # migrations, generated keys: once, before any worker starts
    if workers > 1:
        workspace.close()
        _serve_processes(settings, host, port, workers, processor, noop_endpoint)
        return
    print_keys(settings, f"http://{host}:{port}")
    # The app owns the workspace from here: its startup starts the processor and the
    # background jobs, its shutdown (on SIGTERM as on Ctrl-C) closes every store.
    app_ = create_app(settings, workspace=workspace, owns_workspace=True)
    try:
        uvicorn.run(
            app_,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        workspace.close()  # a no-op after the app's shutdown closed it


def _serve_processes(
    settings: Settings, host: str, port: int, workers: int, processor: bool, noop: bool
) -> None:
    """`serve --workers N`: N API processes on one port (uvicorn's supervisor restarts one that
    dies), each opening the workspace from the environment set here."""
    import os

    import uvicorn

    if settings.config_path is not None:
        os.environ["TOUCHPOINT_CONFIG"] = str(settings.config_path.resolve())
    os.environ["TOUCHPOINT_DATA_DIR"] = str(settings.data_dir.resolve())
    os.environ["TOUCHPOINT_RUN_PROCESSOR"] = "1" if processor else "0"
    os.environ["TOUCHPOINT_NOOP_ENDPOINT"] = "1" if noop else "0"
    print_keys(settings, f"http://{host}:{port}")
    uvicorn.run(
        "touchpoint.api.app:create_app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


@app.command()
def migrate(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Bring the PostgreSQL schema up to date (what every process also does at start, unless
    `postgres.migrate_on_start` is false)."""
    settings = open_settings(config, data_dir)
    postgres = settings.config.postgres
    if not postgres.url:
        errors.print(
            "[red]nothing to migrate[/red]: no PostgreSQL is configured "
            "(postgres.url or TOUCHPOINT_POSTGRES_URL)"
        )
        raise typer.Exit(2)
    data = settings.config.model_dump(by_alias=True)
    data["postgres"]["migrate_on_start"] = True
    from dataclasses import replace

    from touchpoint.config.workspace import parse_config

    workspace = open_workspace(replace(settings, config=parse_config(data)))
    try:
        assert workspace.services.postgres is not None
        applied = workspace.services.postgres.applied
        schema = workspace.services.postgres.schema
        for migration in applied:
            console.print(f"applied {migration.component} {migration.version}")
        console.print(f"[green]schema {schema} is up to date[/green] ({len(applied)} applied)")
    finally:
        workspace.close()


@app.command()
def worker(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    log_format: LogFormat = "json",
    log_level: Annotated[str, typer.Option()] = "info",
) -> None:
    """Run the workspace's log consumers (profiles, outcomes, the warehouse copy) and
    background jobs as their own process (stop with SIGTERM or Ctrl-C)."""
    configure_logging(log_level, log_format)
    settings = open_settings(config, data_dir)
    workspace = open_workspace(settings)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        workspace.start_background()
        for consumer in workspace.loops.consumers():
            logger.info("worker %s joined group %s", consumer.consumer, consumer.group)
        while not stop.wait(0.5):
            pass
    finally:
        workspace.close()


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port to serve on")] = 8000,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where the demo keeps its data")
    ] = Path("./touchpoint-data/demo"),
    visitors: Annotated[
        int, typer.Option(help="Simulated visitors to send")
    ] = 2_500,  # touchpoint.demo.run.DEFAULT_VISITORS (not imported: keeps the CLI fast)
    browser: Annotated[bool, typer.Option(help="Open the storefront in a browser")] = True,
    log_level: Annotated[str, typer.Option()] = "warning",
) -> None:
    """Serve the default workspace, send it simulated shoppers, and show where to look."""
    from touchpoint.demo.run import run_demo

    configure_logging(log_level, "text")
    try:
        run_demo(port=port, data_dir=data_dir, visitors=visitors, open_browser=browser)
    except TouchpointError as error:
        errors.print(f"[red]demo failed[/red]: {error.message}")
        raise typer.Exit(1) from None


@app.command("apply")
def apply(
    file: Annotated[Path, typer.Argument(help="touchpoint.yaml with placements and content")],
    data_dir: DataDirOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the changes; apply nothing")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking")] = False,
) -> None:
    """Show what FILE changes in placements and content, then apply it as a new version."""
    from touchpoint.cli.apply import apply_file

    settings = open_settings(file, data_dir)
    code = apply_file(settings, dry_run=dry_run, yes=yes, console=console, errors=errors)
    if code:
        raise typer.Exit(code)


@config_app.command("validate")
def config_validate(
    path: Annotated[Path, typer.Argument(help="touchpoint.yaml")] = Path("touchpoint.yaml"),
) -> None:
    """Check a configuration; errors name the path of the offending value."""
    from touchpoint.config.workspace import load_config_file

    try:
        loaded = load_config_file(path)
    except DefinitionError as error:
        errors.print(f"[red]invalid[/red] {path}: {error.path}: {error.reason}")
        raise typer.Exit(1) from None
    except OSError as error:
        errors.print(f"[red]cannot read[/red] {path}: {error.strerror}")
        raise typer.Exit(1) from None
    console.print(
        f"[green]valid[/green] {path}: {len(loaded.sources)} sources, "
        f"{len(loaded.tracking_plan.events)} planned events, {len(loaded.features)} features, "
        f"{len(loaded.segments)} segments"
    )


def main() -> None:
    """Entry point of the `touchpoint` script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
