"""The analytics warehouse: every applied event as Parquet files, queried with DuckDB.

`store.Warehouse` owns the files (events by date, the item catalog, feature tables) and
answers SQL; `writer.WarehouseWriter` copies the event log into it behind the stream
processor; `features` materializes the per-person and per-item feature tables the models
read. See docs/adr/0008-warehouse.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from touchpoint.config.settings import Settings
    from touchpoint.warehouse.store import Warehouse


def warehouse_root(settings: Settings) -> Path:
    """Where a workspace's warehouse lives: `warehouse.path`, else <data_dir>/warehouse."""
    configured = settings.config.warehouse.path
    return Path(configured) if configured else settings.data_dir / "warehouse"


def open_warehouse(
    config: str | Path | None = None, data_dir: str | Path | None = None
) -> Warehouse:
    """The warehouse of a workspace, for analysts (a notebook, a script):

        from touchpoint.warehouse import open_warehouse
        warehouse = open_warehouse("touchpoint.yaml")
        warehouse.frame("SELECT event, count(*) FROM events GROUP BY 1")

    Reads what `serve` or `worker` copied so far; `touchpoint warehouse sync` copies the
    rest now."""
    from touchpoint.config.settings import load_settings
    from touchpoint.warehouse.store import Warehouse

    settings = load_settings(Path(config) if config else None, Path(data_dir) if data_dir else None)
    return Warehouse(warehouse_root(settings))
