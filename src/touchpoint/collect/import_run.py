"""One import run: the options, the open file and its mapping, the counts, the bad rows
(counted, the first kept, all written to the errors file) and the result. The importers
in collect.imports drive it chunk by chunk."""

from __future__ import annotations

import csv
import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from touchpoint.collect.import_mapping import ImportKind, Problem, RowMapping, parse_specs
from touchpoint.collect.import_sources import RowSource, SourceRow, UnreadableFile, open_rows
from touchpoint.core.errors import InvalidInput
from touchpoint.core.tables import FileFormat, detect_format

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ImportOptions:
    """How to read a file: `mapping` as `--map column=field[:type]` strings, `event` for a
    file of one event type, `file_format` (else from the extension), rows per collector
    batch, how many bad rows the result keeps (the rest are counted), and whether the
    collector's rejections also go to the workspace's rejected store (off: an import
    reports its own)."""

    mapping: tuple[str, ...] = ()
    event: str | None = None
    file_format: FileFormat | None = None
    batch_size: int = 500
    kept_bad_rows: int = 1000
    store_rejections: bool = False


@dataclass(frozen=True, slots=True)
class BadRow:
    """One thing wrong with one row: its line (CSV, JSON lines) or row number (Parquet),
    the column (`<row>` when about the whole row) and the reason. A row with two problems
    is reported twice."""

    line: int
    column: str
    reason: str


@dataclass(frozen=True, slots=True)
class ImportProgress:
    """How far an import is: rows read, and bytes read of the file (rows for Parquet)."""

    rows_read: int
    bytes_read: int
    total_bytes: int | None
    total_rows: int | None


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import did. `rows_read` = `imported` + `duplicates` + `bad_row_count`;
    `flagged` counts imported rows the tracking plan flagged; `bad_rows` holds the first
    problems (at most `ImportOptions.kept_bad_rows`); `aborted` says why reading stopped
    early, if it did (the rows before were imported)."""

    kind: ImportKind
    path: str
    file_format: FileFormat
    rows_read: int
    imported: int
    duplicates: int
    flagged: int
    bad_row_count: int
    bad_rows: tuple[BadRow, ...]
    elapsed_seconds: float
    aborted: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def rows_per_second(self) -> float:
        """Rows read per second of the whole import (0 before any time passed)."""
        return self.rows_read / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    @property
    def succeeded(self) -> bool:
        """The whole file was read and its good rows are in (nothing imported only because
        every row was bad counts as a failure)."""
        if self.aborted is not None:
            return False
        return self.bad_row_count == 0 or self.imported + self.duplicates > 0

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data (for `--json` output or an API)."""
        return {
            "kind": self.kind,
            "path": self.path,
            "format": self.file_format,
            "rows_read": self.rows_read,
            "imported": self.imported,
            "duplicates": self.duplicates,
            "flagged": self.flagged,
            "bad_row_count": self.bad_row_count,
            "bad_rows": [
                {"line": bad.line, "column": bad.column, "reason": bad.reason}
                for bad in self.bad_rows
            ],
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "aborted": self.aborted,
            "notes": list(self.notes),
        }


ProgressCallback = Callable[[ImportProgress], None]


