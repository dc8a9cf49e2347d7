"""Reading an import file (CSV, Parquet or JSON lines) in chunks of rows, each row with the
line a person finds it at in the file.

A file of millions of rows never sits in memory: CSV and JSON lines are read line by line
(optionally gzip-compressed), Parquet by record batches. Line numbers are what an editor
shows: for CSV the physical line a record starts on (the header is line 1, a quoted field
that spans lines pushes the following records down), for JSON lines the line, for Parquet
the 1-based row number. A row that cannot be read (bad JSON, a CSV record with the wrong
number of values) is yielded with its problem, so the rest of the file is still imported;
a file that cannot be read at all raises `UnreadableFile`.
"""

from __future__ import annotations

import csv
import gzip
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import orjson

from touchpoint.core.errors import InvalidInput
from touchpoint.core.tables import FileFormat

logger = logging.getLogger(__name__)

ROW = "<row>"
"""The column named in a problem about a whole row rather than one of its values."""


class UnreadableFile(InvalidInput):
    """The import file cannot be read (missing, not the format it claims, broken midway)."""

    code = "unreadable_file"


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One row of the file: its line, its values by column, or the reason it is unreadable
    (`problem` as `(column, reason)`; then `values` is empty)."""

    line: int
    values: dict[str, Any]
    problem: tuple[str, str] | None = None


class RowSource:
    """An open import file: its columns (when the format declares them) and its rows in
    chunks. `bytes_read`/`total_bytes` and `total_rows` (Parquet) drive a progress bar."""

    columns: tuple[str, ...] | None
    total_rows: int | None = None
    total_bytes: int | None = None

    def chunks(self, size: int) -> Iterator[list[SourceRow]]:
        """The rows in file order, `size` at a time (the last chunk may be shorter)."""
        raise NotImplementedError

    @property
    def bytes_read(self) -> int:
        """How far into the file (compressed bytes for .gz) reading has got."""
        return 0

    @property
    def column_types(self) -> dict[str, str]:
        """The attribute kind (`int`, `number`, `bool`, `string`) the file declares for each
        column: Parquet's schema; nothing for CSV and JSON lines."""
        return {}

    def close(self) -> None:
        """Release the file."""

    def __enter__(self) -> RowSource:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def open_rows(path: Path, file_format: FileFormat) -> RowSource:
    """Open `path` for reading rows; raises UnreadableFile if it cannot be opened or its
    header (CSV) or metadata (Parquet) cannot be read."""
    if file_format == "parquet":
        return _ParquetRows(path)
    try:
        handle = path.open("rb")
    except OSError as error:
        raise UnreadableFile(f"cannot open {path}: {error.strerror}") from None
    try:
        if file_format == "csv":
            delimiter = "\t" if ".tsv" in [s.lower() for s in path.suffixes] else ","
            return _CsvRows(path, handle, delimiter)
        return _JsonLines(path, handle)
    except BaseException:
        handle.close()
        raise


def _decompressed(path: Path, handle: IO[bytes]) -> IO[bytes]:
    if path.suffix.lower() == ".gz":
        return cast(IO[bytes], gzip.GzipFile(fileobj=handle, mode="rb"))
    return handle


