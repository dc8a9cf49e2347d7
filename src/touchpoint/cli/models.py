"""`touchpoint train` and `touchpoint models …`: training, the registry, batch scoring."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
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

models_app = typer.Typer(
    help="Trained models: the registry and batch scoring.", no_args_is_help=True
)

_STATUS_STYLE = {"promoted": "green", "rejected": "yellow", "skipped": "dim", "failed": "red"}


def _fail(error: TouchpointError) -> typer.Exit:
    field = error.details.get("field")
    where = f" ({field})" if field else ""
    errors.print(f"[red]{escape(error.message)}[/red]{escape(where)}")
    return typer.Exit(1)


def train(
    models: Annotated[
        list[str] | None, typer.Argument(help="Models to train (default: models.train)")
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    as_of: Annotated[str | None, typer.Option(help="Cutoff (ISO-8601); default now")] = None,
) -> None:
    """Train models on the warehouse, register and promote them, write their results into
    profiles. Exit code 1 when a model failed (skipped models are not failures)."""
    moment: datetime | None = None
    if as_of is not None:
        moment = parse_timestamp(as_of)
        if moment is None:
            errors.print(f"[red]--as-of is not a timestamp[/red]: {escape(as_of)}")
            raise typer.Exit(2)
    workspace = open_workspace(open_settings(config, data_dir))
    try:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=errors,
            transient=True,
        ) as progress:
            task = progress.add_task("starting", total=None)

            def tell(model: str, step: str) -> None:
                progress.update(task, description=f"{model}: {step}")

            try:
                outcomes = workspace.trainer().run(models or None, as_of=moment, progress=tell)
            except TouchpointError as error:
                raise _fail(error) from None
    finally:
        workspace.close()
    table = Table("model", "status", "version", "validation", "written", "seconds", "reason")
    for outcome in outcomes:
        style = _STATUS_STYLE.get(outcome.status, "")
        figures = ", ".join(
            f"{name} {value:.3f}"
            for name, value in outcome.metrics.items()
            if name in ("auc", "ndcg@10", "silhouette", "mae", "brier")
        )
        written = ", ".join(f"{k} {v}" for k, v in outcome.written.items() if v)
        table.add_row(
            outcome.model,
            f"[{style}]{outcome.status}[/{style}]" if style else outcome.status,
            "" if outcome.version is None else str(outcome.version),
            figures,
            written,
            f"{outcome.seconds:.1f}",
            escape(outcome.reason),
        )
    console.print(table)
    if any(outcome.status == "failed" for outcome in outcomes):
        raise typer.Exit(1)


def _registry(config: Path | None, data_dir: Path | None) -> Any:
    from touchpoint.models.registry import ModelRegistry

    settings = open_settings(config, data_dir)
    return ModelRegistry(settings.data_dir / "models")


@models_app.command("list")
def list_models(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Every model, its serving version and its latest version."""
    registry = _registry(config, data_dir)
    table = Table("model", "serving", "latest", "status of latest", "metric", "trained")
    for name in registry.models():
        versions = registry.versions(name)
        if not versions:
            continue
        current, latest = registry.current(name), versions[-1]
        score = current.score if current is not None else None
        table.add_row(
            name,
            "" if current is None else str(current.version),
            str(latest.version),
            latest.status,
            "" if score is None or current is None else f"{current.metric} {score:.4f}",
            latest.created_at,
        )
    console.print(table)


@models_app.command("show")
def show_model(
    model: Annotated[str, typer.Argument()],
    version: Annotated[int | None, typer.Option(help="Default: the serving version")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """One version's record: window, parameters, metrics, drift (JSON)."""
    import orjson

    registry = _registry(config, data_dir)
    try:
        chosen = registry.get(model, version) if version is not None else registry.current(model)
    except TouchpointError as error:
        raise _fail(error) from None
    if chosen is None:
        errors.print(f"[red]{escape(model)} has no serving version[/red]")
        raise typer.Exit(1)
    console.print_json(orjson.dumps(asdict(chosen)).decode())


@models_app.command("promote")
def promote_model(
    model: Annotated[str, typer.Argument()],
    version: Annotated[int, typer.Argument()],
    force: Annotated[bool, typer.Option(help="Promote even if its metric is worse")] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Serve a version, if its validation metric is within the tolerance (or --force)."""
    settings = open_settings(config, data_dir)
    from touchpoint.models.registry import ModelRegistry

    registry = ModelRegistry(settings.data_dir / "models")
    try:
        verdict = registry.promote(
            model, version, tolerance=settings.config.models.tolerance, force=force
        )
    except TouchpointError as error:
        raise _fail(error) from None
    colour = "green" if verdict.promoted else "yellow"
    state = "promoted" if verdict.promoted else "not promoted"
    console.print(
        f"[{colour}]{escape(model)} {version} {state}[/{colour}]: {escape(verdict.reason)}"
    )
    if not verdict.promoted:
        raise typer.Exit(1)


@models_app.command("rollback")
def rollback_model(
    model: Annotated[str, typer.Argument()],
    to: Annotated[int | None, typer.Option(help="Default: the previously serving version")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Serve the version that served before (or --to VERSION)."""
    registry = _registry(config, data_dir)
    try:
        back = registry.rollback(model, to=to)
    except TouchpointError as error:
        raise _fail(error) from None
    console.print(f"[green]{escape(model)} serves version {back.version}[/green]")


@models_app.command("recommend")
def recommend_command(
    interactions: Annotated[Path, typer.Option(help="CSV, Parquet or JSONL: person_id,item_id")],
    out: Annotated[Path, typer.Option(help="CSV or Parquet: person_id,rank,item_id,score")],
    k: Annotated[int, typer.Option(min=1, max=1000)] = 10,
    model: Annotated[str | None, typer.Option(help="Recommender (default: the best)")] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Top-k items for every person of an interactions file, seen items excluded."""
    from touchpoint.models.recommend.batch import recommend_file

    try:
        summary = recommend_file(interactions, out, k=k, model=model, seed=seed)
    except TouchpointError as error:
        raise _fail(error) from None
    except OSError as error:
        errors.print(f"[red]cannot read or write a file[/red]: {escape(str(error))}")
        raise typer.Exit(1) from None
    console.print(
        f"{summary.model}: {summary.recommendations} recommendations for {summary.people} "
        f"people over {summary.items} items in {summary.total_seconds:.1f} s "
        f"(fit {summary.fit_seconds:.1f} s; {summary.rows_skipped} rows skipped) -> {out}"
    )


@models_app.command("predict-purchases")
def predict_purchases_command(
    transactions: Annotated[
        Path, typer.Option(help="CSV, Parquet or JSONL: person_id,date,amount")
    ],
    horizon_days: Annotated[int, typer.Option(min=1, max=3650)],
    out: Annotated[Path, typer.Option(help="person_id,expected_purchases,p_active,expected_value")],
    model: Annotated[str, typer.Option(help="auto, bgnbd or the learned model")] = "auto",
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Expected purchases, probability of being active and expected value over a horizon
    for every person of a transactions file."""
    from touchpoint.models.lifetime.batch import predict_purchases_file

    try:
        summary = predict_purchases_file(
            transactions, out, horizon_days=horizon_days, model=model, seed=seed
        )
    except TouchpointError as error:
        raise _fail(error) from None
    except OSError as error:
        errors.print(f"[red]cannot read or write a file[/red]: {escape(str(error))}")
        raise typer.Exit(1) from None
    console.print(f"{escape(str(summary))} -> {out}")
