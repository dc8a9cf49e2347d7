"""The warehouse's files and the SQL over them.

Layout under the warehouse root (`<data_dir>/warehouse` unless configured):

    events/date=YYYY-MM-DD/<id>.parquet   applied events, by event date
    events/_manifest.json                 which events files are live, and how far each
                                          log partition has been copied
    items/items.parquet                   the item catalog (imports)
    features/<name>.parquet               materialized feature tables
    .lock                                 one writer or eraser at a time

The manifest is the table: readers see the files it lists and no others, and a change
(a copy from the log, an erasure's rewrite, a compaction) becomes visible in one atomic
rename of the manifest. A copy that crashes before it leaves files nobody reads; the
next change under the lock deletes them. Because the manifest records each partition's
copied position together with the files, nothing is copied twice or lost.

Erasure rewrites the files that hold the person (see ADR 8): a tombstone filter would
leave their events on disk for every tool that reads Parquet without our filter
(DuckDB by hand, Spark, a backup), which is not erasure.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from touchpoint.core.errors import InvalidInput
from touchpoint.core.files import file_lock
from touchpoint.warehouse.schema import EVENTS_SCHEMA

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

logger = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
FEATURE_TABLE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
ITEM_ID = "item_id"


@dataclass(frozen=True, slots=True)
class Manifest:
    """The live events files (relative to `events/`) and, per log partition, the next
    offset to copy."""

    files: tuple[str, ...]
    positions: dict[int, int]


class Warehouse:
    """Parquet files of events, items and feature tables under `root`, queried with DuckDB.

    Safe for several processes on one machine: writers and erasures take the root's file
    lock; readers need none (every file appears whole, by rename).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.events_dir = self.root / "events"
        self.items_path = self.root / "items" / "items.parquet"
        self.features_dir = self.root / "features"
        for directory in (self.events_dir, self.items_path.parent, self.features_dir):
            directory.mkdir(parents=True, exist_ok=True)

    # -- locking ----------------------------------------------------------------------------

    def lock(self, *, wait: bool = True) -> AbstractContextManager[bool]:
        """Hold the warehouse's write lock for the block; yields False (without the lock)
        when `wait` is false and another process holds it."""
        return file_lock(self.root / ".lock", wait=wait)

    # -- events -----------------------------------------------------------------------------

    def manifest(self) -> Manifest:
        """The live events files and the copied log positions."""
        try:
            data = orjson.loads((self.events_dir / MANIFEST).read_bytes())
        except FileNotFoundError:
            return Manifest((), {})
        return Manifest(
            tuple(data.get("files", ())),
            {int(key): int(value) for key, value in data.get("positions", {}).items()},
        )

    def _commit(self, files: Sequence[str], positions: Mapping[int, int]) -> None:
        """Replace the manifest (under the lock), then delete events files it no longer
        lists (rewritten, compacted, or left by a crashed copy)."""
        listed = sorted(set(files))
        document = {"files": listed, "positions": {str(k): v for k, v in positions.items()}}
        path = self.events_dir / MANIFEST
        temporary = path.with_name(f".{MANIFEST}.tmp")
        temporary.write_bytes(orjson.dumps(document))
        _sync_file(temporary)
        os.replace(temporary, path)
        _sync_directory(path.parent)
        live = set(listed)
        for found in self.events_dir.glob("date=*/*.parquet"):
            if self._relative(found) not in live:
                found.unlink()

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.events_dir).as_posix()

    def event_files(self) -> list[Path]:
        """The live events files (those the manifest lists), in name order."""
        return [self.events_dir / name for name in self.manifest().files]

    def append_events(self, table: pa.Table, positions: Mapping[int, int]) -> list[Path]:
        """Add rows copied from the log, one new file per event date, and record each log
        partition's copied position (`positions`: partition -> next offset) in the same
        manifest change; call under `lock()`. The files written."""
        manifest = self.manifest()
        written: list[Path] = []
        if table.num_rows:
            table = table.cast(EVENTS_SCHEMA)
            token = uuid.uuid4().hex[:16]
            moments = pc.coalesce(table["timestamp"], table["received_at"])
            dates = pc.strftime(moments.cast(pa.timestamp("us", tz=UTC)), format="%Y-%m-%d")
            dates = pc.fill_null(dates, "1970-01-01")
            for date in sorted(pc.unique(dates).to_pylist()):
                path = self.events_dir / f"date={date}" / f"{token}.parquet"
                write_parquet(table.filter(pc.equal(dates, date)), path)
                written.append(path)
        self._commit(
            [*manifest.files, *(self._relative(path) for path in written)],
            {**manifest.positions, **positions},
        )
        return written

    def erase(
        self,
        *,
        profile_ids: Collection[str] = (),
        message_ids: Collection[str] = (),
        keys: Collection[str] = (),
    ) -> dict[str, int]:
        """Rewrite every file that holds a row of these profiles, messages or routing keys
        (user or anonymous id) without those rows: events and feature tables. Rows removed
        per table."""
        removed = {"events": 0, "features": 0}
        if not (profile_ids or message_ids or keys):
            return removed
        people = pa.array(sorted(set(profile_ids)), pa.string())
        messages = pa.array(sorted(set(message_ids)), pa.string())
        routing = pa.array(sorted(set(keys)), pa.string())
        matches = [
            ("profile_id", people),
            ("message_id", messages),
            ("user_id", routing),
            ("anonymous_id", routing),
        ]
        with self.lock():
            manifest = self.manifest()
            files = list(manifest.files)
            for path in self._event_files_holding(people, messages, routing):
                count, kept = _without(pq.read_table(path), matches)
                if not count:
                    continue
                removed["events"] += count
                files.remove(self._relative(path))
                if kept.num_rows:
                    replacement = path.with_name(f"{uuid.uuid4().hex[:16]}.parquet")
                    write_parquet(kept, replacement)
                    files.append(self._relative(replacement))
                logger.info("erasure rewrote %s without %d rows", path.name, count)
            self._commit(files, manifest.positions)
            for path in sorted(self.features_dir.glob("*.parquet")):
                count, kept = _without(pq.read_table(path), [("profile_id", people)])
                if count:
                    removed["features"] += count
                    write_parquet(kept, path)
        return removed

    def _event_files_holding(
        self, people: pa.Array, messages: pa.Array, routing: pa.Array
    ) -> list[Path]:
        """The events files with a row of these people, messages or routing keys: one DuckDB
        scan (column statistics and the ids' columns only), not a read of every file."""
        import duckdb

        files = self.event_files()
        if not files:
            return []
        connection = duckdb.connect(config={"threads": 2})
        try:
            connection.register("erase_people", pa.table({"id": people}))
            connection.register("erase_messages", pa.table({"id": messages}))
            connection.register("erase_keys", pa.table({"id": routing}))
            listed = ", ".join(_quote(str(path)) for path in files)
            rows = connection.execute(
                f"SELECT DISTINCT filename FROM read_parquet([{listed}], filename = true, "
                "union_by_name = true) WHERE profile_id IN (SELECT id FROM erase_people) "
                "OR message_id IN (SELECT id FROM erase_messages) "
                "OR user_id IN (SELECT id FROM erase_keys) "
                "OR anonymous_id IN (SELECT id FROM erase_keys)"
            ).fetchall()
        finally:
            connection.close()
        return sorted(Path(row[0]) for row in rows)

    # -- items and feature tables -------------------------------------------------------------

    def write_items(self, table: pa.Table) -> int:
        """Upsert catalog rows by `item_id` (the newer row of an id wins, columns the new
        rows lack are kept from the old ones as null); how many rows were written."""
        if ITEM_ID not in table.column_names:
            raise InvalidInput("items need an item_id column", details={"field": ITEM_ID})
        table = table.filter(pc.is_valid(table[ITEM_ID]))
        table = table.set_column(
            table.column_names.index(ITEM_ID), ITEM_ID, table[ITEM_ID].cast(pa.string())
        )
        with self.lock():
            if self.items_path.exists():
                old = pq.read_table(self.items_path)
                kept = old.filter(pc.invert(pc.is_in(old[ITEM_ID], table[ITEM_ID])))
                table = pa.concat_tables([kept, table], promote_options="permissive")
            table = _last_per_key(table, ITEM_ID)
            write_parquet(table, self.items_path)
        return int(table.num_rows)

    def write_feature_table(self, name: str, table: pa.Table) -> Path:
        """Replace the feature table `name` (materialized by a job) in one rename."""
        if not FEATURE_TABLE.match(name):
            raise InvalidInput(f"not a feature table name: {name!r}", details={"field": "name"})
        path = self.features_dir / f"{name}.parquet"
        with self.lock():
            write_parquet(table, path)
        return path

    def feature_tables(self) -> list[str]:
        return sorted(path.stem for path in self.features_dir.glob("*.parquet"))

    # -- SQL ----------------------------------------------------------------------------------

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A new in-memory DuckDB connection with the warehouse's views: `events` (each
        message id once, as first copied), `items`,
        `interactions` (person, item, event, time, one row per item touched, order lines
        unnested) and one per feature table. Close it when done."""
        import duckdb

        connection = duckdb.connect(config={"threads": 2})
        files = self.event_files()
        if files:
            listed = ", ".join(_quote(str(path)) for path in files)
            # Each message once: the log's dedup window is finite, so an event sent again
            # (or imported again) after it is appended, and copied, a second time.
            connection.execute(
                "CREATE VIEW events AS SELECT * FROM read_parquet("
                f"[{listed}], hive_partitioning = true, union_by_name = true) "
                'QUALIFY row_number() OVER (PARTITION BY message_id ORDER BY "partition", '
                '"offset") = 1'
            )
        else:
            connection.register("_no_events", EVENTS_SCHEMA.empty_table())
            connection.execute("CREATE VIEW events AS SELECT *, NULL::DATE AS date FROM _no_events")
        if self.items_path.exists():
            connection.execute(
                f"CREATE VIEW items AS SELECT * FROM read_parquet({_quote(str(self.items_path))})"
            )
        else:
            connection.execute("CREATE VIEW items AS SELECT NULL::VARCHAR AS item_id LIMIT 0")
        for name in self.feature_tables():
            path = self.features_dir / f"{name}.parquet"
            connection.execute(
                f'CREATE VIEW "{name}" AS SELECT * FROM read_parquet({_quote(str(path))})'
            )
        connection.execute(_INTERACTIONS_VIEW)
        return connection

    def query(self, sql: str, parameters: Sequence[Any] | None = None) -> pa.Table:
        """Run one SQL statement over the warehouse's views; the result as an Arrow table.
        A statement DuckDB refuses is InvalidInput with DuckDB's message."""
        import duckdb

        connection = self.connect()
        try:
            try:
                relation = connection.sql(sql, params=list(parameters or []))
                table = relation.to_arrow_table() if relation is not None else pa.table({})
            except duckdb.Error as error:
                raise InvalidInput(str(error).strip(), details={"field": "sql"}) from None
            return table
        finally:
            connection.close()

    def frame(self, sql: str, parameters: Sequence[Any] | None = None) -> pd.DataFrame:
        """`query` as a pandas frame (for analysts and the models)."""
        return self.query(sql, parameters).to_pandas()

    def stats(self) -> dict[str, int]:
        """Files and bytes of the events, for metrics and status."""
        files = self.event_files()
        return {"event_files": len(files), "event_bytes": sum(p.stat().st_size for p in files)}


