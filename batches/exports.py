"""CSV / JSONL / XLSX exports of a batch's rows, streamed in constant memory.

`export_rows(batch, fmt)` returns an `Export` whose `chunks` a view wraps in a
StreamingHttpResponse. Every row of the batch is exported in index order with its
current status, so an export taken while the batch runs has the rows done so far with
their output and the others marked pending or running with an empty output (pass
`statuses` to keep only some). Rows are read in chunks, never all at once.

CSV is opened by spreadsheet programs, so CSV text cells that begin with a formula trigger
(`=`, `+`, `-`, `@`, their full-width forms, or whitespace) get a leading `'` (OWASP CSV
injection), in the header, the input and the model's output alike. XLSX cells carry their
type, so text is written as text cells, never formulas, and keeps its value (`-5` stays
`-5`). Numbers stay numbers. JSONL is data for programs and is written verbatim.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.utils.text import slugify
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from batches.models import Batch
from batches.prompts import format_value

FORMATS = ("csv", "jsonl", "xlsx")
RESULT_FIELDS = ("output", "status", "error", "attempts", "prompt_tokens", "output_tokens",
                 "latency_ms")
READ_CHUNK = 2000
STREAM_CHUNK = 64 * 1024
# Full-width forms too: some spreadsheet programs read "＝1+1" as a formula.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")
XLSX_MAX_CELL = 32_767  # Excel refuses longer cells

CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


class UnknownFormat(ValueError):
    """The export format is not one of FORMATS."""


@dataclass
class Export:
    chunks: Iterator[bytes]
    content_type: str
    filename: str


def export_rows(batch: Batch, fmt: str, *, statuses: Sequence[str] | None = None) -> Export:
    """The batch's rows as `fmt` ("csv", "jsonl" or "xlsx"), produced lazily as bytes."""
    writers = {"csv": _csv_chunks, "jsonl": _jsonl_chunks, "xlsx": _xlsx_chunks}
    if fmt not in writers:
        raise UnknownFormat(f"Unknown export format {fmt!r}; use one of {', '.join(FORMATS)}.")
    columns = list(batch.columns)
    headers = columns + result_headers(columns)
    chunks = writers[fmt](headers, columns, _rows(batch, statuses))
    return Export(chunks=chunks, content_type=CONTENT_TYPES[fmt],
                  filename=export_filename(batch, fmt))


def export_filename(batch: Batch, fmt: str) -> str:
    """ASCII-only, so it needs no quoting in Content-Disposition."""
    stem = batch.source_filename.rsplit(".", 1)[0] if batch.source_filename else ""
    slug = slugify(batch.name or stem)[:60].strip("-")
    return f"batch-{batch.pk}{'-' + slug if slug else ''}.{fmt}"


def result_headers(columns: Sequence[str]) -> list[str]:
    """The result column names, prefixed where an input column already has the name."""
    taken = set(columns)
    headers = []
    for name in RESULT_FIELDS:
        while name in taken:
            name = f"result_{name}"
        taken.add(name)
        headers.append(name)
    return headers


def neutralise(value: str) -> str:
    """Keep a spreadsheet from reading CSV text as a formula (even after leading spaces)."""
    if value.startswith(FORMULA_TRIGGERS) or value[:1].isspace():
        return "'" + value
    return value


def _rows(batch: Batch, statuses: Sequence[str] | None) -> Iterator[tuple]:
    rows = batch.results.order_by("index")
    if statuses:
        rows = rows.filter(status__in=list(statuses))
    return rows.values_list("input", *RESULT_FIELDS).iterator(chunk_size=READ_CHUNK)


def _cells(columns: Sequence[str], row: tuple) -> list:
    values = row[0] if isinstance(row[0], dict) else {}
    return [values.get(c) for c in columns] + list(row[1:])


def _csv_value(value: object) -> object:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return neutralise(format_value(value))


def _csv_chunks(headers: list[str], columns: list[str], rows: Iterable[tuple]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")  # a BOM, so Excel reads the file as UTF-8
    writer.writerow([neutralise(h) for h in headers])
    for row in rows:
        writer.writerow([_csv_value(v) for v in _cells(columns, row)])
        if buffer.tell() >= STREAM_CHUNK:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def _jsonl_chunks(headers: list[str], columns: list[str], rows: Iterable[tuple]) -> Iterator[bytes]:
    lines: list[str] = []
    size = 0
    for row in rows:
        line = json.dumps(dict(zip(headers, _cells(columns, row), strict=True)),
                          ensure_ascii=False)
        lines.append(line + "\n")
        size += len(line)
        if size >= STREAM_CHUNK:
            yield "".join(lines).encode("utf-8")
            lines, size = [], 0
    if lines:
        yield "".join(lines).encode("utf-8")


def _xlsx_value(value: object, sheet: Any) -> object:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = ILLEGAL_CHARACTERS_RE.sub("", format_value(value))[:XLSX_MAX_CELL]
    if not text.startswith("="):
        return text  # openpyxl stores any other text as a string cell
    cell = WriteOnlyCell(sheet, text)
    cell.data_type = "s"  # openpyxl would store "=..." as a formula
    return cell


def _xlsx_chunks(headers: list[str], columns: list[str], rows: Iterable[tuple]) -> Iterator[bytes]:
    # A ZIP cannot be streamed while it is written: the write-only workbook keeps rows on disk,
    # save() zips them into a temporary file, and the file is streamed from there.
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Results")
    sheet.append([_xlsx_value(h, sheet) for h in headers])
    for row in rows:
        sheet.append([_xlsx_value(v, sheet) for v in _cells(columns, row)])
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as out:
        workbook.save(out)
        out.seek(0)
        while chunk := out.read(STREAM_CHUNK):
            yield chunk
