"""CSV / JSONL / XLSX exports of a batch's rows, streamed in constant memory.

`export_rows(batch, fmt)` returns an `Export` whose `chunks` a view wraps in a
StreamingHttpResponse. Every row of the batch is exported in index order with its
current status, so an export taken while the batch runs has the rows done so far with
their output and the others marked pending or running with an empty output (pass
`statuses` to keep only some, `search` to keep the rows the results search finds: the same
`BatchResultQuerySet.search` as the page and the API list). Rows are read in chunks, never all
at once. The first column is the row's number as the user knows it: its line in the file, or
its spreadsheet row.

CSV is opened by spreadsheet programs, so CSV text cells that begin with a formula trigger
(`=`, `+`, `-`, `@`, their full-width forms, or whitespace) get a leading `'` (OWASP CSV
injection), in the header, the input and the model's output alike. XLSX needs no prefix:
every text cell is written as an inline string cell (batches.xlsx_stream), which Excel never
evaluates, so `-5` stays `-5`. Numbers stay numbers.
JSONL is data for programs and is written verbatim. `cost` is the row's cost in the price's
currency as exact decimal digits (empty or null: not answered, or price unknown).

A grounded batch (google_search or url_context) adds a `sources` column last: in CSV and XLSX
one source a line, "title <uri>" (neutralised like any text), in JSONL the list of {uri, title}.

A columns batch (structured output) exports one column per output field instead of `output`
(cells shaped by batches.outputs: lists joined, typed cells in XLSX), then status, error,
thoughts_tokens and cost; its JSONL rows are {"row", "index", "input", "data", "status",
"error", "thoughts_tokens", "cost"}.
"""

from __future__ import annotations

import csv
import datetime
import io
import itertools
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.utils.text import slugify

from batches import outputs
from batches.models import Batch
from batches.prompts import format_value
from batches.xlsx_stream import xlsx_chunks

FORMATS = ("csv", "jsonl", "xlsx")
RESULT_FIELDS = ("output", "status", "error", "attempts", "prompt_tokens", "output_tokens",
                 "latency_ms", "thoughts_tokens", "cost")
# A columns batch: the input columns, one column per output field, then these.
COLUMNS_RESULT_FIELDS = ("status", "error", "thoughts_tokens", "cost")
READ_CHUNK = 2000
STREAM_CHUNK = 64 * 1024
# Full-width forms too: some spreadsheet programs read "＝1+1" as a formula.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_TRIGGER_FIRST = frozenset(FORMULA_TRIGGERS)
XLSX_MAX_CELL = 32_767  # Excel refuses longer cells
XLSX_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # XML 1.0 cannot hold these

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


def export_rows(batch: Batch, fmt: str, *, statuses: Sequence[str] | None = None,
                search: str = "") -> Export:
    """The batch's rows as `fmt` ("csv", "jsonl" or "xlsx"), produced lazily as bytes."""
    if fmt not in FORMATS:
        raise UnknownFormat(f"Unknown export format {fmt!r}; use one of {', '.join(FORMATS)}.")
    columns = list(batch.columns)
    fields = batch.output_fields
    if fields:
        chunks = _columns_chunks(fmt, batch, columns, fields, statuses, search)
    else:
        names = RESULT_FIELDS + (("sources",) if batch.tools else ())
        headers = [row_header(columns)] + columns + result_headers(columns, names)
        cells = (_cells(columns, row, text_sources=fmt != "jsonl")
                 for row in _rows(batch, statuses, names, search))
        if fmt == "jsonl":
            chunks = _jsonl_chunks(dict(zip(headers, c, strict=True)) for c in cells)
        else:
            text_at = _text_columns(len(columns), sources=bool(batch.tools))
            chunks = (_xlsx_chunks if fmt == "xlsx" else _csv_chunks)(headers, cells, text_at)
    return Export(chunks=chunks, content_type=CONTENT_TYPES[fmt],
                  filename=export_filename(batch, fmt))


def export_filename(batch: Batch, fmt: str) -> str:
    """ASCII-only, so it needs no quoting in Content-Disposition."""
    stem = batch.source_filename.rsplit(".", 1)[0] if batch.source_filename else ""
    slug = slugify(batch.name or stem)[:60].strip("-")
    return f"batch-{batch.pk}{'-' + slug if slug else ''}.{fmt}"


def row_header(columns: Sequence[str]) -> str:
    """The row-number column's name: "row", prefixed if an input column has that name."""
    name = "row"
    while name in columns:
        name = f"result_{name}"
    return name


def result_headers(columns: Sequence[str], names: Sequence[str] = RESULT_FIELDS) -> list[str]:
    """The result column names, prefixed where an input column already has the name."""
    taken = set(columns) | {row_header(columns)}
    headers = []
    for name in names:
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


def _rows(batch: Batch, statuses: Sequence[str] | None, fields: Sequence[str],
          search: str = "") -> Iterator[tuple]:
    rows = batch.results.order_by("index")
    if statuses:
        rows = rows.filter(status__in=list(statuses))
    if search:
        rows = rows.search(search)  # scoped to this batch, so it scans only its rows
    return rows.values_list("source_line", "index", "input", *fields).iterator(
        chunk_size=READ_CHUNK)


def _row_number(source_line: int | None, index: int) -> int:
    return source_line or index + 1