# An interaction is an event that names an item, or a line of an order's `products`.
_INTERACTIONS_VIEW = """
CREATE VIEW interactions AS
SELECT profile_id, item_id, event, timestamp, coalesce(quantity, 1.0) AS quantity,
       price, category
FROM events
WHERE item_id IS NOT NULL AND profile_id IS NOT NULL
UNION ALL
SELECT profile_id,
       coalesce(line ->> 'product_id', line ->> 'item_id', line ->> 'sku', line ->> 'id'),
       event, timestamp,
       coalesce(TRY_CAST(line ->> 'quantity' AS DOUBLE), 1.0),
       TRY_CAST(line ->> 'price' AS DOUBLE),
       line ->> 'category'
FROM (
    SELECT profile_id, event, timestamp,
           unnest(CAST(json_extract(properties, '$.products') AS JSON[])) AS line
    FROM events
    WHERE item_id IS NULL AND profile_id IS NOT NULL
      AND json_type(properties, '$.products') = 'ARRAY'
)
WHERE coalesce(line ->> 'product_id', line ->> 'item_id', line ->> 'sku', line ->> 'id')
      IS NOT NULL
"""


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write a Parquet file whole: to a temporary name, flushed to disk, then renamed (and
    the rename flushed). Per file, not `os.sync()`: a system-wide flush would stall every
    other writer on the machine (the log's and PostgreSQL's commits) for its duration."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, temporary, compression="zstd")
    _sync_file(temporary)
    os.replace(temporary, path)
    _sync_directory(path.parent)


def _sync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _sync_directory(path: Path) -> None:
    directory = os.open(path, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _without(table: pa.Table, matches: Sequence[tuple[str, pa.Array]]) -> tuple[int, pa.Table]:
    """How many rows have a column in the given values, and the table without them."""
    drop = None
    for column, values in matches:
        if len(values) == 0 or column not in table.column_names:
            continue
        hit = pc.fill_null(pc.is_in(table[column].cast(pa.string()), value_set=values), False)
        drop = hit if drop is None else pc.or_(drop, hit)
    if drop is None:
        return 0, table
    removed = int(pc.sum(drop).as_py() or 0)
    return removed, table.filter(pc.invert(drop)) if removed else table


def _last_per_key(table: pa.Table, key: str) -> pa.Table:
    """The last row of each key (later rows win), order otherwise kept."""
    keys = table[key].to_pylist()
    last = {value: index for index, value in enumerate(keys)}
    if len(last) == len(keys):
        return table
    return table.take(sorted(last.values()))