def message_id(kind: str, message: Mapping[str, Any]) -> str:
    """The id of an imported row without one: the same row always gets the same id."""
    canonical = orjson.dumps(message, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(kind.encode() + b"\x00" + canonical).hexdigest()
    return "import-" + digest[:32]


class _BadRows:
    """Bad rows of an import: counted, the first ones kept, all written to `errors_file`."""

    def __init__(self, keep: int, handle: IO[str] | None) -> None:
        self.keep = keep
        self.kept: list[BadRow] = []
        self.rows = 0
        self._pending: list[BadRow] = []
        self._writer = csv.writer(handle) if handle is not None else None
        if self._writer is not None:
            self._writer.writerow(["line", "column", "reason"])

    def add(self, line: int, problems: Sequence[Problem]) -> None:
        """Count one bad row; its problems wait for `flush`."""
        self.rows += 1
        self._pending += [BadRow(line, column, reason) for column, reason in problems]

    def flush(self, through: int | None = None) -> None:
        """Keep and write the problems of lines up to `through` (all when None), in line
        order; later lines wait for their chunk."""
        self._pending.sort(key=lambda bad: bad.line)
        if through is None:
            ready, self._pending = self._pending, []
        else:
            cut = next(
                (i for i, bad in enumerate(self._pending) if bad.line > through), len(self._pending)
            )
            ready, self._pending = self._pending[:cut], self._pending[cut:]
        room = self.keep - len(self.kept)
        if room > 0:
            self.kept += ready[:room]
        if self._writer is not None:
            self._writer.writerows((bad.line, bad.column, bad.reason) for bad in ready)


class ImportRun:
    """The state of one import run: the open file, the mapping, the counts and timing."""

    def __init__(
        self,
        kind: ImportKind,
        path: Path,
        options: ImportOptions,
        errors_file: Path | None,
        on_progress: ProgressCallback | None,
    ) -> None:
        if options.batch_size < 1:
            raise InvalidInput("the batch size must be at least 1", details={})
        self.kind, self.path, self.options = kind, path, options
        self.specs = parse_specs(options.mapping, kind)
        self.file_format = detect_format(path, options.file_format)
        self.errors_file = errors_file
        self.on_progress = on_progress
        self.imported = self.duplicates = self.flagged = self.rows_read = 0
        self.aborted: str | None = None
        self._started = time.perf_counter()

    def __enter__(self) -> ImportRun:
        self.source: RowSource = open_rows(self.path, self.file_format)
        try:
            self.mapping = RowMapping(
                self.kind, self.specs, columns=self.source.columns, event=self.options.event
            )
            self._handle = _open_errors_file(self.errors_file)
        except BaseException:
            self.source.close()
            raise
        self.bad = _BadRows(self.options.kept_bad_rows, self._handle)
        return self

    def __exit__(self, *_: object) -> None:
        self.source.close()
        if self._handle is not None:
            self._handle.close()

    def chunks(self) -> Iterator[tuple[int, list[SourceRow]]]:
        """The file's chunks as (last line, readable rows), counted; rows the reader could not
        read are reported here. A file that breaks midway stops the iteration and sets
        `aborted`."""
        try:
            for chunk in self.source.chunks(self.options.batch_size):
                self.rows_read += len(chunk)
                readable = []
                for row in chunk:
                    if row.problem is not None:
                        self.bad.add(row.line, [row.problem])
                    else:
                        readable.append(row)
                yield chunk[-1].line, readable
        except UnreadableFile as error:
            self.aborted = error.message
            logger.warning("import of %s stopped: %s", self.path, error.message)

    def messages(self) -> Iterator[tuple[int, list[int], list[dict[str, Any]]]]:
        """Per chunk: its last line, and the lines and messages of the rows the mapping
        accepted (possibly none)."""
        for last_line, chunk in self.chunks():
            lines, messages = [], []
            for row in chunk:
                message, problems = self.mapping.message(row.values)
                if problems:
                    self.bad.add(row.line, problems)
                    continue
                if "messageId" not in message:
                    message["messageId"] = message_id(self.kind, message)
                lines.append(row.line)
                messages.append(message)
            yield last_line, lines, messages

    def chunk_done(self, last_line: int) -> None:
        """Everything up to `last_line` is settled: report its bad rows and the progress."""
        self.bad.flush(last_line)
        if self.on_progress is not None:
            self.on_progress(
                ImportProgress(
                    self.rows_read,
                    self.source.bytes_read,
                    self.source.total_bytes,
                    self.source.total_rows,
                )
            )

    def _notes(self) -> list[str]:
        notes = list(self.mapping.notes)
        unmet = self.mapping.unmet()
        if unmet and self.rows_read:
            notes.append(f"--map names columns no row had a value in: {', '.join(unmet)}")
        return notes

    def result(self) -> ImportResult:
        """The outcome so far, every pending bad row flushed."""
        self.bad.flush()
        return ImportResult(
            kind=self.kind,
            path=str(self.path),
            file_format=self.file_format,
            rows_read=self.rows_read,
            imported=self.imported,
            duplicates=self.duplicates,
            flagged=self.flagged,
            bad_row_count=self.bad.rows,
            bad_rows=tuple(self.bad.kept),
            elapsed_seconds=time.perf_counter() - self._started,
            aborted=self.aborted,
            notes=tuple(self._notes()),
        )


def _open_errors_file(path: Path | None) -> IO[str] | None:
    if path is None:
        return None
    try:
        return path.open("w", encoding="utf-8", newline="")
    except OSError as error:
        raise InvalidInput(
            f"cannot write the errors file {path}: {error.strerror}", details={"field": "--errors"}
        ) from None