def _cells(columns: Sequence[str], row: tuple, *, text_sources: bool = True) -> list:
    source_line, index, values = row[:3]
    get = values.get if isinstance(values, dict) else {}.get
    cells = [source_line or index + 1]
    cells += [get(c) for c in columns]
    results = [v if type(v) is not Decimal else _exact(v) for v in row[3:]]
    if len(row) - 3 > len(RESULT_FIELDS):  # the sources column of a grounded batch
        results[-1] = sources_text(row[-1]) if text_sources else _source_list(row[-1])
    return cells + results


def _source_list(stored: object) -> list[dict]:
    if not isinstance(stored, list):
        return []
    return [{"uri": str(s.get("uri", "")), "title": str(s.get("title", ""))}
            for s in stored if isinstance(s, dict)]


def sources_text(stored: object) -> str:
    """A row's sources as one cell: a line per source, "title <uri>" (or the URI alone)."""
    return "\n".join(f"{s['title']} <{s['uri']}>" if s["title"] else s["uri"]
                     for s in _source_list(stored))


def _exact(value: object) -> object:
    # Money stays exact: the cost (a Decimal) is written as its digits, never as a float.
    return f"{value:f}" if isinstance(value, Decimal) else value


def _columns_chunks(fmt: str, batch: Batch, columns: list[str], fields: list,
                    statuses: Sequence[str] | None, search: str = "") -> Iterator[bytes]:
    """A columns batch: one column per output field (typed cells in XLSX)."""
    grounded = bool(batch.tools)
    result_names = COLUMNS_RESULT_FIELDS + (("sources",) if grounded else ())
    rows = _rows(batch, statuses, ("data", *result_names), search)
    if fmt == "jsonl":
        return _jsonl_chunks(
            {"row": _row_number(line, i), "index": i, "input": values, "data": data,
             "status": status, "error": error, "thoughts_tokens": thoughts,
             "cost": _exact(cost), **({"sources": _source_list(more[0])} if grounded else {})}
            for line, i, values, data, status, error, thoughts, cost, *more in rows)
    names = [f.name for f in fields]
    headers = ([row_header(columns)] + columns + names
               + result_headers(columns + names, result_names))
    cell = outputs.xlsx_cell if fmt == "xlsx" else (lambda v, f: outputs.cell_text(v))

    def cells(row: tuple) -> list:
        line, index, values, data, *results = row
        values = values if isinstance(values, dict) else {}
        data = data if isinstance(data, dict) else {}
        results = [_exact(v) for v in results]
        if grounded:
            results[-1] = sources_text(results[-1])
        return ([_row_number(line, index)] + [values.get(c) for c in columns]
                + [cell(data.get(f.name), f) for f in fields] + results)

    writer = _xlsx_chunks if fmt == "xlsx" else _csv_chunks
    return writer(headers, (cells(row) for row in rows))


def _text_columns(inputs: int, *, sources: bool = False) -> list[int]:
    """The CSV columns of a plain batch that may hold text: the inputs, output and error (and
    a grounded batch's sources, the last column)."""
    first = 1 + inputs
    return [*range(1, first), first + RESULT_FIELDS.index("output"),
            first + RESULT_FIELDS.index("error"),
            *([first + len(RESULT_FIELDS)] if sources else [])]


def _csv_value(value: object) -> object:
    # The hot path of a large export: plain text and numbers first, by exact type.
    kind = type(value)
    if kind is str:
        return "'" + value if value[:1] in _TRIGGER_FIRST or value[:1].isspace() else value
    if kind is int or kind is float or value is None:
        return value  # the csv module writes None as an empty field
    return neutralise(format_value(value))


def _csv_chunks(headers: list[str], rows: Iterable[list],
                text_at: Sequence[int] | None = None) -> Iterator[bytes]:
    """`text_at`: the columns that may hold text (None: all); the others hold numbers, None,
    or text that can never start a formula (a status, a cost's digits), written as they are."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")  # a BOM, so Excel reads the file as UTF-8
    writer.writerow([neutralise(h) for h in headers])
    value = _csv_value
    text_at = range(len(headers)) if text_at is None else text_at
    rows = iter(rows)
    while some := list(itertools.islice(rows, 256)):
        for row in some:
            for i in text_at:
                row[i] = value(row[i])
        writer.writerows(some)
        if buffer.tell() >= STREAM_CHUNK:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def _jsonl_chunks(objects: Iterable[dict]) -> Iterator[bytes]:
    encode = json.JSONEncoder(ensure_ascii=False).encode  # one encoder, not one per row
    lines: list[str] = []
    size = 0
    for obj in objects:
        line = encode(obj)
        lines.append(line + "\n")
        size += len(line)
        if size >= STREAM_CHUNK:
            yield "".join(lines).encode("utf-8")
            lines, size = [], 0
    if lines:
        yield "".join(lines).encode("utf-8")


def _xlsx_value(value: object) -> object:
    kind = type(value)
    if kind is str:
        return XLSX_ILLEGAL.sub("", value)[:XLSX_MAX_CELL] if value else value
    if value is None or kind is int or kind is float or kind is bool or isinstance(
            value, datetime.date):
        return value
    return XLSX_ILLEGAL.sub("", format_value(value))[:XLSX_MAX_CELL]


def _xlsx_chunks(headers: list[str], rows: Iterable[list],
                 text_at: Sequence[int] | None = None) -> Iterator[bytes]:
    value = _xlsx_value
    text_at = range(len(headers)) if text_at is None else text_at

    def cells(row: list) -> list:
        for i in text_at:
            row[i] = value(row[i])
        return row

    return xlsx_chunks("Results", [value(h) for h in headers], map(cells, rows))
