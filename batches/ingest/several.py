"""Several spreadsheets as one table: every file's rows in upload order, with a `source_file`
column naming the file each row came from. Files may differ in their other columns, but each
must have the columns the prompt uses; an error names the file."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from batches.ingest.base import IngestError, Table, limits
from batches.ingest.reader import open_table

SOURCE_COLUMN = "source_file"


def open_tables(files: list[tuple[str, IO[bytes]]], *, required: list[str],
                sheet: str | None = None, max_rows: int | None = None) -> Table:
    max_rows, _ = limits(max_rows, None)
    tables = []
    for name, file in files:
        try:
            table = open_table(file, filename=name, sheet=sheet, max_rows=max_rows)
        except IngestError as err:
            raise _in_file(name, err) from None
        if SOURCE_COLUMN in table.columns:
            raise IngestError(f"{name} already has a column named {SOURCE_COLUMN!r}; rename it "
                              "(several files get that column to say where a row came from).",
                              column=SOURCE_COLUMN)
        missing = [c for c in required if c not in table.columns]
        if missing:
            raise IngestError(f"{name} has no column {missing[0]!r}, which the prompt uses. Its "
                              f"columns are: {', '.join(table.columns)}.", column=missing[0])
        tables.append((name, table))
    columns = [SOURCE_COLUMN] + list(dict.fromkeys(c for _, t in tables for c in t.columns))
    combined = Table(columns=columns, rows=iter(()), format="several")
    combined.rows = _rows(tables, columns, combined, max_rows)
    return combined


def _rows(tables: list[tuple[str, Table]], columns: list[str], combined: Table,
          max_rows: int) -> Iterator[dict]:
    total = 0
    for name, table in tables:
        try:
            for row in table.rows:
                total += 1
                if total > max_rows:
                    raise IngestError(f"The files have more than {max_rows:,} rows together "
                                      f"(the limit is {max_rows:,}); {name} goes past it.")
                combined.line = table.line  # the row's line in its own file
                yield {c: name if c == SOURCE_COLUMN else row.get(c, "") for c in columns}
        except IngestError as err:
            raise _in_file(name, err) from None
        combined.warnings += [f"{name}: {w}" for w in table.warnings]


def _in_file(name: str, err: IngestError) -> IngestError:
    if err.message.startswith((name, "The files have")):
        return err
    return IngestError(f"{name}: {err.message}", line=err.line, column=err.column,
                       field=err.field)