class _CsvRows(RowSource):
    """CSV through Python's `csv` module, which counts the physical lines a record spans.

    Lines are decoded one by one (UTF-8, a byte-order mark dropped), so a line that is not
    UTF-8 makes its row bad instead of ending the import."""

    def __init__(self, path: Path, handle: IO[bytes], delimiter: str) -> None:
        self._path = path
        self._handle = handle
        self.total_bytes = path.stat().st_size
        self._stream = _decompressed(path, handle)
        self._undecodable: set[int] = set()
        self._reader = csv.reader(self._decoded_lines(), delimiter=delimiter)
        try:
            header = next(self._reader, None)
        except (csv.Error, OSError, EOFError) as error:
            raise UnreadableFile(f"cannot read the header of {path.name}: {error}") from None
        if not header:
            raise UnreadableFile(f"{path.name} is empty: a CSV import needs a header row")
        if self._undecodable:
            raise UnreadableFile(f"the header of {path.name} is not UTF-8 text")
        names = [name.strip() for name in header]
        seen: set[str] = set()
        for name in names:
            if name and name in seen:
                raise UnreadableFile(f"column {name!r} appears twice in the header of {path.name}")
            seen.add(name)
        self._header = names
        self.columns = tuple(name for name in names if name)

    def _decoded_lines(self) -> Iterator[str]:
        for number, raw in enumerate(self._stream, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                self._undecodable.add(number)
                text = raw.decode("utf-8", errors="replace")
            yield text.removeprefix("\ufeff") if number == 1 else text

    @property
    def bytes_read(self) -> int:
        return self._handle.tell()

    def chunks(self, size: int) -> Iterator[list[SourceRow]]:
        header, width = self._header, len(self._header)
        reader = self._reader
        chunk: list[SourceRow] = []
        previous_end = reader.line_num
        while True:
            try:
                record = next(reader, None)
            except (csv.Error, OSError, EOFError) as error:
                if chunk:
                    yield chunk  # the rows read before the break are imported
                raise UnreadableFile(
                    f"{self._path.name} cannot be read past line {previous_end}: {error}"
                ) from None
            if record is None:
                break
            line, previous_end = previous_end + 1, reader.line_num
            if not record:  # a blank line
                continue
            if self._undecodable and not self._undecodable.isdisjoint(
                range(line, previous_end + 1)
            ):
                self._undecodable.difference_update(range(line, previous_end + 1))
                chunk.append(SourceRow(line, {}, (ROW, "not UTF-8 text")))
            elif len(record) != width:
                reason = f"the row has {len(record)} values; the header has {width} columns"
                chunk.append(SourceRow(line, {}, (ROW, reason)))
            else:
                values = {name: value for name, value in zip(header, record, strict=True) if name}
                chunk.append(SourceRow(line, values))
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def close(self) -> None:
        self._stream.close()
        self._handle.close()


class _JsonLines(RowSource):
    """One JSON object per line; blank lines are skipped."""

    columns = None

    def __init__(self, path: Path, handle: IO[bytes]) -> None:
        self._path = path
        self._handle = handle
        self._stream = _decompressed(path, handle)
        self.total_bytes = path.stat().st_size

    @property
    def bytes_read(self) -> int:
        return self._handle.tell()

    def chunks(self, size: int) -> Iterator[list[SourceRow]]:
        chunk: list[SourceRow] = []
        line = 0
        while True:
            try:
                raw = self._stream.readline()
            except (OSError, EOFError) as error:
                if chunk:
                    yield chunk  # the rows read before the break are imported
                raise UnreadableFile(
                    f"{self._path.name} cannot be read past line {line}: {error}"
                ) from None
            if not raw:
                break
            line += 1
            if not raw.strip():
                continue
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError as error:
                chunk.append(SourceRow(line, {}, (ROW, f"not valid JSON: {error}")))
            else:
                if isinstance(value, dict):
                    chunk.append(SourceRow(line, value))
                else:
                    reason = f"a line must hold a JSON object, not {type(value).__name__}"
                    chunk.append(SourceRow(line, {}, (ROW, reason)))
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def close(self) -> None:
        self._stream.close()
        self._handle.close()


class _ParquetRows(RowSource):
    """Parquet read by record batches; a row's line is its 1-based row number."""

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as parquet

        self._path = path
        try:
            self._file = parquet.ParquetFile(path)
        except (OSError, ValueError) as error:  # ArrowInvalid (a bad footer) is a ValueError
            raise UnreadableFile(f"cannot read {path.name} as Parquet: {error}") from None
        self.columns = tuple(self._file.schema_arrow.names)
        self.total_rows = int(self._file.metadata.num_rows)
        self._types = {field.name: _arrow_kind(field.type) for field in self._file.schema_arrow}

    @property
    def column_types(self) -> dict[str, str]:
        return self._types

    def chunks(self, size: int) -> Iterator[list[SourceRow]]:
        line = 0
        try:
            for batch in self._file.iter_batches(batch_size=size):
                rows = batch.to_pylist()
                chunk = [SourceRow(line + offset + 1, row) for offset, row in enumerate(rows)]
                line += len(rows)
                yield chunk
        except (OSError, ValueError) as error:
            raise UnreadableFile(
                f"{self._path.name} cannot be read past row {line}: {error}"
            ) from None

    def close(self) -> None:
        self._file.close()


def _arrow_kind(arrow_type: Any) -> str:
    """`int`, `number`, `bool` or `string`: how an item attribute of this Parquet type is kept."""
    import pyarrow.types as types

    if types.is_boolean(arrow_type):
        return "bool"
    if types.is_integer(arrow_type):
        return "int"
    if types.is_floating(arrow_type) or types.is_decimal(arrow_type):
        return "number"
    return "string"
