"""Table files the commands read and write: CSV (also `.tsv`, and `.gz`), Parquet and JSON
lines, told apart by their extension. One place, so `touchpoint import`, `models recommend`
and `models predict-purchases` accept the same files and say the same thing about a bad
one."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from touchpoint.core.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd

FileFormat = Literal["csv", "parquet", "jsonl"]
FILE_FORMATS: tuple[FileFormat, ...] = ("csv", "parquet", "jsonl")

_EXTENSIONS: dict[str, FileFormat] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


def detect_format(
    path: Path, declared: str | None = None, *, field: str = "--format"
) -> FileFormat:
    """The file's format: `declared` when given, else from the extension (`.gz` looked
    through). Raises InvalidInput naming `field` when it cannot tell."""
    if declared is not None:
        if declared not in FILE_FORMATS:
            raise InvalidInput(
                f"unknown format {declared!r}; use csv, parquet or jsonl",
                details={"field": field},
            )
        return declared
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    found = _EXTENSIONS.get(suffixes[-1]) if suffixes else None
    if found is None:
        remedy = (
            "pass --format csv, parquet or jsonl"
            if field == "--format"
            else "use .csv, .parquet or .jsonl"
        )
        raise InvalidInput(
            f"cannot tell the format of {path.name} from its extension; {remedy}",
            details={"field": field},
        )
    return found


def _separator(path: Path) -> str:
    return "\t" if ".tsv" in [suffix.lower() for suffix in path.suffixes] else ","


def read_frame(
    path: Path, *, field: str, text_columns: Collection[str] | Literal["all"] = ()
) -> tuple[pd.DataFrame, int]:
    """A whole table file as a frame, and how many header lines precede its first row (1
    for CSV, else 0, for line numbers in messages). `text_columns` are read as text in CSV
    (`"all"`: every column, empty cells missing); JSON values keep their JSON types. A
    missing, unreadable or unknown file is InvalidInput naming `field`."""
    import pandas as pd

    kind = detect_format(path, field=field)
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file", details={"field": field})
    try:
        if kind == "csv":
            if text_columns == "all":
                frame = pd.read_csv(
                    path, sep=_separator(path), dtype=str, keep_default_na=False, na_values=[""]
                )
            else:
                dtype = {column: str for column in text_columns}
                frame = pd.read_csv(path, sep=_separator(path), dtype=dtype)
            return frame, 1
        if kind == "parquet":
            return pd.read_parquet(path), 0
        return pd.read_json(path, lines=True, dtype=False), 0
    except (OSError, ValueError) as error:
        raise InvalidInput(
            f"{path}: cannot read as {kind}: {error}", details={"field": field}
        ) from error


def write_frame(frame: pd.DataFrame, out: Path, *, field: str = "out") -> None:
    """Write a frame as CSV, Parquet or JSON lines, chosen by `out`'s extension (its folder
    created); an unknown extension is InvalidInput naming `field`."""
    kind = detect_format(out, field=field)
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind == "csv":
        frame.to_csv(out, sep=_separator(out), index=False, float_format="%.6g")
    elif kind == "parquet":
        frame.to_parquet(out, index=False)
    else:
        frame.to_json(out, orient="records", lines=True)
