"""Insert a batch's new rows fast. bulk_create spent some 60 % of a 100,000-row ingest building
a model instance and preparing each of its 31 fields per row, and PostgreSQL most of the rest
parsing 1,000-row INSERT statements (docs/performance.md, ingest). Here PostgreSQL gets one
COPY and SQLite one prepared statement run per row.

Every field but the few an ingest sets per row takes the value a new BatchResult gets, worked
out once for the whole insert by the field itself, so a field added later needs nothing here."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from itertools import islice

from django.db import connection
from django.db.models import Field
from django.db.models.expressions import BaseExpression

from batches.models import Batch, BatchResult

# What an ingest sets on each row, in this order.
ROW_FIELDS = ("index", "source_line", "input", "prompt", "conversation_key", "document_ids")
CHUNK = 5000
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


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
            row[i] = field.get_db_prep_save(row[i], connection)
        return row + prepared

    placeholders = ", ".join(["%s"] * (len(varying) + len(constant)))
    cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})",
                       [values(row) for row in chunk])


def _copy(cursor, table: str, columns: str, varying: list[Field], chunk: list[Sequence],
          constant: list[tuple[Field, object]]) -> None:
    """One COPY in PostgreSQL's text format: tab-separated, \\N for NULL."""
    tail = "".join(f"\t{_copy_text(f, v)}" for f, v in constant) + "\n"
    text = io.StringIO()
    text.writelines(_copy_lines(varying, chunk, tail))
    text.seek(0)
    with connection.wrap_database_errors:  # Django's IntegrityError etc., as for execute()
        cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", text)


def _copy_lines(varying: list[Field], chunk: list[Sequence], tail: str) -> Iterator[str]:
    for row in chunk:
        yield "\t".join(_copy_text(f, v) for f, v in zip(varying, row, strict=True)) + tail


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
