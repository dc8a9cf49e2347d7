"""The demo's model step: the catalog into the warehouse, then `touchpoint train`.

After the simulated history is in, the demo imports its products as the item catalog
(what `touchpoint import items` does with a file), trains every model on the warehouse
and prints what each did. Two weeks of history is enough for segments and the
recommender; models that predict a 30-day horizon say why they were skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from touchpoint.demo.catalog import Catalog

if TYPE_CHECKING:
    from touchpoint.models.training import TrainOutcome
    from touchpoint.runtime import Workspace


def catalog_table(catalog: Catalog) -> pa.Table:
    """The products as item catalog rows (`item_id` and the attributes cards show)."""
    products = list(catalog.products)
    return pa.table(
        {
            "item_id": [product.product_id for product in products],
            "product_id": [product.product_id for product in products],
            "name": [product.name for product in products],
            "category": [product.category for product in products],
            "price": [product.price for product in products],
        }
    )


def train_demo_models(workspace: Workspace, catalog: Catalog) -> list[TrainOutcome]:
    """Import the catalog and train every model; their outcomes."""
    if workspace.warehouse is not None:
        workspace.warehouse.write_items(catalog_table(catalog))
    return workspace.trainer().run()


def show_models(console: Console, outcomes: list[TrainOutcome]) -> None:
    """A table of what training did, model by model."""
    table = Table(title="touchpoint train: models on the warehouse")
    for column in ("model", "status", "validation", "written to profiles", "why"):
        table.add_column(column)
    for outcome in outcomes:
        figures = ", ".join(
            f"{name} {value:.3f}"
            for name, value in outcome.metrics.items()
            if name in ("auc", "ndcg@10", "silhouette", "mae")
        )
        written = ", ".join(f"{key} {value}" for key, value in outcome.written.items() if value)
        table.add_row(outcome.model, outcome.status, figures, written, escape(outcome.reason))
    console.print(table)
