"""Insert a batch's new rows fast. bulk_create spent some 60 % of a 100,000-row ingest building
a model instance and preparing each of its 31 fields per row, and PostgreSQL most of the rest
parsing 1,000-row INSERT statements (docs/performance.md, ingest). Here PostgreSQL gets one
COPY and SQLite one prepared statement run per row.

Every field but the few an ingest sets per row takes the value a new BatchResult gets, worked
out once for the whole insert by the field itself, so a field added later needs nothing here."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from itertools import islice

from django.db import connection
from django.db.models import CharField, Field, TextField
from django.db.models.expressions import BaseExpression

from batches.models import Batch, BatchResult

# What an ingest sets on each row, in this order.
ROW_FIELDS = ("index", "source_line", "input", "prompt", "conversation_key", "document_ids")
CHUNK = 5000  # rows per COPY or executemany
COPY_READ_CHARS = 1 << 18
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


class JsonText(str):
    """A JSONField value given as its JSON text (an ingest's spooled input): stored as it is."""


def insert_rows(batch: Batch, rows: Iterable[Sequence]) -> int:
    """Insert one new pending row per (index, source_line, input, prompt, conversation_key,
    document_ids) tuple; returns how many."""
    fields = {f.attname: f for f in BatchResult._meta.concrete_fields if not f.primary_key}
    new = BatchResult(batch=batch)
    defaults = {}
    for name, field in fields.items():
        value = field.pre_save(new, add=True)
        if name not in ROW_FIELDS and not isinstance(value, BaseExpression):
            defaults[name] = value  # an expression is a db_default: the database fills it
    varying = [fields[name] for name in ROW_FIELDS]
    constant = [(fields[name], value) for name, value in defaults.items()]
    quote = connection.ops.quote_name
    table = quote(BatchResult._meta.db_table)
    columns = ", ".join(quote(f.column) for f in (*varying, *(f for f, _ in constant)))
    insert = _copy if connection.vendor == "postgresql" else _execute_many
    total = 0
    iterator = iter(rows)
    with connection.cursor() as cursor:
        # Each chunk is taken before its insert starts: the rows may come from a query on this
        # same connection, which can run nothing else during a COPY.
        while chunk := list(islice(iterator, CHUNK)):
            insert(cursor, table, columns, varying, chunk, constant)
            total += len(chunk)
    return total


def _execute_many(cursor, table: str, columns: str, varying: list[Field], chunk: list[Sequence],
                  constant: list[tuple[Field, object]]) -> None:
    """sqlite3 runs one prepared statement per row, in C."""
    prepared = [f.get_db_prep_save(v, connection) for f, v in constant]
    json_fields = [(i, f) for i, f in enumerate(varying) if f.get_internal_type() == "JSONField"]

    def values(row: Sequence) -> list:
        row = list(row)
        for i, field in json_fields:
            value = row[i]
            row[i] = (str(value) if isinstance(value, JsonText)
                      else field.get_db_prep_save(value, connection))
        return row + prepared

    placeholders = ", ".join(["%s"] * (len(varying) + len(constant)))
    cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})",
                       [values(row) for row in chunk])


def _copy(cursor, table: str, columns: str, varying: list[Field], chunk: list[Sequence],
          constant: list[tuple[Field, object]]) -> None:
    """One COPY in PostgreSQL's text format (tab-separated, \\N for NULL), its lines made as
    the server reads them: it stores one part while this process writes the next."""
    tail = "".join(f"\t{_copy_text(f, v)}" for f, v in constant) + "\n"
    convert = [_copy_converter(f) for f in varying]

    def lines() -> Iterator[str]:
        for row in chunk:
            yield "\t".join([c(v) for c, v in zip(convert, row, strict=True)]) + tail

    with connection.wrap_database_errors:  # Django's IntegrityError etc., as for execute()
        # The read size goes by position: with DEBUG on, Django's wrapper takes no keywords.
        cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", _Reader(lines()),
                           COPY_READ_CHARS)


class _Reader:
    """The file psycopg2's copy_expert reads from: each read() returns whole lines, about
    `size` characters of them, made on demand."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines

    def read(self, size: int = COPY_READ_CHARS) -> str:
        part, length = [], 0
        for line in self._lines:
            part.append(line)
            length += len(line)
            if length >= size:
                break
        return "".join(part)


def _copy_converter(field: Field) -> Callable[[object], str]:
    """A per-row value -> its COPY text, chosen once per field."""
    if field.get_internal_type() == "JSONField":
        encoder = field.encoder

        def json_text(v) -> str:
            if v is None:
                return r"\N"
            text = v if isinstance(v, JsonText) else json.dumps(v, cls=encoder,
                                                                ensure_ascii=False)
            return text.translate(_COPY_ESCAPES)

        return json_text
    if isinstance(field, (CharField, TextField)):
        return lambda v: r"\N" if v is None else str(v).translate(_COPY_ESCAPES)
    return lambda v: r"\N" if v is None else str(v)


def _copy_text(field: Field, value) -> str:
    if value is None:
        return r"\N"
    if field.get_internal_type() == "JSONField":
        value = json.dumps(value, cls=field.encoder, ensure_ascii=False)
    elif isinstance(value, bool):
        value = "t" if value else "f"
    elif isinstance(value, datetime):
        value = value.isoformat()
    return str(value).translate(_COPY_ESCAPES)
