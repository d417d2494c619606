"""The lowest layer of ingest: limits, IngestError, Table and the header checks that every
format shares. It imports nothing from the rest of batches."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

MAX_COLUMNS = 10_000
MB = 1024 * 1024
MAX_FIELD_CHARS = 10 * MB
DEFAULT_MAX_ROWS = 200_000
DEFAULT_MAX_UPLOAD_MB = 50
HEAD_BYTES = 64 * 1024
CHUNK_BYTES = 256 * 1024
DELIMITERS = ",;\t|"

CSV_EXTENSIONS = {"csv", "tsv", "txt", "tab"}
XLSX_EXTENSIONS = {"xlsx", "xlsm"}
JSONL_EXTENSIONS = {"jsonl", "ndjson"}

csv.field_size_limit(MAX_FIELD_CHARS)


class IngestError(Exception):
    """Bad input. str(err) is a complete human message naming the problem."""

    def __init__(self, message: str, *, line: int | None = None, column: str | None = None,
                 field: str = "file"):
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.field = field

    def __str__(self) -> str:
        return self.message


@dataclass
class Table:
    columns: list[str]
    rows: Iterator[dict[str, Any]]
    format: str
    delimiter: str | None = None
    encoding: str | None = None
    warnings: list[str] = field(default_factory=list)
    # The source line (or spreadsheet row) of the row last yielded by `rows`.
    line: int | None = None
    # An XLSX workbook's sheet names, for a sheet picker; the sheet read is `sheet`.
    sheets: list[str] = field(default_factory=list)
    sheet: str | None = None


def check_header(names: list[str], *, line: int, unit: str = "line") -> list[str]:
    """Strip the names, drop trailing blank ones, and reject blank, duplicate or too many."""
    names = [name.strip() for name in names]
    while names and not names[-1]:
        names.pop()
    where = f" ({unit} {line})" if line > 1 else ""
    if len(names) > MAX_COLUMNS:
        raise IngestError(f"The header has {len(names):,} columns; the limit is "
                          f"{MAX_COLUMNS:,}.", line=line)
    for i, name in enumerate(names, 1):
        if not name:
            position = f"{i} ({column_letter(i)})" if unit == "row" else f"{i}"
            raise IngestError(f"Column {position} has no name in the header{where}.", line=line)
    seen: dict[str, list[int]] = {}
    for i, name in enumerate(names, 1):
        seen.setdefault(name, []).append(i)
    dups = {name: at for name, at in seen.items() if len(at) > 1}
    if dups:
        listed = "; ".join(f'"{name}" (columns {", ".join(map(str, at))})'
                           for name, at in dups.items())
        raise IngestError(f"The header has duplicate column names{where}: {listed}. Each column "
                          "needs a unique name.", line=line, column=next(iter(dups)))
    return names


def too_many_rows(max_rows: int, line: int) -> IngestError:
    return IngestError(f"The file has more than {max_rows:,} rows (the limit is {max_rows:,}).",
                       line=line)


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def human_size(n: int) -> str:
    if n >= MB:
        return f"{n / MB:.1f}".removesuffix(".0") + " MB"
    if n >= 1024:
        return f"{n / 1024:.1f}".removesuffix(".0") + " KB"
    return f"{n:,} bytes"


def column_letter(i: int) -> str:
    letters = ""
    while i:
        i, rest = divmod(i - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def limits(max_rows: int | None, max_bytes: int | None) -> tuple[int, int]:
    if max_rows is None:
        max_rows = setting("BATCH_MAX_ROWS", DEFAULT_MAX_ROWS)
    if max_bytes is None:
        max_bytes = setting("BATCH_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB) * MB
    return max_rows, max_bytes


def setting(name: str, default: int) -> int:
    try:
        from django.conf import settings

        return getattr(settings, name, None) or default
    except Exception:  # Django missing or not configured: the module works standalone
        return default


def json_kind(value: object) -> str:
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, str):
        return "a JSON string"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, (int, float)):
        return "a JSON number"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"
